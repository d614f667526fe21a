"""Build ctcx and its extension ctcx._C against the torch that is installed.

    pip install .                             # builds against this environment's torch
    pip install --no-build-isolation .        # the same; or -e . for development

torch is never installed by the build: ctcx compiles against the torch of the
environment it is installed into (tools/build_backend.py makes that torch
visible from pip's isolated build). Supported torch releases: TORCH_MIN and
newer; CI builds and tests the releases in TORCH_TESTED. The C++ standard is
left to torch.utils.cpp_extension (torch 2.13 and newer need C++20).

Environment: CTCX_FORCE_CPU=1 skips CUDA; CTCX_FORCE_CUDA=1 requires it
(fails if impossible); CUDA_HOME names the CUDA toolkit (else torch's guess,
checked, or the toolkit of the `nvcc` on the PATH); MAX_JOBS and
TORCH_CUDA_ARCH_LIST are honoured by torch.utils.cpp_extension.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

TORCH_MIN = (2, 11)  # the GPU machine's torch; older releases are refused
TORCH_TESTED = ("2.13.0", "2.14.1")  # built and tested by .ci/run

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:
    sys.exit(f"ctcx: torch is not installed in the environment of {sys.executable}; "
             "install it first (e.g. `pip install torch==2.13.0`), then install ctcx again "
             "(with uv: `uv pip install --no-build-isolation .`)")

ROOT = os.path.dirname(os.path.abspath(__file__))


def check_torch_version():
    release = tuple(int(x) for x in re.findall(r"\d+", torch.__version__.split("+")[0])[:2])
    if release < TORCH_MIN:
        sys.exit(f"ctcx: torch {torch.__version__} is too old; ctcx needs torch >= "
                 f"{'.'.join(map(str, TORCH_MIN))} (tested: {', '.join(TORCH_TESTED)})")
    if torch.__version__.split("+")[0] not in TORCH_TESTED:
        print(f"ctcx: building against torch {torch.__version__}, a release CI does not test "
              f"(tested: {', '.join(TORCH_TESTED)})", file=sys.stderr)


def rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def has_cuda_headers(home):
    return bool(home) and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))


def toolkit_of_nvcc(nvcc):
    """The root of the CUDA toolkit that `nvcc` belongs to, as nvcc itself reports
    it (`nvcc` may be a wrapper script outside the toolkit), or None."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.normpath(match.group(1).strip()) if match else None


def find_cuda_toolkit():
    """(toolkit root, None) or (None, why not). CUDA_HOME (or CUDA_PATH) wins if
    set and must hold include/cuda_runtime.h; otherwise torch's guess is checked
    and, if wrong, the toolkit is derived from the `nvcc` on the PATH."""
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if explicit:
        if has_cuda_headers(explicit):
            return os.path.normpath(explicit), None
        return None, f"CUDA_HOME={explicit} has no include/cuda_runtime.h"
    guess = cpp_extension.CUDA_HOME
    if has_cuda_headers(guess):
        return guess, None
    nvcc = shutil.which("nvcc")
    derived = toolkit_of_nvcc(nvcc) if nvcc else None
    if has_cuda_headers(derived) and os.path.isfile(os.path.join(derived, "bin", "nvcc")):
        return derived, None
    if guess is None and nvcc is None:
        return None, "no CUDA toolkit found (no nvcc on the PATH; set CUDA_HOME)"
    return None, (f"no CUDA toolkit with include/cuda_runtime.h found (torch guessed {guess}, "
                  f"nvcc is {nvcc}); set CUDA_HOME to the toolkit's root")


def want_cuda():
    force_cpu = os.environ.get("CTCX_FORCE_CPU") == "1"
    force_cuda = os.environ.get("CTCX_FORCE_CUDA") == "1"
    if force_cpu and force_cuda:
        sys.exit("ctcx: CTCX_FORCE_CPU=1 and CTCX_FORCE_CUDA=1 contradict each other")
    if force_cpu:
        return False
    have_sources = bool(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    reasons = []
    if torch.version.cuda is None:
        reasons.append(f"torch {torch.__version__} was built without CUDA")
    elif have_sources:
        home, why_not = find_cuda_toolkit()
        if home is None:
            reasons.append(why_not)
        else:
            # torch.utils.cpp_extension reads its module-level CUDA_HOME when it
            # builds; point it (and any nvcc it starts) at the checked toolkit.
            cpp_extension.CUDA_HOME = home
            os.environ["CUDA_HOME"] = home
    if not have_sources:
        reasons.append("no CUDA sources in csrc/cuda")
    if force_cuda and reasons:
        sys.exit("ctcx: CTCX_FORCE_CUDA=1 but " + "; ".join(reasons))
    if reasons and torch.version.cuda is not None:
        print("ctcx: building the CPU kernels only: " + "; ".join(reasons), file=sys.stderr)
    return not reasons


def extension():
    cpu_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp"))
                      + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    # -fno-trapping-math lets the compiler vectorize the branch-free exp/log of
    # csrc/include/ctcx/log_math.h (results stay IEEE: no -ffast-math).
    # No -std: torch.utils.cpp_extension adds the standard the installed torch needs.
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
    link = ["-fopenmp"]
    if os.environ.get("CTCX_SANITIZE") == "1":
        # AddressSanitizer + UndefinedBehaviorSanitizer build of the CPU kernels
        # (tools/sanitized_fuzz.py builds it and runs tests/fuzz under it).
        if want_cuda():
            sys.exit("ctcx: CTCX_SANITIZE=1 builds the CPU kernels only; set CTCX_FORCE_CPU=1 too")
        flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                 "-g", "-O1"]
        cxx, link = cxx + flags, link + flags[:2]
    if want_cuda():
        sources = cpu_sources + rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp"))
                                    + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            "ctcx._C", sources, include_dirs=include_dirs,
            define_macros=[("CTCX_WITH_CUDA", "1")],
            # No --use_fast_math: its approximate expf/logf error would add up
            # over the T steps of the log-space recursions. The same flags are
            # compile-checked by tools/check_cuda_compile.py.
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=link,
            py_limited_api=False,
        )
    return cpp_extension.CppExtension(
        "ctcx._C", cpu_sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx}, extra_link_args=link,
    )


def main():
    check_torch_version()
    setup(
        name="ctcx",
        version="0.1.0",
        description="Fused CTC loss and batched CTC decoding for PyTorch (CPU and CUDA)",
        packages=find_packages(include=["ctcx", "ctcx.*"]),
        package_data={"ctcx.captcha": ["weights/*.pt"]},  # readers shipped by name (ctcx.captcha.pretrained)
        ext_modules=[extension()],
        cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
        python_requires=">=3.10",
        # Compatible ranges for use as a library; requirements.txt pins the tested versions.
        install_requires=[
            f"torch>={'.'.join(map(str, TORCH_MIN))}", "numpy>=1.24", "pillow>=10", "tqdm>=4.60",
            "captcha>=0.7.1,<0.8",  # 0.7.x draws from `secrets`, which ctcx.captcha.drawn seeds
        ],
        extras_require={"export": ["onnx>=1.16", "onnxruntime>=1.18"], "plots": ["matplotlib>=3.7"]},
        zip_safe=False,
    )


if __name__ == "__main__":  # setuptools runs setup.py as __main__; tests import it
    main()
