"""setup.py's decisions, checked without building: the C++ standard it leaves to
torch, the torch releases it accepts, the message without torch, and how it
finds the CUDA toolkit behind an `nvcc` wrapper. The builds themselves (plain
`pip install .`, the CUDA build) are CI stages: see .ci/run."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup_py(monkeypatch):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    spec = importlib.util.spec_from_file_location("ctcx_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines, does not call setup(): __name__ is not __main__
    return module


def test_no_cxx_standard_is_forced(setup_py, monkeypatch):
    monkeypatch.setenv("CTCX_FORCE_CPU", "1")
    ext = setup_py.extension()
    flags = ext.extra_compile_args["cxx"] if isinstance(ext.extra_compile_args, dict) else ext.extra_compile_args
    assert flags and not [f for f in flags if f.startswith("-std")]


def test_torch_version_bounds(setup_py, monkeypatch, capsys):
    monkeypatch.setattr(setup_py.torch, "__version__", "2.10.1+cpu")
    with pytest.raises(SystemExit, match=r"torch 2\.10\.1\+cpu is too old; ctcx needs torch >= 2\.11"):
        setup_py.check_torch_version()
    monkeypatch.setattr(setup_py.torch, "__version__", "2.13.0+cpu")
    setup_py.check_torch_version()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(setup_py.torch, "__version__", "2.99.0")
    setup_py.check_torch_version()
    assert "a release CI does not test" in capsys.readouterr().err


def test_without_torch_the_build_stops_with_one_line():
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--name']; "
            f"exec(compile(open({str(ROOT / 'setup.py')!r}).read(), 'setup.py', 'exec'), "
            "{'__name__': '__main__', '__file__': 'setup.py'})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ctcx: torch is not installed in the environment of {sys.executable}; install it first "
        "(e.g. `pip install torch==2.13.0`), then install ctcx again "
        "(with uv: `uv pip install --no-build-isolation .`)"]


def test_cuda_home_without_headers_is_named(setup_py, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    home, why = setup_py.find_cuda_toolkit()
    assert home is None and why == f"CUDA_HOME={tmp_path} has no include/cuda_runtime.h"


def test_explicit_cuda_home_wins(setup_py, monkeypatch, tmp_path):
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert setup_py.find_cuda_toolkit() == (str(tmp_path), None)


def test_no_toolkit_anywhere(setup_py, monkeypatch, tmp_path):
    monkeypatch.setattr(setup_py.cpp_extension, "CUDA_HOME", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc
    home, why = setup_py.find_cuda_toolkit()
    assert home is None and "set CUDA_HOME" in why


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_toolkit_is_derived_from_an_nvcc_wrapper(setup_py, monkeypatch, tmp_path):
    """The machine's situation: `nvcc` on the PATH is a script in a bin folder
    outside the toolkit, so torch guesses that folder's parent, which has no
    CUDA headers; setup.py must find the real toolkit through nvcc itself."""
    real = subprocess.run([shutil.which("nvcc"), "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                          capture_output=True, text=True, timeout=60)
    top = next(line.split("=", 1)[1] for line in (real.stdout + real.stderr).splitlines()
               if line.startswith("#$ TOP="))
    toolkit = os.path.normpath(top)
    bin_dir = tmp_path / "wrapper" / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(setup_py.cpp_extension, "CUDA_HOME", str(tmp_path / "wrapper"))  # torch's wrong guess
    home, why = setup_py.find_cuda_toolkit()
    assert why is None
    assert home == toolkit and (Path(home) / "include" / "cuda_runtime.h").is_file()
