"""Build ctcx and its extension ctcx._C against the torch that is installed.

    pip install --no-build-isolation .        # or -e . for development

Environment: CTCX_FORCE_CPU=1 skips CUDA; CTCX_FORCE_CUDA=1 requires it
(fails if impossible); MAX_JOBS and TORCH_CUDA_ARCH_LIST are honoured by
torch.utils.cpp_extension.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # plain `pip install .` builds in an isolated env without torch
    sys.exit(
        "ctcx compiles against the torch you have installed: install torch first "
        "(e.g. `pip install torch==2.13.0`), then run `pip install --no-build-isolation .`"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


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
    if cpp_extension.CUDA_HOME is None:
        reasons.append("no CUDA toolkit found (set CUDA_HOME)")
    if not have_sources:
        reasons.append("no CUDA sources in csrc/cuda")
    if force_cuda and reasons:
        sys.exit("ctcx: CTCX_FORCE_CUDA=1 but " + "; ".join(reasons))
    return not reasons


def extension():
    cpu_sources = rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp"))
                      + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    # -fno-trapping-math lets the compiler vectorize the branch-free exp/log of
    # csrc/include/ctcx/log_math.h (results stay IEEE: no -ffast-math).
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno", "-std=c++17"]
    if want_cuda():
        sources = cpu_sources + rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp"))
                                    + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            "ctcx._C", sources, include_dirs=include_dirs,
            define_macros=[("CTCX_WITH_CUDA", "1")],
            # No --use_fast_math: its approximate expf/logf error would add up
            # over the T steps of the log-space recursions. The same flags are
            # compile-checked by tools/check_cuda_compile.py.
            extra_compile_args={"cxx": cxx, "nvcc": ["-std=c++17", "-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
            py_limited_api=False,
        )
    return cpp_extension.CppExtension(
        "ctcx._C", cpu_sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"],
    )


setup(
    name="ctcx",
    version="0.1.0",
    description="Fused CTC loss and batched CTC decoding for PyTorch (CPU and CUDA)",
    packages=find_packages(include=["ctcx", "ctcx.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "pillow", "captcha", "tqdm"],
    zip_safe=False,
)
