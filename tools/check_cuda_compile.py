"""Compile-check ctcx's CUDA sources on a machine without a GPU.

    python tools/check_cuda_compile.py [--jobs 2] [--arch 80 --arch 90]

Compiles every csrc/cuda/*.cu with this machine's nvcc (``-c``, one job per
file and architecture, ``-Xptxas -v``) against torch's headers, prints ptxas'
registers, spills, stack and shared memory per kernel, and syntax-checks the
CUDA glue csrc/cuda/*.cpp with the host compiler (``-fsyntax-only``). The
flags follow setup.py's CUDA build. Exits 1 on any error, 0 with a message
when nvcc is not installed. Nothing is linked or run: a GPU is not needed.

A CPU-only torch wheel ships c10/cuda's headers without the generated
c10/cuda/impl/cuda_cmake_macros.h; the glue check gets a one-line stand-in in
a temporary directory (for this check only: real CUDA builds of torch have it).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUDA_DIR = ROOT / "csrc" / "cuda"
INCLUDE_DIR = ROOT / "csrc" / "include"
# Keep in step with setup.py's nvcc flags (torch adds COMMON_NVCC_FLAGS and the
# C++ standard itself there; cxx_standard() picks the same standard here).
NVCC_FLAGS = ["-O3", "-lineinfo", "-Xcompiler", "-fPIC"]
CXX_FLAGS = ["-fsyntax-only"]
CMAKE_MACROS_STUB = "#define C10_CUDA_BUILD_SHARED_LIBS\n"


def cuda_include_dir(nvcc: str) -> str | None:
    """The include directory of the toolkit `nvcc` belongs to, found as setup.py finds it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ctcx_setup", ROOT / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # defines, does not build: __name__ is not __main__
    root = setup_py.toolkit_of_nvcc(nvcc)
    include = Path(root) / "include" if root else None
    return str(include) if include and (include / "cuda_runtime_api.h").is_file() else None


@functools.lru_cache(maxsize=None)
def cxx_standard() -> str:
    """The C++ standard torch.utils.cpp_extension compiles the installed torch's
    extensions with (C++20 from torch 2.13 on, C++17 before)."""
    import inspect

    from torch.utils import cpp_extension
    return "-std=c++20" if "-std=c++20" in inspect.getsource(cpp_extension) else "-std=c++17"


def demangle(names: list[str]) -> dict[str, str]:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout
    pretty = out.splitlines()
    return dict(zip(names, pretty)) if len(pretty) == len(names) else {n: n for n in names}


def short_kernel_name(pretty: str) -> str:
    """'void ctcx::cuda::(anonymous namespace)::k<float, int>(...)' -> 'k<float, int>'."""
    name = pretty.replace("(anonymous namespace)::", "").removeprefix("void ").split("(")[0]
    head, sep, args = name.partition("<")
    return head.split("::")[-1] + (sep + args if sep else "")


def parse_ptxas(log: str) -> list[dict]:
    """Per-kernel figures from `-Xptxas -v` output."""
    kernels, current = [], None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(\w+)'", line)
        if m:
            current = {"mangled": m.group(1), "arch": m.group(2), "registers": None,
                       "spill_stores": 0, "spill_loads": 0, "stack": 0, "smem": 0}
            kernels.append(current)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(s.group(1)) if s else 0
    return kernels


def compile_cu(nvcc: str, cu: Path, arch: str, includes: list[str], nvcc_common: list[str],
               out_dir: str) -> tuple[str, int, str, float]:
    obj = os.path.join(out_dir, f"{cu.stem}.sm_{arch}.o")
    cmd = [nvcc, "-c", str(cu), "-o", obj, cxx_standard(), *NVCC_FLAGS, *nvcc_common,
           "-gencode", f"arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v",
           *[f"-I{d}" for d in includes]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return f"{cu.name} sm_{arch}", proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def check_cpp(cxx: str, cpp: Path, includes: list[str]) -> tuple[str, int, str, float]:
    cmd = [cxx, cxx_standard(), *CXX_FLAGS, "-DTORCH_EXTENSION_NAME=_C", str(cpp), *[f"-I{d}" for d in includes]]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return f"{cpp.name} (g++ -fsyntax-only)", proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", default=None,
                        help="SM architecture to compile for, e.g. 80 (repeatable; default 80 and 90)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiles (default 2)")
    args = parser.parse_args(argv)
    archs = args.arch or ["80", "90"]

    nvcc = shutil.which("nvcc") or next(
        (p for p in [os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"),
                     "/usr/local/cuda/bin/nvcc"] if os.path.isfile(p)), None)
    if nvcc is None:
        print("check_cuda_compile: nvcc not found; skipping the CUDA compile check")
        return 0
    cuda_include = cuda_include_dir(nvcc)
    if cuda_include is None:
        print(f"check_cuda_compile: cannot find the CUDA include directory of {nvcc}")
        return 1

    import torch
    from torch.utils import cpp_extension

    includes = [*cpp_extension.include_paths(), str(INCLUDE_DIR)]
    sources = sorted(CUDA_DIR.glob("*.cu"))
    glue = sorted(CUDA_DIR.glob("*.cpp"))
    if not sources:
        print(f"check_cuda_compile: no .cu files in {CUDA_DIR}")
        return 1
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(f"nvcc: {nvcc} ({version}); torch {torch.__version__}; "
          f"{len(sources)} .cu x sm_{', sm_'.join(archs)}, {len(glue)} glue .cpp; {args.jobs} jobs")

    start = time.perf_counter()
    failures = []
    kernels = []
    with tempfile.TemporaryDirectory(prefix="ctcx_cuda_check_") as tmp:
        stub = Path(tmp) / "stub" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True)
        stub.write_text(CMAKE_MACROS_STUB)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            jobs = [pool.submit(compile_cu, nvcc, cu, arch, includes,
                                list(cpp_extension.COMMON_NVCC_FLAGS), tmp)
                    for cu in sources for arch in archs]
            if cxx:
                jobs += [pool.submit(check_cpp, cxx, cpp,
                                     [*includes, cuda_include, str(Path(tmp) / "stub")])
                         for cpp in glue]
            else:
                print("check_cuda_compile: no host C++ compiler; glue .cpp not checked")
            for job in jobs:
                what, rc, log, seconds = job.result()
                status = "ok" if rc == 0 else f"FAILED (exit {rc})"
                print(f"  {what}: {status} in {seconds:.1f} s")
                if rc != 0:
                    failures.append((what, log))
                else:  # warnings from ctcx's own files (torch's headers have some of their own)
                    ours = [line for line in log.splitlines()
                            if "warning" in line and str(ROOT / "csrc") in os.path.abspath(line.split(":")[0])]
                    print("\n".join("    " + line for line in ours), end="\n" if ours else "")
                kernels += parse_ptxas(log)

    names = demangle(sorted({k["mangled"] for k in kernels}))
    if kernels:
        print(f"\n{'kernel':<58} {'arch':<6} {'regs':>4} {'spill st/ld':>12} {'stack':>6} {'smem':>6}")
        for k in sorted(kernels, key=lambda k: (short_kernel_name(names[k["mangled"]]), k["arch"])):
            spills = f"{k['spill_stores']}/{k['spill_loads']}"
            print(f"{short_kernel_name(names[k['mangled']]):<58} {k['arch']:<6} {k['registers']:>4} "
                  f"{spills:>12} {k['stack']:>6} {k['smem']:>6}")
    for what, log in failures:
        print(f"\n=== {what} ===\n{log}")
    elapsed = time.perf_counter() - start
    if failures:
        print(f"\ncheck_cuda_compile: {len(failures)} failure(s) in {elapsed:.1f} s")
        return 1
    print(f"\ncheck_cuda_compile: all CUDA sources compile ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
