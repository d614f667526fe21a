import os

import pytest
import torch

import ctcx

# CTCX_COLLECT_CUDA=1 lists the CUDA cases on a machine without a GPU, for
# `pytest --collect-only` alone (tools/gpu_check.py --dry-run counts what a GPU
# run would select); running them there fails.
DEVICES = ["cpu"] + (["cuda"] if (torch.cuda.is_available() and ctcx.cuda_available())
                     or os.environ.get("CTCX_COLLECT_CUDA") == "1" else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_thread_count():
    """A test that changes torch's thread count (the trainer's --threads, say)
    must not make every later test single-threaded: the loss kernel's
    multi-threaded path would then go untested."""
    yield
    torch.set_num_threads(_THREADS)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global random state, so a failure with
    unseeded random inputs reproduces on the next run."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


# Property-based tests (tests/fuzz, hypothesis): the "ci" profile (loaded
# here) runs a few hundred generated cases in all, the same ones on every run;
# `python -m pytest tests/fuzz --hypothesis-profile=long` runs 10,000 new ones
# per test.
try:
    from hypothesis import HealthCheck, settings

    _FUZZ_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                              suppress_health_check=_FUZZ_CHECKS, print_blob=True)
    settings.register_profile("long", max_examples=10_000, deadline=None, suppress_health_check=_FUZZ_CHECKS,
                              print_blob=True)
    settings.load_profile("ci")
except ImportError:  # hypothesis is a pinned test requirement; tests/fuzz says so if it is missing
    pass
