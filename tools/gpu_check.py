"""Every CUDA path of ctcx checked on a GPU machine in one call, within a time budget.

    python3 tools/gpu_check.py                 # on the GPU machine (logs under $OUT)
    python3 tools/gpu_check.py --dry-run       # on any machine: checks the plan, needs no GPU

Steps, in order, each under its own time limit and all under --budget
(default 480 s), so one hang cannot eat the call:

1. env         nvidia-smi, torch / CUDA / cuDNN versions, the GPU, nvcc,
               compute-sanitizer; every path the later steps need must exist;
2. build       ctcx in place (``setup.py build_ext --inplace``) for sm_90 with
               every core (``MAX_JOBS``), after failing fast when nvcc's CUDA
               major version differs from torch's; then ``ctcx.cuda_available()``;
3. tests       the CUDA tests with a per-test timeout (pytest-timeout):
               tests/test_ctc_loss_cuda.py whole (the recursion-race stress test
               over S in {16, 64, 250} at N = 256, sync-free and graph-capture
               promises, the second-GPU case) and the device-parametrized and
               CUDA cases of the other files (``-k cuda``), with
               ``CTCX_EXPECT_CUDA_BUILD=1``;
4. sanitizers  compute-sanitizer memcheck, racecheck, synccheck and initcheck
               on tools/sanitize_case.py's ``loss`` (forward + backward) and
               ``beam`` (76 KiB of opt-in shared memory) calls, ctcx's kernels
               only where the tool can filter, torch's caching allocator off so
               an overrun of a buffer is not hidden inside a pooled block;
5. bench-loss  ``benchmarks/bench_ctc_loss.py --device cuda --quick``: native and
               cuDNN CTC, peak memory, bandwidth at T*N*C >= 1e8;
6. bench-decode ``benchmarks/bench_decode.py --device cuda --quick``: torchaudio's
               ``cuda_ctc_decoder`` at beams 10 and 64;
7. bench-train ``benchmarks/bench_train.py --device cuda --quick``: the GPU's
               mm and conv peaks, each captcha model's training step (fp32,
               bf16), the trainer's own loop with drawn data.

Every step's log and ``summary.txt`` (status and seconds per step, test
counts and failures, sanitizer findings, benchmark ratios) go to --out
(default ``$OUT``, else ``gpu_check_out/``): at most 8 files, flat, as the
device tool brings back. Wheels in ``.whl/`` (for packages the GPU machine
lacks) are installed into a private folder on ``PYTHONPATH`` first.

``--dry-run`` runs on a machine without a GPU (CI runs it through
tests/test_gpu_check.py): it checks that every path and Python module exists,
that the test selection collects (``CTCX_COLLECT_CUDA=1``), that both
sanitizer cases compute the right numbers on the CPU, and that both
benchmarks run on the CPU at a tiny size and accept their GPU arguments. It
skips the build (the installed ctcx is used), nvidia-smi, compute-sanitizer
and everything that needs a GPU, and reports the GPU-only tools it did not
find. Exit status: 0 when every step passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ARCH = "9.0"  # the H200 (Hopper); one architecture keeps the build short

TEST_FILES = ["tests/test_ctc_loss_cuda.py", "tests/test_ctc_loss.py", "tests/test_ctc_loss_logits.py",
              "tests/test_ctc_loss_errors.py", "tests/test_decode.py", "tests/test_beam_search.py",
              "tests/test_forced_align.py", "tests/test_lm_beam_search.py", "tests/test_cuda_build.py"]
TEST_ARGS = ["-q", "-p", "no:cacheprovider", "-rfEs", "-k", "cuda"]
PER_TEST_TIMEOUT = 120
SANITIZER_TOOLS = ["memcheck", "racecheck", "synccheck", "initcheck"]
SANITIZER_CASES = ["loss", "beam", "align"]
SANITIZER_EXIT = 99  # --error-exitcode: a finding, told apart from a crash
BENCH_LOSS = ["benchmarks/bench_ctc_loss.py", "--device", "cuda", "--quick"]
BENCH_DECODE = ["benchmarks/bench_decode.py", "--device", "cuda", "--quick"]
BENCH_TRAIN = ["benchmarks/bench_train.py", "--device", "cuda", "--quick"]
# Tiny CPU runs of the same scripts for the dry run.
BENCH_LOSS_CPU = ["benchmarks/bench_ctc_loss.py", "--device", "cpu", "--quick", "--repeats", "1",
                  "--configs", "20,4,30,5", "--bandwidth-min", "0"]
BENCH_DECODE_CPU = ["benchmarks/bench_decode.py", "--device", "cpu", "--workloads", "random", "--quick", "--repeats", "1",
                    "--batch", "2", "--frames", "20", "--classes", "30", "--peer-budget", "1"]
BENCH_TRAIN_CPU = ["benchmarks/bench_train.py", "--device", "cpu", "--quick", "--repeats", "1", "--parts", "a"]
REQUIRED_PATHS = ["setup.py", "csrc/ops.cpp", "csrc/cuda", "tools/sanitize_case.py", BENCH_LOSS[0],
                  BENCH_DECODE[0], BENCH_TRAIN[0], *TEST_FILES]
REQUIRED_MODULES = ["torch", "numpy", "pytest", "pytest_timeout", "setuptools"]
GPU_TOOLS = ["nvidia-smi", "nvcc", "compute-sanitizer"]

# Step limits in seconds; the whole run also stops at --budget.
LIMITS = {"env": 60, "build": 240, "tests": 240, "sanitizers": 150, "bench-loss": 120, "bench-decode": 120,
          "bench-train": 120}
SANITIZER_RUN_LIMIT = 45


class Run:
    """One check run: the deadline, the output folder and what each step found."""

    def __init__(self, out: Path, budget: float, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.deadline = time.monotonic() + budget
        self.steps: List[Dict] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.built = dry_run  # the dry run tests the ctcx that is installed
        if dry_run:
            # Children run in the source tree: `python -c` and `python -m` would
            # import its ctcx/ (no extension there after a non-editable install)
            # instead of the installed one. On the GPU machine the in-place
            # build in the tree is the one meant.
            self.env["PYTHONSAFEPATH"] = "1"
        else:
            # ... and the scripts (tools/, benchmarks/) import it too.
            self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), self.env.get("PYTHONPATH")]))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sh(self, cmd: List[str], log: str, limit: float, env: Optional[Dict[str, str]] = None) -> Optional[int]:
        """Run cmd with its output appended to log; None when it ran past limit
        (its whole process group is killed then)."""
        limit = min(limit, self.left() - 5)
        path = self.out / log
        with open(path, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}   (limit {limit:.0f} s)\n")
            f.flush()
            if limit < 1:
                f.write("not run: the time budget is spent\n")
                return None
            try:
                p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env or self.env,
                                     start_new_session=True)
            except OSError as exc:
                f.write(f"could not start: {exc}\n")
                return 127
            try:
                return p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                f.write(f"\nKILLED after {limit:.0f} s\n")
                return None

    def step(self, name: str, fn) -> None:
        start = time.monotonic()
        print(f"[gpu_check] {name} ...", flush=True)
        if self.left() < 10:
            status, detail = "skipped", "time budget spent"
        else:
            try:
                status, detail = fn(self, LIMITS[name])
            except Exception as exc:  # a bug in this script must still leave a summary
                status, detail = "FAILED", f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - start
        self.steps.append({"name": name, "status": status, "detail": detail, "seconds": seconds})
        print(f"[gpu_check] {name}: {status} ({seconds:.0f} s) {detail}", flush=True)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def cuda_release(nvcc_version: str) -> Optional[str]:
    """'13.0' from the output of ``nvcc --version``."""
    m = re.search(r"release (\d+\.\d+)", nvcc_version)
    return m.group(1) if m else None


def version_mismatch(torch_cuda: Optional[str], nvcc_cuda: Optional[str]) -> Optional[str]:
    """Why a build would fail or load wrongly, or None. Torch refuses a
    different major version; a different minor version is compatible."""
    if not torch_cuda:
        return "this torch has no CUDA (torch.version.cuda is None)"
    if not nvcc_cuda:
        return "nvcc's CUDA version could not be read"
    if torch_cuda.split(".")[0] != nvcc_cuda.split(".")[0]:
        return f"torch was built with CUDA {torch_cuda}, nvcc is CUDA {nvcc_cuda}"
    return None


# ---------------------------------------------------------------- steps

def step_env(r: Run, limit: float):
    missing = [p for p in REQUIRED_PATHS if not (ROOT / p).exists()]
    absent_modules = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    absent_tools = [t for t in GPU_TOOLS if shutil.which(t) is None]
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    with open(r.out / "env.log", "w") as f:
        f.write(f"python {sys.version.split()[0]} at {PY}\nroot {ROOT}\ncores {os.cpu_count()}\n"
                f"missing paths: {missing or 'none'}\nmissing Python modules: {absent_modules or 'none'}\n"
                f"GPU tools not on PATH: {absent_tools or 'none'}\nwheels: {[w.name for w in wheels] or 'none'}\n")
    if wheels:
        site = Path(os.environ.get("TMPDIR", "/tmp")) / "ctcx-gpu-check-site"
        rc = r.sh([PY, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
                   "--upgrade", "--target", str(site), *map(str, wheels)], "env.log", limit)
        if rc != 0:
            return "FAILED", "installing the wheels in .whl/ failed"
        r.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), r.env.get("PYTHONPATH")]))
    r.sh([PY, "-c", "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', "
                    "torch.backends.cudnn.version(), 'gpus', torch.cuda.device_count()); "
                    "[print(' ', i, torch.cuda.get_device_properties(i)) for i in range(torch.cuda.device_count())]"],
         "env.log", 60)
    for tool, args in (("nvidia-smi", []), ("nvcc", ["--version"]), ("compute-sanitizer", ["--version"])):
        if shutil.which(tool):
            r.sh([tool, *args], "env.log", 30)
    if missing or absent_modules:
        return "FAILED", f"missing paths {missing}, missing modules {absent_modules}"
    if r.dry_run:
        return "ok", (f"GPU tools not here (needed on the GPU machine): {', '.join(absent_tools)}"
                      if absent_tools else "every GPU tool is here too")
    if absent_tools:
        return "FAILED", f"not on PATH: {', '.join(absent_tools)}"
    return "ok", ""


def torch_cuda_version(r: Run) -> Optional[str]:
    out = subprocess.run([PY, "-c", "import torch; print(torch.version.cuda)"], capture_output=True, text=True,
                         env=r.env, timeout=120).stdout.strip()
    return None if out in ("", "None") else out


def step_build(r: Run, limit: float):
    log = r.out / "build.log"
    nvcc = shutil.which("nvcc")
    nvcc_cuda = cuda_release(subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout) if nvcc else None
    torch_cuda = torch_cuda_version(r)
    why = version_mismatch(torch_cuda, nvcc_cuda)
    with open(log, "a") as f:
        f.write(f"torch CUDA {torch_cuda}, nvcc CUDA {nvcc_cuda}: {why or 'compatible'}\n")
    check = [PY, "-c", "import ctcx, sys; print(ctcx.__file__, 'cuda_available', ctcx.cuda_available()); "
                       "sys.exit(0 if ctcx.cuda_available() else 3)"]
    if r.dry_run:
        rc = r.sh([PY, "-c", "import ctcx; print(ctcx.__file__, 'cuda_available', ctcx.cuda_available())"],
                  "build.log", 60)
        if rc != 0:
            return "FAILED", "import ctcx failed"
        return "ok", f"not built (dry run); a build here would be: {why or 'compatible'}"
    if why:
        return "FAILED", f"CUDA version mismatch: {why}"
    env = dict(r.env, MAX_JOBS=str(os.cpu_count() or 1), TORCH_CUDA_ARCH_LIST=ARCH, CTCX_FORCE_CUDA="1")
    rc = r.sh([PY, "setup.py", "build_ext", "--inplace"], "build.log", limit, env=env)
    if rc != 0:
        return "FAILED", "build timed out" if rc is None else f"build failed (exit {rc}); see build.log"
    if r.sh(check, "build.log", 60) != 0:
        return "FAILED", "built, but ctcx.cuda_available() is False"
    r.built = True
    return "ok", f"sm_{ARCH.replace('.', '')}, MAX_JOBS={env['MAX_JOBS']}"


def pytest_counts(text: str) -> Dict[str, int]:
    """{'passed': 3, 'failed': 1, ...} from pytest's last summary line; with
    --collect-only, {'selected': n, ...}."""
    lines = [ln for ln in text.splitlines()
             if re.search(r"\d+ (passed|failed|errors?|skipped|deselected)|tests? collected", ln)]
    if not lines:
        return {}
    last = lines[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)",
                                               last)}
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", last)
    if collected:
        counts["selected"] = int(collected.group(1))
    return counts


def step_tests(r: Run, limit: float):
    if not r.built:
        return "skipped", "no CUDA build"
    if r.dry_run:
        env = dict(r.env, CTCX_COLLECT_CUDA="1")
        rc = r.sh([PY, "-m", "pytest", "--collect-only", *TEST_ARGS, *TEST_FILES], "tests.log", limit, env=env)
        counts = pytest_counts(read(r.out / "tests.log"))
        selected = counts.get("selected", 0)
        if rc != 0 or selected <= 0:
            return "FAILED", f"collection failed (exit {rc}, {counts})"
        return "ok", f"{selected} tests would run on the GPU ({counts.get('deselected', 0)} CPU-only deselected)"
    env = dict(r.env, CTCX_EXPECT_CUDA_BUILD="1")
    rc = r.sh([PY, "-m", "pytest", *TEST_ARGS, f"--timeout={PER_TEST_TIMEOUT}", *TEST_FILES], "tests.log", limit,
              env=env)
    counts = pytest_counts(read(r.out / "tests.log"))
    status = "ok" if rc == 0 and counts.get("passed", 0) > 0 else "FAILED"
    return status, ("timed out; " if rc is None else "") + ", ".join(f"{n} {k}" for k, n in counts.items())


def sanitizer_verdict(text: str, rc: Optional[int]) -> str:
    summary = re.findall(r"(?:ERROR|RACECHECK) SUMMARY: .*", text)
    if rc is None:
        return "TIMEOUT"
    if rc == SANITIZER_EXIT:
        return "FINDINGS: " + (summary[-1] if summary else "see sanitizers.log")
    if "Device not supported" in text:
        return "unavailable (compute-sanitizer does not support the device here)"
    if rc != 0:
        return f"FAILED (exit {rc})"
    return "clean" + (f" ({summary[-1]})" if summary else "")


def step_sanitizers(r: Run, limit: float):
    if not r.built:
        return "skipped", "no CUDA build"
    log = r.out / "sanitizers.log"
    if r.dry_run:
        bad = [c for c in SANITIZER_CASES
               if r.sh([PY, "tools/sanitize_case.py", c, "--device", "cpu"], "sanitizers.log", 120) != 0]
        if bad:
            return "FAILED", f"sanitize_case.py {bad} failed on the CPU"
        return "ok", f"cases {SANITIZER_CASES} agree with the CPU op on the CPU; sanitizers not run (dry run)"
    help_text = subprocess.run(["compute-sanitizer", "--help"], capture_output=True, text=True).stdout
    kernel_filter = ["--kernel-name", "kns=ctcx"] if "--kernel-name" in help_text else []
    stop = time.monotonic() + limit
    verdicts = []
    for tool in SANITIZER_TOOLS:
        for case in SANITIZER_CASES:
            start = len(read(log))
            env = dict(r.env, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
            rc = r.sh(["compute-sanitizer", "--tool", tool, "--error-exitcode", str(SANITIZER_EXIT), *kernel_filter,
                       PY, "tools/sanitize_case.py", case], "sanitizers.log",
                      min(SANITIZER_RUN_LIMIT, stop - time.monotonic()), env=env)
            verdict = sanitizer_verdict(read(log)[start:], rc)
            verdicts.append(f"{tool}/{case}: {verdict}")
            with open(log, "a") as f:
                f.write(f"==> {tool}/{case}: {verdict}\n")
    bad = [v for v in verdicts if not (": clean" in v or ": unavailable" in v)]
    return ("ok" if not bad else "FAILED"), "; ".join(verdicts)


def step_bench(script_gpu: List[str], script_cpu: List[str], log: str):
    def run(r: Run, limit: float):
        if not r.built:
            return "skipped", "no CUDA build"
        if r.dry_run:
            if r.sh([PY, *script_gpu, "--dry-run"], log, 60) != 0:
                return "FAILED", f"{' '.join(script_gpu)} --dry-run failed"
            if r.sh([PY, *script_cpu], log, limit) != 0:
                return "FAILED", f"{' '.join(script_cpu)} failed"
            return "ok", "GPU arguments accepted; a tiny CPU run worked"
        rc = r.sh([PY, *script_gpu], log, limit)
        return ("ok", "") if rc == 0 else ("FAILED", "timed out" if rc is None else f"exit {rc}")
    return run


# ---------------------------------------------------------------- summary

def bench_lines(text: str) -> List[str]:
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if (re.search(r"\d+\.\d+x$", s) or s.startswith(("peak memory", "bandwidth:", "B=", "GPU:", "device=",
                                                          "ctcx CUDA", "ctcx CPU", "torchaudio", "Traceback"))
                or "unavailable" in s or "mismatch" in s):
            keep.append("  " + s)
    return keep


def table_lines(text: str, limit: int = 40) -> List[str]:
    """bench_train's part headings and table rows (its figures end in % or units, not ratios)."""
    return ["  " + ln.strip() for ln in text.splitlines() if ln.startswith(("  ", "("))][:limit]


def write_summary(r: Run) -> str:
    env_log = read(r.out / "env.log")
    torch_line = next((ln for ln in env_log.splitlines() if ln.startswith("torch ")), "torch: ?")
    gpu = re.search(r"name='([^']+)'", env_log)
    lines = [f"ctcx gpu_check{' --dry-run' if r.dry_run else ''}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
             f"commit {git_commit()}; {torch_line}; GPU {gpu.group(1) if gpu else 'none'}", ""]
    for s in r.steps:
        lines.append(f"{s['name']:<13} {s['status']:<8} {s['seconds']:5.0f} s  {s['detail']}")
    failures = [ln for ln in read(r.out / "tests.log").splitlines() if ln.startswith(("FAILED", "ERROR"))]
    if failures:
        lines += ["", "test failures:", *failures[:15]]
    for name, log, pick in (("bench-loss", "bench_ctc_loss.log", bench_lines),
                            ("bench-decode", "bench_decode.log", bench_lines),
                            ("bench-train", "bench_train.log", table_lines)):
        found = pick(read(r.out / log))
        if found and not r.dry_run:
            lines += ["", f"{name}:", *found]
    ok = all(s["status"] == "ok" for s in r.steps)
    lines += ["", f"result: {'PASS' if ok else 'FAIL'}"]
    text = "\n".join(lines) + "\n"
    (r.out / "summary.txt").write_text(text)
    return text


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


STEPS = [("env", step_env), ("build", step_build), ("tests", step_tests), ("sanitizers", step_sanitizers),
         ("bench-loss", step_bench(BENCH_LOSS, BENCH_LOSS_CPU, "bench_ctc_loss.log")),
         ("bench-decode", step_bench(BENCH_DECODE, BENCH_DECODE_CPU, "bench_decode.log")),
         ("bench-train", step_bench(BENCH_TRAIN, BENCH_TRAIN_CPU, "bench_train.log"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="check the plan on a machine without a GPU")
    parser.add_argument("--out", type=Path, default=None, help="folder for the logs (default: $OUT, else "
                                                               "gpu_check_out/)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (default 480)")
    parser.add_argument("--only", nargs="*", choices=[name for name, _ in STEPS], default=None,
                        help="run only these steps (env always runs)")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or ROOT / "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.log"):
        old.unlink()
    r = Run(out, args.budget, args.dry_run)
    if args.only is not None and "build" not in args.only:
        r.built = True  # the steps asked for use the build that is there
    for name, fn in STEPS:
        if args.only is None or name == "env" or name in args.only:
            r.step(name, fn)
    print(write_summary(r), end="")
    return 0 if all(s["status"] == "ok" for s in r.steps) else 1


if __name__ == "__main__":
    sys.exit(main())
