"""Build ctcx's CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer
and run the property-based tests (tests/fuzz, the "ci" profile) and the
forced-alignment tests against that build; fail on any sanitizer report.

    python tools/sanitized_fuzz.py [--jobs 2] [--keep DIR] [pytest args...]

The tree's tracked and untracked, not ignored, files are copied to a temporary
directory (your in-place build stays as it is) and built there with
``CTCX_SANITIZE=1 CTCX_FORCE_CPU=1`` (setup.py: -fsanitize=address,undefined,
UB aborts). Python itself is not instrumented, so the ASan runtime is
preloaded (``LD_PRELOAD``); leak detection is off because torch leaks at exit
by design. CI runs this as its ``sanitize`` stage (.ci/run).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")
DEFAULT_TESTS = ["tests/fuzz", "tests/test_forced_align.py"]


def runtime(name: str) -> str:
    """The path of the compiler's sanitizer runtime (e.g. libasan.so)."""
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    if not path or not os.path.isabs(path):
        sys.exit(f"sanitized_fuzz: gcc does not know {name}; install the compiler's sanitizer runtimes")
    return path


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="parallel compiles")
    p.add_argument("--keep", default="", metavar="DIR", help="build in DIR and keep it (default: a temporary one)")
    args, pytest_args = p.parse_known_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ctcx-sanitize."))
    try:
        copy_tree(work)
        env = dict(os.environ, CTCX_SANITIZE="1", CTCX_FORCE_CPU="1", MAX_JOBS=str(args.jobs))
        build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work, env=env,
                               capture_output=True, text=True)
        if build.returncode != 0:
            print(build.stdout[-4000:], build.stderr[-4000:], sep="\n")
            print("sanitized_fuzz: the sanitized build failed")
            return 1
        linked = subprocess.run(["ldd", *map(str, work.glob("ctcx/_C*.so"))], capture_output=True, text=True).stdout
        if "libasan" not in linked or "libubsan" not in linked:
            print(linked)
            print("sanitized_fuzz: the extension is not linked against the sanitizer runtimes")
            return 1
        env = dict(os.environ, LD_PRELOAD=f"{runtime('libasan.so')}:{runtime('libubsan.so')}",
                   ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        env.pop("PYTHONPATH", None)
        # --capture=sys: the sanitizers write to file descriptor 2, which pytest's
        # default capture would swallow when a report aborts the process
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--capture=sys",
                                *(pytest_args or DEFAULT_TESTS)], cwd=work, env=env, capture_output=True, text=True)
        out = tests.stdout + tests.stderr
        first = min((out.find(r) for r in REPORTS if r in out), default=-1)
        print(out[max(0, first - 200):first + 6000] if first >= 0 else out[-6000:])
        reports = [r for r in REPORTS if r in out]
        if tests.returncode != 0 or reports:
            print(f"sanitized_fuzz: FAILED (pytest exit {tests.returncode}; reports: {reports or 'none'})")
            return 1
        print("sanitized_fuzz: no sanitizer report; every test passed against the ASan + UBSan build")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
