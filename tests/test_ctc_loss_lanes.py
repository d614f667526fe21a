"""The CPU kernel's lane groups: samples of equal (input length, target length)
run 8 at a time, one per vector lane (csrc/cpu/ctc_loss_lanes.cpp), and its
gradient buffer is written row by row without a zero pass. Batches here are
built so that groups form: full groups, partial groups, several groups per
batch, lanes that must fall back to the exact path, frames past the input
length; every loss and gradient against float64 torch.nn.functional.ctc_loss."""
import pytest
import torch
import torch.nn.functional as F

import ctcx

CPU = "cpu"


def grouped_case(T, C, groups, blank=0, seed=0, repeats=False):
    """(T, N, C) float64 logits, padded targets and lengths for `groups`, a list
    of (count, input_length, target_length): count samples of those lengths."""
    g = torch.Generator().manual_seed(seed)
    N = sum(count for count, _, _ in groups)
    S = max(tl for _, _, tl in groups) or 1
    labels = torch.tensor([c for c in range(C) if c != blank])
    targets = labels[torch.randint(0, len(labels), (N, S), generator=g)]
    if repeats:  # every third sample repeats its labels: no blank skips in those lanes
        targets[::3] = targets[::3, :1]
    il = torch.cat([torch.full((count,), i) for count, i, _ in groups])
    tl = torch.cat([torch.full((count,), t) for count, _, t in groups])
    perm = torch.randperm(N, generator=g)  # groups need not be contiguous in the batch
    return torch.randn(T, N, C, generator=g, dtype=torch.float64), targets[perm], il[perm], tl[perm]


def reference(logits, targets, il, tl, blank, reduction, zero_infinity=False):
    x = logits.detach().double().requires_grad_()
    loss = F.ctc_loss(x.log_softmax(-1), targets, il, tl, blank=blank, reduction=reduction,
                      zero_infinity=zero_infinity)
    (g,) = torch.autograd.grad(loss.sum(), x)
    return loss, g


def fused(kind, logits, targets, il, tl, blank, reduction, dtype=torch.float64, zero_infinity=False):
    x = logits.detach().to(dtype).requires_grad_()
    # Garbage where the allocator may hand out the gradient buffer next.
    torch.full_like(x, 7.0)
    if kind == "log_probs":
        loss = ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl, blank=blank, reduction=reduction,
                             zero_infinity=zero_infinity)
    else:
        loss = ctcx.ctc_loss_with_logits(x, targets, il, tl, blank=blank, reduction=reduction,
                                         zero_infinity=zero_infinity)
    (g,) = torch.autograd.grad(loss.sum(), x)
    return loss, g


GROUPS = {
    "full groups": [(16, 32, 5)],
    "trainer sizes": [(64, 40, 4)],
    "partial groups and singles": [(8, 20, 3), (3, 20, 3), (1, 17, 2), (5, 14, 0), (2, 9, 4)],
    "short inputs": [(9, 12, 5), (6, 5, 2)],
}


@pytest.mark.parametrize("groups", list(GROUPS), ids=list(GROUPS))
@pytest.mark.parametrize("kind", ["log_probs", "logits"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("blank", [0, 4])
def test_lane_groups_match_native(groups, kind, reduction, blank):
    T = max(i for _, i, _ in GROUPS[groups])
    logits, targets, il, tl = grouped_case(T, 9, GROUPS[groups], blank=blank, seed=1, repeats=True)
    ref, g_ref = reference(logits, targets, il, tl, blank, reduction)
    out, g = fused(kind, logits, targets, il, tl, blank, reduction)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)
    # frames past each input length: exactly zero, whatever the buffer held
    for n in range(logits.shape[1]):
        assert torch.all(g[int(il[n]):, n] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["log_probs", "logits"])
def test_lane_groups_in_low_precision(dtype, kind):
    logits, targets, il, tl = grouped_case(32, 37, [(64, 32, 5)], seed=2)
    ref, g_ref = reference(logits.to(dtype).double(), targets, il, tl, 0, "none")
    out, g = fused(kind, logits, targets, il, tl, 0, "none", dtype=dtype)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)
    torch.testing.assert_close(g.double(), g_ref, rtol=tol, atol=tol)


def test_direct_gradient_is_minus_posterior_in_lanes():
    """The log_probs gradient itself: -posterior on the blank and the labels,
    zero on every other class (written over a buffer that was not zero-filled)."""
    logits, targets, il, tl = grouped_case(20, 9, [(8, 20, 4), (5, 15, 4)], seed=3, repeats=True)
    lp = logits.log_softmax(-1).requires_grad_()
    torch.full_like(lp, 7.0)
    (g,) = torch.autograd.grad(ctcx.ctc_loss(lp, targets, il, tl, reduction="sum"), lp)
    lp_n = lp.detach().requires_grad_()
    (g_native,) = torch.autograd.grad(F.ctc_loss(lp_n, targets, il, tl, reduction="sum"), lp_n)
    valid = (torch.arange(20)[:, None] < il[None, :])[..., None]
    torch.testing.assert_close(g, g_native - lp.detach().exp() * valid, rtol=1e-9, atol=1e-12)


def test_failing_lanes_fall_back_alone():
    """One lane infeasible (repeated labels need more frames), one far below the
    blank's range, one with a NaN: each is recomputed by the exact path, and
    the other lanes of its group are untouched."""
    T, C, L = 6, 5, 4
    logits, targets, il, tl = grouped_case(T, C, [(8, T, L)], seed=4)
    targets[2] = torch.tensor([1, 1, 1, 1])  # needs 7 frames: infeasible
    logits[:, 5, 0] = 800.0  # blank dominates by 800 nats: the scaled path underflows
    for zero_infinity in (False, True):
        ref, g_ref = reference(logits, targets, il, tl, 0, "none", zero_infinity)
        for kind in ("log_probs", "logits"):
            out, g = fused(kind, logits, targets, il, tl, 0, "none", zero_infinity=zero_infinity)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10, equal_nan=True)
    bad = logits.clone()
    bad[3, 6, 1] = float("nan")
    out = ctcx.ctc_loss(bad.log_softmax(-1), targets, il, tl, reduction="none", zero_infinity=True)
    assert torch.isnan(out[6]) and torch.isfinite(out[[0, 1, 3, 4, 5, 7]]).all()


def test_batch_first_strided_lanes():
    """(N, T, C) memory read as (T, N, C): the gradient keeps those strides and
    every row of it is written."""
    logits, targets, il, tl = grouped_case(30, 11, [(16, 30, 5), (4, 22, 5)], seed=5)
    bf = logits.transpose(0, 1).contiguous().transpose(0, 1)
    ref, g_ref = reference(bf, targets, il, tl, 0, "mean")
    for kind in ("log_probs", "logits"):
        x = bf.detach().clone().requires_grad_()
        loss = (ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl) if kind == "log_probs"
                else ctcx.ctc_loss_with_logits(x, targets, il, tl))
        loss.backward()
        torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(x.grad, g_ref, rtol=1e-9, atol=1e-10)
