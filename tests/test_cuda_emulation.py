"""ctcx's real CUDA kernels, run on CPU threads and compared with the CPU ops.

Every csrc/cuda/*.cu file is compiled with the host compiler against the
CUDA-on-CPU emulation (tests/cuda_emu/ctcx_cuda_emulation.h: one OS thread per
CUDA thread, checked barriers, warp shuffles and shared memory, garbage-filled
workspaces and outputs) and linked with tests/cuda_emu/driver.cpp, which calls
the launchers exactly as the CUDA glue does. Built twice, under
ThreadSanitizer and under AddressSanitizer + UndefinedBehaviorSanitizer (plain
when the compiler lacks one), and run on the cases below: the fused loss
(gather, prepare, recursion with alpha in shared and in global memory, the
gradient pass; log_probs and logits; f16/bf16/f32/f64; int32/int64, padded
and concatenated targets; contiguous, batch-first and padded-row strides;
multi-warp blocks up to 512 threads; edge, infeasible and bad-value samples),
greedy decoding, the fused beam search (LMs, lexicon, hotwords; bit for bit)
and the beam search (small and large beams, scratch in shared
and in global memory, opt-in shared memory, many token-list chunks,
constraints, blank skipping), forced alignment (every dtype, ties, a
601-state target over three rounds of threads, unchecked values), and 240
random small cases of every op (issue 28's fuzzing, under both sanitizers). Losses
and gradients must agree with the CPU op
within the CUDA tolerances, decodes and alignments exactly; the sanitizers must stay silent.

No GPU is needed, and none is used: this proves the kernels' logic and
synchronization, not their speed or the GPU's memory model.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ctcx  # noqa: F401  (registers the CPU ops compared against)

pytestmark = pytest.mark.slow  # builds and runs the kernels twice: about 4 min on 2 cores

ROOT = Path(__file__).resolve().parent.parent
EMU = ROOT / "tests" / "cuda_emu"
CUDA_DIR = ROOT / "csrc" / "cuda"
SOURCES = sorted(CUDA_DIR.glob("*.cu")) + [EMU / "driver.cpp"]
BUILD_DIR = ROOT / "build" / "cuda_emu"
OPTIN_SHARED = 227 * 1024  # ctcx_emu::kOptinSharedBytes
EMU_ERROR = 86

VARIANTS = {
    "tsan": ["-fsanitize=thread"],
    "asan": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"],
}
COMMON_FLAGS = ["-std=c++20", "-O0", "-g", "-pthread", "-DCTCX_CUDA_EMULATION",
                f"-I{EMU}", f"-I{EMU / 'include'}", f"-I{CUDA_DIR}", f"-I{ROOT / 'csrc' / 'include'}",
                "-isystem", str(Path(torch.__file__).parent / "include")]
SANITIZER_ENV = {
    "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0",
    "ASAN_OPTIONS": "detect_leaks=0 halt_on_error=1 exitcode=67",
    "UBSAN_OPTIONS": "halt_on_error=1 print_stacktrace=1",
}


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def compile_driver(cxx: str, flags: list[str], out_dir: Path) -> tuple[Path | None, str]:
    """Compiles every .cu and the driver (in parallel, cached by content and flags)."""
    key = hashlib.sha256()
    for f in [*SOURCES, *sorted(EMU.rglob("*.h")), *sorted((ROOT / "csrc" / "include").rglob("*.h")),
              *sorted(CUDA_DIR.glob("*.h")), *sorted(CUDA_DIR.glob("*.cuh"))]:
        key.update(f.read_bytes())
    key.update(" ".join([cxx, *flags, *COMMON_FLAGS, torch.__version__]).encode())
    exe = out_dir / key.hexdigest()[:16] / "driver"
    if exe.is_file():
        return exe, ""
    exe.parent.mkdir(parents=True, exist_ok=True)

    def one(src: Path):
        obj = exe.parent / (src.name + ".o")
        lang = ["-x", "c++"] if src.suffix == ".cu" else []
        proc = subprocess.run([cxx, *COMMON_FLAGS, *flags, *lang, "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True, timeout=600)
        return obj, proc

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(one, SOURCES))
    errors = "".join(p.stderr for _, p in results if p.returncode != 0)
    if errors:
        return None, errors
    tmp = exe.with_suffix(".tmp")
    proc = subprocess.run([cxx, *flags, "-pthread", *[str(o) for o, _ in results], "-o", str(tmp)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return None, proc.stderr
    os.replace(tmp, exe)
    return exe, ""


@pytest.fixture(scope="module")
def drivers():
    """{variant: driver}: each sanitizer the compiler and this machine support,
    else one plain build (the checks of the emulation itself still run)."""
    cxx = compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    found = {}
    for name, flags in VARIANTS.items():
        exe, _ = compile_driver(cxx, flags, BUILD_DIR)
        if exe is None:
            continue
        probe = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:  # e.g. "FATAL: ThreadSanitizer" when its runtime cannot start
            found[name] = exe
    if not found:
        exe, errors = compile_driver(cxx, [], BUILD_DIR)
        assert exe is not None, errors
        found["plain"] = exe
    return found


# ---------------------------------------------------------------- cases

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64}
ACC = {"f16": torch.float32, "bf16": torch.float32, "f32": torch.float32, "f64": torch.float64}
TARGET_DTYPES = {"i32": torch.int32, "i64": torch.int64}
# loss (rtol, atol), grad (rtol, atol), as tests/test_ctc_loss_cuda.py: the CPU
# accumulates in double, the CUDA kernels in the loss dtype.
TOLERANCES = {
    "f64": ((1e-10, 1e-10), (1e-9, 1e-11)),
    "f32": ((1e-5, 1e-4), (1e-4, 5e-5)),
    "f16": ((1e-5, 1e-4), (1e-2, 1e-3)),
    "bf16": ((1e-5, 1e-4), (2e-2, 8e-3)),
}


def raw(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def laid_out(x: torch.Tensor, strides: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(storage, view): x (T, N, C) stored contiguously, batch-first, or with
    rows padded to C + 3 elements; the view has x's values and the storage's strides."""
    T, N, C = x.shape
    if strides == "contiguous":
        storage = x.contiguous()
        return storage, storage
    if strides == "batch_first":
        storage = x.transpose(0, 1).contiguous()
        return storage, storage.transpose(0, 1)
    if strides == "padded_rows":
        storage = torch.full((T, N, C + 3), -7.0, dtype=x.dtype)
        storage[..., :C] = x
        return storage, storage[..., :C]
    raise ValueError(strides)


def write_case(root: Path, name: str, spec: dict, arrays: dict) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "case.txt").write_text("".join(f"{k} {v}\n" for k, v in spec.items()))
    for key, t in arrays.items():
        (d / f"{key}.bin").write_bytes(raw(t))
    return d


def read(d: Path, key: str, dtype: torch.dtype, shape) -> torch.Tensor:
    data = bytearray((d / f"{key}.bin").read_bytes())
    if dtype in (torch.float16, torch.bfloat16):
        return torch.frombuffer(data, dtype=torch.int16).view(dtype).reshape(shape).clone()
    return torch.frombuffer(data, dtype=dtype).reshape(shape).clone()


def loss_case(name, *, dtype="f32", target_dtype="i64", T=30, N=4, C=12, L=(5, 3, 0, 6), il=None,
              padded=True, kind="log_probs", grad=True, zero_infinity=False, blank=0,
              strides="contiguous", seed=0, bad=(), repeats=False, S=None, tsan=True, grad_tol=None):
    g = torch.Generator().manual_seed(seed)
    L = list(L)
    il = list(il) if il is not None else [T] * N
    labels = [c for c in range(C) if c != blank]
    targets = [[labels[int(i)] for i in torch.randint(0, len(labels), (n,), generator=g)] for n in L]
    if repeats:  # every other label repeats the one before it
        targets = [[t[k - 1] if k % 2 and k else t[k] for k in range(len(t))] for t in targets]
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64) * 2
    if kind == "log_probs":
        x = x.log_softmax(-1)
    x = x.to(DTYPES[dtype])
    return {"name": name, "op": "loss", "dtype": dtype, "target_dtype": target_dtype, "x": x,
            "targets": targets, "il": il, "tl": L, "padded": padded, "kind": kind, "grad": grad,
            "zero_infinity": zero_infinity, "blank": blank, "strides": strides, "bad": list(bad),
            "weights": (torch.rand(N, generator=g, dtype=torch.float64) + 0.5).to(ACC[dtype]),
            "S": S, "tsan": tsan, "grad_tol": grad_tol}


def loss_target_tensor(case, lengths=None):
    targets, td = case["targets"], TARGET_DTYPES[case["target_dtype"]]
    if case["padded"]:
        S = case.get("S") or max([len(t) for t in targets] + [1])
        out = torch.full((len(targets), S), case["blank"] or 1, dtype=td)
        for n, t in enumerate(targets):
            out[n, : len(t)] = torch.tensor(t, dtype=td)
        return out
    return torch.tensor([c for t in targets for c in t], dtype=td)


def loss_write(root: Path, case) -> Path:
    x = case["x"]
    T, N, C = x.shape
    storage, view = laid_out(x, case["strides"])
    targets = loss_target_tensor(case)
    spec = {"op": "loss", "dtype": case["dtype"], "target_dtype": case["target_dtype"], "T": T, "N": N,
            "C": C, "stride_t": view.stride(0), "stride_n": view.stride(1),
            "logits": int(case["kind"] == "logits"), "padded": int(case["padded"]),
            "S": targets.shape[1] if case["padded"] else 0, "blank": case["blank"],
            "zero_infinity": int(case["zero_infinity"]), "grad": int(case["grad"])}
    arrays = {"input": storage, "targets": targets, "input_lengths": torch.tensor(case["il"]),
              "target_lengths": torch.tensor(case["tl"]), "grad_weights": case["weights"]}
    case["view"] = view
    case["target_tensor"] = targets
    return write_case(root, case["name"], spec, arrays)


def loss_reference(case):
    """The CPU op on the samples with good values: (loss, grad) for the batch,
    NaN for bad samples (the CUDA kernels' promise for unchecked bad values)."""
    x, view = case["x"], case["view"]
    T, N, C = x.shape
    good = [n for n in range(N) if n not in case["bad"]]
    op = torch.ops.ctcx.ctc_loss_with_logits if case["kind"] == "logits" else torch.ops.ctcx.ctc_loss
    loss = torch.full((N,), float("nan"), dtype=ACC[case["dtype"]])
    grad = torch.zeros(T, N, C, dtype=x.dtype)
    if good:
        sub = dict(case, targets=[case["targets"][n] for n in good], S=None)
        targets = loss_target_tensor(sub)
        l_good, g_good = op(view[:, good], targets, torch.tensor([case["il"][n] for n in good]),
                            torch.tensor([case["tl"][n] for n in good]), case["blank"],
                            case["zero_infinity"], case["weights"][good] if case["grad"] else None)
        loss[good] = l_good
        if case["grad"]:
            grad[:, good] = g_good
    for n in case["bad"]:
        frames = min(max(case["il"][n], 0), T)
        grad[:frames, n] = float("nan")
    return loss, grad


def loss_cases():
    """Every case runs under AddressSanitizer; those with tsan=True under
    ThreadSanitizer too (it costs 5-8 times more: the largest cases are left
    to AddressSanitizer, while multi-warp blocks of up to 512 threads stay)."""
    cases = []
    for dtype in DTYPES:
        for kind in ("log_probs", "logits"):
            for padded in (True, False):
                for target_dtype in ("i32", "i64"):
                    cases.append(loss_case(f"loss-{dtype}-{kind}-{'pad' if padded else 'cat'}-{target_dtype}",
                                           dtype=dtype, kind=kind, padded=padded, target_dtype=target_dtype,
                                           T=24, N=4, C=9, L=(5, 3, 0, 7), il=(24, 17, 9, 24),
                                           seed=len(cases), repeats=True, tsan=len(cases) % 4 == 0))
    for strides in ("batch_first", "padded_rows"):
        for kind in ("log_probs", "logits"):
            cases.append(loss_case(f"loss-{strides}-{kind}", strides=strides, kind=kind, seed=len(cases),
                                   tsan=(strides == "batch_first") == (kind == "log_probs")))
    # Multi-warp blocks: L >= 16 (several warps); a padded width of 250 (501
    # states: 16 warps, 512 threads, most of them idle on shorter targets);
    # L = 250 itself (float32 over 260 frames: the gradient differs from the
    # CPU's double by up to 3e-4 there, float rounding summed over the frames).
    for dtype in ("f32", "f64"):
        for L in (16, 40):
            cases.append(loss_case(f"loss-warps-{dtype}-L{L}", dtype=dtype, T=2 * L + 5, N=3, C=20,
                                   L=(L, L - 3, L // 2), seed=len(cases), repeats=True,
                                   tsan=(dtype == "f32") == (L == 16)))
    cases.append(loss_case("loss-512-threads", dtype="f32", T=48, N=2, C=30, L=(40, 25), S=250, seed=97))
    cases.append(loss_case("loss-L250", dtype="f32", T=260, N=2, C=30, L=(250, 120), seed=99, tsan=False,
                           grad_tol=(1e-3, 5e-4)))
    cases.append(loss_case("loss-L250-logits-nograd", dtype="f32", kind="logits", grad=False, T=252, N=1,
                           C=30, L=(250,), seed=98, tsan=False))
    # Concatenated targets longer than two alpha rows of shared memory hold
    # (46 KiB: 2944 labels in float32, 1472 in float64): alpha in global
    # memory. The long targets cannot fit their frames (infinite losses, NaN
    # gradients); the short ones check values on that path.
    cases.append(loss_case("loss-global-alpha-f32", dtype="f32", T=70, N=4, C=15, L=(1450, 1440, 60, 10),
                           padded=False, seed=201, tsan=False))
    cases.append(loss_case("loss-global-alpha-f64", dtype="f64", T=30, N=4, C=15, L=(720, 730, 25, 5),
                           padded=False, kind="logits", seed=202))
    # Edge cases: T = 1, one label; empty targets; zero frames; infeasible; zero_infinity.
    cases.append(loss_case("loss-T1", T=1, N=2, C=4, L=(1, 0), seed=7))
    for zi in (False, True):
        cases.append(loss_case(f"loss-edges-zi{int(zi)}", T=12, N=6, C=7, L=(4, 0, 0, 2, 9, 12),
                               il=(12, 12, 0, 0, 5, 12), zero_infinity=zi, seed=8 + zi, repeats=True))
    cases.append(loss_case("loss-blank-last", blank=8, C=9, seed=10))
    cases.append(loss_case("loss-no-grad", grad=False, seed=11))
    # Unchecked bad values (validate=False): NaN loss and gradient rows for those samples only.
    bad = loss_case("loss-bad-values", T=10, N=5, C=6, L=(3, 3, 2, 4, 1), il=(10, 10, 12, 10, -1),
                    seed=12, bad=(1, 2, 4))
    bad["targets"][1][0] = 6  # label == C
    bad["targets"][3][1] = 2
    bad["il"][2] = 12         # input length > T
    bad["targets"][4] = [0]   # the blank as a label; and a negative input length
    bad["tl"][4] = 1
    cases.append(bad)
    return cases


def greedy_case(name, *, dtype="f32", T=20, N=5, C=7, il=None, blank=0, strides="contiguous", seed=0,
                ties=False, nan=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    if ties:
        x = torch.randint(0, 2, (T, N, C), generator=g).double()
    if nan:
        x[1, 0, 3] = float("nan")
        x[2, 0, :] = float("-inf")
    return {"name": name, "op": "greedy", "dtype": dtype, "x": x.to(DTYPES[dtype]),
            "il": list(il) if il is not None else [T] * N, "blank": blank, "strides": strides, "tsan": True}


def greedy_cases():
    cases = [greedy_case(f"greedy-{d}", dtype=d, seed=i, il=(20, 0, 7, 20, 33 if False else 19))
             for i, d in enumerate(DTYPES)]
    cases += [greedy_case("greedy-batch-first", strides="batch_first", seed=5),
              greedy_case("greedy-padded-rows", strides="padded_rows", C=70, seed=6, blank=3),
              greedy_case("greedy-ties", ties=True, C=40, seed=7),
              greedy_case("greedy-nan", nan=True, seed=8),
              greedy_case("greedy-long", T=100, N=9, C=5, seed=9, il=(100, 99, 64, 65, 33, 32, 31, 1, 0))]
    return cases


def common_write(root, case, extra, more_arrays=None):
    x = case["x"]
    T, N, C = x.shape
    storage, view = laid_out(x, case["strides"])
    case["view"] = view
    spec = {"op": case["op"], "dtype": case["dtype"], "T": T, "N": N, "C": C, "stride_t": view.stride(0),
            "stride_n": view.stride(1), "blank": case["blank"], **extra}
    arrays = {"input": storage, "input_lengths": torch.tensor(case["il"])}
    if case.get("allowed") is not None:
        arrays["allowed"] = case["allowed"].to(torch.uint8)
    arrays.update(more_arrays or {})
    return write_case(root, case["name"], spec, arrays)


def beam_case(name, *, dtype="f32", T=16, N=3, C=8, il=None, blank=0, beam_width=4, top_k=2,
              min_length=0, max_length=None, allowed=None, blank_skip_threshold=None,
              max_shared_bytes=OPTIN_SHARED, token_list_budget=0, seed=0, scale=1.5, tsan=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale).log_softmax(-1)
    return {"name": name, "op": "beam", "dtype": dtype, "x": x.to(DTYPES[dtype]),
            "il": list(il) if il is not None else [T] * N, "blank": blank, "strides": "contiguous",
            "beam_width": beam_width, "top_k": top_k, "min_length": min_length,
            "max_length": T if max_length is None else min(max_length, T), "allowed": allowed,
            "blank_skip_threshold": blank_skip_threshold, "max_shared_bytes": max_shared_bytes,
            "token_list_budget": token_list_budget, "tsan": tsan}


def beam_cases():
    cases = [beam_case(f"beam-{d}", dtype=d, seed=i, il=(16, 9, 0), tsan=d in ("bf16", "f64"))
             for i, d in enumerate(DTYPES)]
    cases += [
        beam_case("beam-1", beam_width=1, top_k=1, seed=10),
        beam_case("beam-10-top10", beam_width=10, top_k=10, C=37, T=21, N=4, seed=11),
        beam_case("beam-constraints", beam_width=6, top_k=3, min_length=3, max_length=5,
                  allowed=torch.tensor([True, True, False, True, True, False, True, True]), seed=12),
        beam_case("beam-blank-skip", beam_width=5, top_k=2, blank_skip_threshold=0.6, scale=3.0, seed=13),
        beam_case("beam-blank-last", beam_width=4, top_k=4, blank=7, seed=14, tsan=False),
        beam_case("beam-many-chunks", beam_width=4, top_k=2, T=40, N=3, C=12, token_list_budget=512, seed=15),
        # a device with little shared memory: the step's scratch lives in global memory
        beam_case("beam-global-scratch", beam_width=64, top_k=4, T=8, N=2, C=200,
                  max_shared_bytes=6 * 1024, seed=16),
        # beam 300: 76 KiB of step scratch in shared memory, with the opt-in attribute;
        # beam 1024: 284 KiB, more than any GPU has, so in global memory
        beam_case("beam-optin-shared", beam_width=300, top_k=8, T=3, N=1, C=700, seed=17, tsan=False),
        beam_case("beam-1024", beam_width=1024, top_k=4, T=3, N=1, C=2100, seed=19, tsan=False),
        beam_case("beam-large-vocab", beam_width=8, top_k=3, T=8, N=2, C=5000, seed=18, tsan=False),
    ]
    return cases


def beam_write(root, case):
    return common_write(root, case, {
        "beam_width": case["beam_width"], "top_k": case["top_k"], "min_length": case["min_length"],
        "max_length": case["max_length"], "allowed": int(case["allowed"] is not None),
        "blank_skip_threshold": "inf" if case["blank_skip_threshold"] is None else case["blank_skip_threshold"],
        "max_shared_bytes": case["max_shared_bytes"], "token_list_budget": case["token_list_budget"]})


LM_TOKENS = ["<b>", "a", "b", "c", "|", "d", "e"]  # class 4 is the word delimiter where one is used


def lm_beam_case(name, *, dtype="f32", T=8, N=2, il=None, blank=0, beam_width=4, top_k=2, lm=None,
                 lexicon=None, hotwords=None, delimiter=None, lm_weight=0.6, insertion_bonus=0.3, min_length=0,
                 max_length=None, allowed=None, blank_skip_threshold=None, beam_threshold=None, seed=0,
                 scale=1.5, tsan=True):
    """The fused beam search; lm: None, ("char", order) or ("word", order), built when written."""
    C = len(LM_TOKENS)
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale).log_softmax(-1)
    return {"name": name, "op": "lmbeam", "dtype": dtype, "x": x.to(DTYPES[dtype]),
            "il": list(il) if il is not None else [T] * N, "blank": blank, "strides": "contiguous",
            "beam_width": beam_width, "top_k": top_k, "min_length": min_length,
            "max_length": T if max_length is None else min(max_length, T), "allowed": allowed,
            "blank_skip_threshold": blank_skip_threshold, "beam_threshold": beam_threshold, "lm": lm,
            "lexicon": lexicon, "hotwords": hotwords, "delimiter": delimiter, "lm_weight": lm_weight,
            "insertion_bonus": insertion_bonus, "seed": seed, "tsan": tsan}


def lm_beam_cases():
    return [
        lm_beam_case("lmbeam-char", lm=("char", 3), seed=1),
        lm_beam_case("lmbeam-char-f64", dtype="f64", lm=("char", 4), beam_width=6, top_k=3, seed=2),
        lm_beam_case("lmbeam-char-bf16", dtype="bf16", lm=("char", 2), il=(8, 0), seed=3, tsan=False),
        lm_beam_case("lmbeam-word-lexicon", lm=("word", 3), lexicon=["ab", "ba", "cab", "e"], delimiter=4,
                     beam_width=5, top_k=3, seed=4),
        lm_beam_case("lmbeam-hotwords", hotwords={"ab": 2.0, "cab": 3.0, "e": -1.0}, delimiter=4, lm=("char", 2),
                     seed=5, tsan=False),
        lm_beam_case("lmbeam-limits", lm=("char", 3), min_length=2, max_length=4, blank=6,
                     allowed=torch.tensor([True, True, True, False, True, True, True]),
                     blank_skip_threshold=0.7, scale=3.0, seed=6, tsan=False),
        lm_beam_case("lmbeam-threshold", lm=("char", 3), beam_threshold=2.0, beam_width=8, top_k=4, seed=7,
                     tsan=False),
        lm_beam_case("lmbeam-width-1", lm=("word", 2), delimiter=4, beam_width=1, top_k=1, seed=8, tsan=False),
    ]


def lm_beam_write(root, case):
    from arpa_files import random_arpa

    kind = case["lm"]
    delimiter = case["delimiter"]
    tokens = LM_TOKENS
    blank = case["blank"]
    names = [t for c, t in enumerate(tokens) if c not in (blank, delimiter)]
    lm = None
    if kind is not None:
        unit, order = kind
        units = names + (["|"] if delimiter is not None and unit == "char" else [])
        if unit == "word":
            units = ["ab", "ba", "cab", "e", "dd"]
        path = random_arpa(root / f"{case['name']}.arpa", units, order, seed=case["seed"])
        lm = ctcx.NgramLM.from_arpa(path, tokens, unit=unit, word_delimiter=delimiter, blank=blank)
    lexicon = ctcx.Lexicon(case["lexicon"], tokens, word_delimiter=delimiter, blank=blank) if case["lexicon"] else None
    hot = ctcx.Hotwords(case["hotwords"], tokens, word_delimiter=delimiter, blank=blank) if case["hotwords"] else None
    cpu = torch.device("cpu")
    tables, info = lm.tensors(cpu) if lm is not None else ([], [])
    max_gain = (max(case["insertion_bonus"], 0.0) + (case["lm_weight"] * lm.max_log_prob if lm else 0.0)
                + (hot.max_gain if hot else 0.0))
    case["op_args"] = (tables, info, lexicon.tensors(cpu) if lexicon else [], hot.tensors(cpu) if hot else [],
                       -1 if delimiter is None else delimiter, case["lm_weight"], case["insertion_bonus"], max_gain,
                       case["beam_threshold"])
    arrays = {}
    spec = {"beam_width": case["beam_width"], "top_k": case["top_k"], "min_length": case["min_length"],
            "max_length": case["max_length"], "allowed": int(case["allowed"] is not None),
            "blank_skip_threshold": "inf" if case["blank_skip_threshold"] is None else case["blank_skip_threshold"],
            "beam_threshold": "inf" if case["beam_threshold"] is None else case["beam_threshold"],
            "delimiter": -1 if delimiter is None else delimiter, "lm_weight": repr(float(case["lm_weight"])),
            "insertion_bonus": repr(float(case["insertion_bonus"])), "max_gain": repr(float(max_gain)),
            "has_lm": int(lm is not None), "has_lexicon": int(lexicon is not None), "has_hotwords": int(hot is not None)}
    if lm is not None:
        spec.update(word_lm=int(lm.unit == "word"), order=info[0], bos=info[1], eos=info[2], unk=info[3], mask=info[5])
        arrays.update(lm_keys=tables[0], lm_values=tables[1])
        if lm.unit == "word":
            arrays.update(vocab_first=tables[3], vocab_token=tables[4], vocab_node=tables[5], vocab_word=tables[6])
        else:
            arrays["lm_units"] = tables[2]
    if lexicon is not None:
        arrays.update(zip(("lex_first", "lex_token", "lex_node", "lex_end"), lexicon.tensors(cpu)))
    if hot is not None:
        arrays.update(zip(("hot_first", "hot_token", "hot_node", "hot_partial", "hot_full"), hot.tensors(cpu)))
    return common_write(root, case, spec, arrays)


def align_case(name, *, dtype="f32", T=14, N=5, C=6, S=4, il=None, tl=None, blank=0, strides="contiguous",
               seed=0, ties=False, bad_label=False, star=None, tsan=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64).log_softmax(-1)
    if ties:
        x = torch.randint(-3, 1, (T, N, C), generator=g).double()
    labels = [c for c in range(C) if c != blank]
    targets = torch.tensor(labels)[torch.randint(0, len(labels), (N, S), generator=g)]
    if S >= 2:
        targets[0, 1] = targets[0, 0]  # a repeat: the skip is forbidden there
    if bad_label:
        targets[1, 0] = C + 5  # unchecked: the kernel must find no alignment, not read past the row
    return {"name": name, "op": "align", "dtype": dtype, "x": x.to(DTYPES[dtype]),
            "il": list(il) if il is not None else [T] * N, "tl": list(tl) if tl is not None else [S] * N,
            "targets": targets, "blank": blank, "strides": strides, "bad_label": bad_label, "tsan": tsan,
            "star": star}


def align_cases():
    cases = [align_case(f"align-{d}", dtype=d, seed=i, il=(14, 9, 0, 14, 3), tl=(4, 3, 0, 0, 4))
             for i, d in enumerate(DTYPES)]
    cases += [align_case("align-ties", ties=True, seed=5, blank=2),
              align_case("align-batch-first", strides="batch_first", seed=6, blank=5),
              align_case("align-padded-rows", strides="padded_rows", C=40, seed=7),
              # 2 L + 1 = 601 states: three rounds of 256 threads, 19 words per bit plane
              align_case("align-long-target", T=700, N=2, C=30, S=300, seed=8, tsan=False),
              align_case("align-bad-values", seed=9, il=(14, 14, -3, 99, 14), tl=(4, 4, 4, 4, 9),
                         bad_label=True),
              # the wildcard: every dtype's accumulation, ties, few classes, a long target
              align_case("align-star-f32", seed=10, il=(14, 9, 0, 14, 3), tl=(4, 3, 0, 0, 4), star=0.0),
              align_case("align-star-f64-ties", dtype="f64", ties=True, seed=11, blank=3, star=-0.5),
              align_case("align-star-bf16", dtype="bf16", seed=12, blank=1, star=-0.25),
              align_case("align-star-three-classes", C=3, seed=13, blank=2, star=0.0),
              align_case("align-star-long", T=700, N=2, C=30, S=300, seed=14, star=-0.1, tsan=False)]
    # 1,000 random small samples in one batch (the CPU op scores them as the
    # reference: tests/test_forced_align.py), with and without the wildcard
    rng = random.Random(15)
    for name, ties, star in (("align-1000", False, None), ("align-1000-star-ties", True, -0.5)):
        il = [rng.randint(0, 8) for _ in range(1000)]
        cases.append(align_case(name, T=8, N=1000, C=5, S=3, seed=16 + ties, ties=ties, star=star, il=il,
                                tl=[rng.randint(0, min(3, n // 2)) for n in il], tsan=False))
    return cases


def align_star(case):
    """The wildcard's candidates as ctcx/align.py hands them over: (values, classes), or None."""
    if case["star"] is None:
        return None
    from ctcx.align import _star_candidates
    return _star_candidates(case["x"], case["star"])


def align_write(root, case):
    spec_targets = case["targets"]
    arrays = {"targets": spec_targets, "target_lengths": torch.tensor(case["tl"])}
    star = align_star(case)
    extra = {"S": spec_targets.shape[1], "star": int(star is not None), "K": 0 if star is None else star[0].shape[2]}
    if star is not None:
        arrays.update(star_values=star[0], star_classes=star[1])
    return common_write(root, case, extra, arrays)


def fuzz_cases(per_op=60, seed=28):
    """Random small cases of every op (issue 28: the fuzz suite's space, run
    through the kernels under both sanitizers): shapes down to T = 1, C = 2
    and N = 1, every dtype, blank first, last or between, lengths from 0 to
    T, targets that cannot fit their frames, repeats, both target layouts and
    index types, every input stride, ties and NaN for the decoders, beams of
    1 to 8 with constraints and blank skipping, the wildcard."""
    rng = random.Random(seed)
    cases = {"loss": [], "greedy": [], "beam": [], "align": []}

    def shape(t_max=16, n_max=4, c_max=10):
        T, N, C = rng.randint(1, t_max), rng.randint(1, n_max), rng.randint(2, c_max)
        blank = rng.choice([0, C - 1, rng.randrange(C)])
        il = [rng.choice([0, T, rng.randint(0, T)]) for _ in range(N)]
        return T, N, C, blank, il

    for i in range(per_op):
        T, N, C, blank, il = shape()
        cases["loss"].append(loss_case(
            f"fuzz-loss-{i}", dtype=rng.choice(list(DTYPES)), target_dtype=rng.choice(list(TARGET_DTYPES)),
            T=T, N=N, C=C, L=[rng.randint(0, min(T + 2, 8)) for _ in range(N)], il=il,
            padded=rng.random() < 0.5, kind=rng.choice(["log_probs", "logits"]), grad=rng.random() < 0.8,
            zero_infinity=rng.random() < 0.5, blank=blank,
            strides=rng.choice(["contiguous", "batch_first", "padded_rows"]), seed=1000 + i,
            repeats=rng.random() < 0.3))
        T, N, C, blank, il = shape()
        cases["greedy"].append(greedy_case(
            f"fuzz-greedy-{i}", dtype=rng.choice(list(DTYPES)), T=T, N=N, C=C, il=il, blank=blank,
            strides=rng.choice(["contiguous", "batch_first", "padded_rows"]), seed=2000 + i,
            ties=rng.random() < 0.3, nan=T >= 3 and C >= 4 and rng.random() < 0.2))
        T, N, C, blank, il = shape(t_max=10, n_max=3)
        beam_width = rng.randint(1, 8)
        min_length = rng.randint(0, min(2, T))
        allowed = None
        if rng.random() < 0.3:
            allowed = torch.tensor([rng.random() < 0.7 or c == blank for c in range(C)])
        cases["beam"].append(beam_case(
            f"fuzz-beam-{i}", dtype=rng.choice(list(DTYPES)), T=T, N=N, C=C, il=il, blank=blank,
            beam_width=beam_width, top_k=rng.randint(1, beam_width), min_length=min_length,
            max_length=rng.choice([None, min_length + rng.randint(0, 3)]), allowed=allowed,
            blank_skip_threshold=rng.choice([None, None, 0.5, 0.9]), seed=3000 + i,
            scale=rng.choice([0.5, 1.5, 4.0])))
        T, N, C, blank, il = shape()
        S = rng.randint(0, 6)
        cases["align"].append(align_case(
            f"fuzz-align-{i}", dtype=rng.choice(list(DTYPES)), T=T, N=N, C=C, S=S, il=il,
            tl=[rng.randint(0, S) for _ in range(N)], blank=blank,
            strides=rng.choice(["contiguous", "batch_first", "padded_rows"]), seed=4000 + i,
            ties=rng.random() < 0.4, star=rng.choice([None, None, 0.0, -0.5])))
    return cases


ALL_CASES = {"loss": loss_cases(), "greedy": greedy_cases(), "beam": beam_cases(), "align": align_cases(),
             "lmbeam": lm_beam_cases()}
for _op, _cases in fuzz_cases().items():
    ALL_CASES[_op] += _cases


def run_driver(exe: Path, dirs: list[Path]) -> subprocess.CompletedProcess:
    env = dict(os.environ, **SANITIZER_ENV)
    env.pop("LD_PRELOAD", None)  # the drivers carry their own sanitizer runtimes
    return subprocess.run([str(exe), *map(str, dirs)], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def runs(drivers, tmp_path_factory):
    """{variant: (process, {case name: (case, dir, stats)})}: every case, once per build."""
    out = {}
    for variant, exe in drivers.items():
        root = tmp_path_factory.mktemp(f"emu-{variant}")
        written = {}
        for op, cases in ALL_CASES.items():
            for case in cases:
                if variant == "tsan" and not case["tsan"]:
                    continue
                case = dict(case)
                d = {"loss": loss_write, "greedy": lambda r, c: common_write(r, c, {}),
                     "beam": beam_write, "align": align_write, "lmbeam": lm_beam_write}[op](root, case)
                written[case["name"]] = (case, d)
        proc = run_driver(exe, [d for _, d in written.values()])
        stats = {}
        for line in proc.stdout.splitlines():
            m = re.match(r"case (\S+) (.*) ok$", line)
            if m:
                stats[Path(m.group(1)).name] = dict(kv.split("=", 1) for kv in m.group(2).split())
        out[variant] = (proc, {name: (c, d, stats.get(name)) for name, (c, d) in written.items()})
    return out


def variants():
    return list(VARIANTS) + ["plain"]


def results(runs, variant):
    if variant not in runs:
        pytest.skip(f"no {variant} build on this machine")
    proc, cases = runs[variant]
    assert proc.returncode == 0, f"driver exited {proc.returncode}\n{proc.stderr[-6000:]}"
    assert "WARNING: ThreadSanitizer" not in proc.stderr and "ERROR: AddressSanitizer" not in proc.stderr, \
        proc.stderr[-6000:]
    assert "runtime error" not in proc.stderr, proc.stderr[-6000:]  # UndefinedBehaviorSanitizer
    return cases


@pytest.mark.parametrize("variant", variants())
def test_loss_kernels_match_the_cpu_op(runs, variant):
    failures = []
    for name, (case, d, stats) in results(runs, variant).items():
        if case["op"] != "loss":
            continue
        assert stats is not None, f"{name} did not run"
        T, N, C = case["x"].shape
        want_loss, want_grad = loss_reference(case)
        got_loss = read(d, "loss", ACC[case["dtype"]], (N,))
        (lt, gt) = TOLERANCES[case["dtype"]]
        gt = case["grad_tol"] or gt
        try:
            torch.testing.assert_close(got_loss, want_loss, rtol=lt[0], atol=lt[1], equal_nan=True)
            if case["grad"]:
                got_grad = read(d, "grad", DTYPES[case["dtype"]], (T, N, C))
                torch.testing.assert_close(got_grad.double(), want_grad.double(), rtol=gt[0], atol=gt[1],
                                           equal_nan=True)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("variant", variants())
def test_greedy_kernels_match_the_cpu_op(runs, variant):
    failures = []
    for name, (case, d, stats) in results(runs, variant).items():
        if case["op"] != "greedy":
            continue
        T, N, C = case["x"].shape
        tokens, lengths = torch.ops.ctcx.ctc_greedy_decode(case["view"], torch.tensor(case["il"]), case["blank"])
        got_tokens, got_lengths = read(d, "tokens", torch.long, (N, T)), read(d, "lengths", torch.long, (N,))
        if not (torch.equal(got_tokens, tokens) and torch.equal(got_lengths, lengths)):
            failures.append(f"{name}: tokens {got_tokens.tolist()} lengths {got_lengths.tolist()}, "
                            f"CPU {tokens.tolist()} {lengths.tolist()}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("variant", variants())
def test_beam_search_kernels_match_the_cpu_op(runs, variant):
    failures = []
    for name, (case, d, stats) in results(runs, variant).items():
        if case["op"] != "beam":
            continue
        T, N, C = case["x"].shape
        K = case["top_k"]
        want = torch.ops.ctcx.ctc_beam_search(case["view"], torch.tensor(case["il"]), case["beam_width"], K,
                                              case["blank"], case["min_length"], case["max_length"],
                                              case["allowed"], case["blank_skip_threshold"])
        acc = ACC[case["dtype"]]
        got = (read(d, "tokens", torch.long, (N, K, T)), read(d, "lengths", torch.long, (N, K)),
               read(d, "scores", acc, (N, K)), read(d, "timesteps", torch.long, (N, K, T)))
        for field, g, w in zip(("tokens", "lengths", "scores", "timesteps"), got, want):
            try:
                if field == "scores":
                    tol = 1e-12 if acc == torch.float64 else 2e-5
                    torch.testing.assert_close(g, w, rtol=tol, atol=tol)
                else:
                    assert torch.equal(g, w), f"{g.tolist()} != {w.tolist()}"
            except AssertionError as e:
                failures.append(f"{name} {field}: {e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("variant", variants())
def test_fused_beam_search_kernel_matches_the_cpu_op(runs, variant):
    """The same beams as the CPU op, which prunes what the kernel scores: the
    same hypotheses, start frames and scores (fused, CTC, LM), bit for bit."""
    failures = []
    for name, (case, d, stats) in results(runs, variant).items():
        if case["op"] != "lmbeam":
            continue
        assert stats is not None, f"{name} did not run"
        T, N, C = case["x"].shape
        K = case["top_k"]
        want = torch.ops.ctcx.ctc_lm_beam_search(case["view"], torch.tensor(case["il"]), case["beam_width"], K,
                                                 case["blank"], case["min_length"], case["max_length"],
                                                 case["allowed"], case["blank_skip_threshold"], *case["op_args"])
        acc = ACC[case["dtype"]]
        got = (read(d, "tokens", torch.long, (N, K, T)), read(d, "lengths", torch.long, (N, K)),
               read(d, "scores", acc, (N, K)), read(d, "timesteps", torch.long, (N, K, T)),
               read(d, "ctc_scores", acc, (N, K)), read(d, "lm_scores", acc, (N, K)))
        for field, g, w in zip(("tokens", "lengths", "scores", "timesteps", "ctc_scores", "lm_scores"), got, want):
            if not torch.equal(g, w):
                failures.append(f"{name} {field}: {g.tolist()} != {w.tolist()}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("variant", variants())
def test_forced_align_kernel_matches_the_cpu_op(runs, variant):
    """The same path, scores and path score bit for bit as the CPU op (same
    comparisons, tie rule and additions); clamped lengths, and no alignment
    (a non-finite path score, blank labels) for an out-of-range label where
    the values were not checked."""
    failures = []
    for name, (case, d, stats) in results(runs, variant).items():
        if case["op"] != "align":
            continue
        T, N, _ = case["x"].shape
        S = case["targets"].shape[1]
        acc = ACC[case["dtype"]]
        labels = read(d, "labels", torch.int64, (N, T))
        scores = read(d, "scores", DTYPES[case["dtype"]], (N, T))
        path = read(d, "path_scores", acc, (N,))
        il = [min(max(v, 0), T) for v in case["il"]]
        tl = [min(max(v, 0), S) for v in case["tl"]]
        rows = [n for n in range(N) if not (case["bad_label"] and n == 1)]
        ref = torch.ops.ctcx.ctc_forced_align(case["view"][:, rows], case["targets"][rows],
                                              torch.tensor(il)[rows], torch.tensor(tl)[rows], case["blank"],
                                              case["star"])
        if not (torch.equal(labels[rows], ref[0]) and torch.equal(scores[rows], ref[1])
                and torch.equal(path[rows].isfinite(), ref[2].isfinite())
                and torch.equal(path[rows][ref[2].isfinite()], ref[2][ref[2].isfinite()])):
            failures.append(name)
        if case["bad_label"] and not (not torch.isfinite(path[1]) and labels[1].eq(case["blank"]).all()):
            failures.append(name + " (bad label)")
        if case["star"] is not None and not name.startswith("fuzz-") and not labels.eq(case["x"].shape[2]).any():
            failures.append(name + " (the wildcard was never used)")
    assert not failures, failures


def stats_of(runs, name):
    for variant in runs:
        _, cases = runs[variant]
        if name in cases and cases[name][2] is not None:
            return cases[name][2]
    pytest.fail(f"{name} did not run")


def recursion_threads(stats) -> int:
    """Threads per block of the loss's recursion kernel: its launches are
    prepare, gather, recursion, gradient (no gather when T * N = 0)."""
    return int(stats["shapes"].split(",")[2].split("x")[1])


def test_the_cases_reach_every_path(runs):
    """The cases above do what they are there for: recursion blocks of several
    warps up to 512 threads, alpha in global memory, several token-list chunks,
    beam scratch in global memory, opt-in shared memory above 48 KiB, and an
    alignment of 601 states over whole blocks of 256 threads."""
    assert recursion_threads(stats_of(runs, "loss-warps-f32-L16")) == 64
    assert recursion_threads(stats_of(runs, "loss-warps-f64-L40")) == 96
    assert recursion_threads(stats_of(runs, "loss-512-threads")) == 512
    assert recursion_threads(stats_of(runs, "loss-L250")) == 512
    assert stats_of(runs, "loss-global-alpha-f32")["alpha_shared_bytes"] == "0"
    assert stats_of(runs, "loss-global-alpha-f64")["alpha_shared_bytes"] == "0"
    assert stats_of(runs, "loss-L250")["alpha_shared_bytes"] != "0"
    assert int(stats_of(runs, "beam-many-chunks")["chunks"]) >= 5
    assert stats_of(runs, "beam-global-scratch")["scratch_in_shared"] == "0"
    assert stats_of(runs, "beam-optin-shared")["scratch_in_shared"] == "1"
    assert stats_of(runs, "beam-1024")["scratch_in_shared"] == "0"
    assert stats_of(runs, "align-long-target")["shapes"] == "2x256"


def test_forced_align_workspace_is_within_twice_the_two_bit_bound(runs):
    """ctcx.forced_align's memory promise on CUDA: the kernel's workspace (the
    exact block the driver hands it, sized by forced_align_workspace_bytes)
    stays within 2x of 2 bits per (frame, extended-label state) of the batch;
    and the docstring's figure for (T, N, L) = (2000, 64, 300)."""
    for name in ("align-long-target", "align-star-long"):
        T, N, S = 700, 2, 300
        bound = 2 * T * N * (2 * S + 1) / 8
        got = int(stats_of(runs, name)["workspace_bytes"])
        assert bound <= got <= 2 * bound, (name, got, bound)
    # the docstring's (2000, 64, 300): 2 bit planes of 19 words per frame and sample, plus two score rows
    words = (2 * 300 + 1 + 31) // 32
    planes, rows = 2000 * 64 * 2 * words * 4, 64 * 2 * 601 * 4
    assert round(planes / 1e6, 1) == 19.5 and round(rows / 1e6, 1) == 0.3
    assert planes + rows <= 2 * (2 * 2000 * 64 * 601 / 8) and round(2 * 2000 * 64 * 601 / 8 / 1e6, 1) == 19.2
