"""The CUDA build of ctcx, checked on a machine without a GPU.

CI's `cuda` stage (.ci/run) compiles and links the CUDA extension for real
against a CUDA build of torch and runs the whole suite against it, with
CTCX_EXPECT_CUDA_BUILD=1 so that a build that silently fell back to the CPU
kernels fails here instead of skipping. What needs a GPU (running the kernels)
lives in test_ctc_loss_cuda.py and the device-parametrized tests and skips
without one; this file checks what a CUDA build can show without one: every
operator has a CUDA kernel registered beside its CPU kernel, and the Python
API produces the right shapes, dtypes and devices for CUDA inputs (fake
tensors: no data, no GPU).
"""
import os

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import ctcx

OPS = ("ctcx::ctc_loss", "ctcx::ctc_loss_with_logits", "ctcx::ctc_greedy_decode", "ctcx::ctc_beam_search",
       "ctcx::ctc_forced_align", "ctcx::ctc_lm_beam_search")
EXPECT_CUDA_BUILD = os.environ.get("CTCX_EXPECT_CUDA_BUILD") == "1"

needs_cuda_build = pytest.mark.skipif(not ctcx.cuda_available(),
                                      reason="ctcx was built without its CUDA kernels")


def has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)


@pytest.mark.skipif(not EXPECT_CUDA_BUILD, reason="CTCX_EXPECT_CUDA_BUILD=1 is not set")
def test_the_expected_cuda_build_has_its_kernels():
    assert torch.version.cuda is not None, f"torch {torch.__version__} has no CUDA"
    assert ctcx.cuda_available(), "ctcx was built without its CUDA kernels"


def test_every_op_has_a_cpu_kernel():
    assert [op for op in OPS if not has_kernel(op, "CPU")] == []
    # the eager CPU loss's C++ autograd node (csrc/cpu/ctc_loss_folded_cpu.cpp)
    assert has_kernel("ctcx::ctc_loss_folded", "AutogradCPU")


@needs_cuda_build
def test_every_op_has_a_cuda_kernel():
    assert [op for op in OPS if not has_kernel(op, "CUDA")] == []


@needs_cuda_build
@pytest.mark.parametrize("dtype,loss_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                              (torch.float32, torch.float32), (torch.float64, torch.float64)])
@pytest.mark.parametrize("fn", [ctcx.ctc_loss, ctcx.ctc_loss_with_logits])
def test_loss_shapes_on_cuda_fake_tensors(fn, dtype, loss_dtype):
    T, N, C, S = 7, 3, 5, 4
    with FakeTensorMode():
        x = torch.empty(T, N, C, dtype=dtype, device="cuda", requires_grad=True)
        targets = torch.empty(N, S, dtype=torch.long, device="cuda")
        lengths = torch.empty(N, dtype=torch.long, device="cuda")
        per_sample = fn(x, targets, lengths, lengths, reduction="none", validate=False)
        assert (per_sample.shape, per_sample.dtype, per_sample.device.type) == ((N,), loss_dtype, "cuda")
        loss = fn(x, targets, lengths, lengths, validate=False)
        assert (loss.shape, loss.device.type) == ((), "cuda")
        # The op's fused gradient (autograd's engine wants a real device to run backward).
        op = torch.ops.ctcx.ctc_loss if fn is ctcx.ctc_loss else torch.ops.ctcx.ctc_loss_with_logits
        weights = torch.empty(N, dtype=loss_dtype, device="cuda")
        _, grad = op(x.detach(), targets, lengths, lengths, 0, False, weights)
        assert (grad.shape, grad.dtype, grad.device.type) == ((T, N, C), dtype, "cuda")


@needs_cuda_build
def test_decoder_shapes_on_cuda_fake_tensors():
    T, N, C, K = 9, 4, 6, 3
    with FakeTensorMode():
        lp = torch.empty(T, N, C, device="cuda")
        lengths = torch.empty(N, dtype=torch.long, device="cuda")
        tokens, token_lengths = torch.ops.ctcx.ctc_greedy_decode(lp, lengths, 0)
        assert (tokens.shape, token_lengths.shape, tokens.device.type) == ((N, T), (N,), "cuda")
        out = torch.ops.ctcx.ctc_beam_search(lp, lengths, 5, K, 0, 0, T, None, None)
        assert [tuple(t.shape) for t in out] == [(N, K, T), (N, K), (N, K), (N, K, T)]
        assert [t.dtype for t in out] == [torch.long, torch.long, torch.float32, torch.long]
        assert {t.device.type for t in out} == {"cuda"}


@needs_cuda_build
@pytest.mark.parametrize("dtype,score_dtype", [(torch.float16, torch.float32), (torch.float64, torch.float64)])
def test_forced_align_shapes_on_cuda_fake_tensors(dtype, score_dtype):
    T, N, C, S = 9, 4, 6, 3
    with FakeTensorMode():
        lp = torch.empty(T, N, C, dtype=dtype, device="cuda")
        targets = torch.empty(N, S, dtype=torch.long, device="cuda")
        lengths = torch.empty(N, dtype=torch.long, device="cuda")
        labels, scores, path = torch.ops.ctcx.ctc_forced_align(lp, targets, lengths, lengths, 0)
        assert [tuple(t.shape) for t in (labels, scores, path)] == [(N, T), (N, T), (N,)]
        assert [t.dtype for t in (labels, scores, path)] == [torch.long, dtype, score_dtype]
        assert {t.device.type for t in (labels, scores, path)} == {"cuda"}
