"""ctcx.ctc_loss_with_logits == native CTC after log_softmax, with the softmax fused."""
import pytest
import torch
import torch.nn.functional as F

import ctcx
from test_ctc_loss import concat, random_case


def both(logits, targets, il, tl, dtype=torch.float64, **kw):
    x64 = logits.detach().double().requires_grad_()
    ref = F.ctc_loss(x64.log_softmax(-1), targets, il, tl, **kw)
    (g_ref,) = torch.autograd.grad(ref.sum(), x64)
    x = logits.detach().to(dtype).requires_grad_()
    out = ctcx.ctc_loss_with_logits(x, targets, il, tl, **kw)
    (g,) = torch.autograd.grad(out.sum(), x)
    return ref, g_ref, out, g


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("blank", [0, 7])
def test_matches_native_float64(device, reduction, layout, blank):
    logits, targets, il, tl = random_case(30, 5, 8, 9, blank=blank, seed=21, device=device)
    logits = logits * 3
    if layout == "concatenated":
        targets = concat(targets, tl)
    ref, g_ref, out, g = both(logits, targets, il, tl, reduction=reduction, blank=blank)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)
    # frames past input_lengths get no gradient
    for n in range(5):
        assert torch.all(g[int(il[n]):, n] == 0)


@pytest.mark.parametrize("shape", [(50, 4, 20, 10), (16, 8, 5000, 4)])
def test_matches_native_float32(device, shape):
    logits, targets, il, tl = random_case(*shape, seed=22, device=device)
    ref, g_ref, out, g = both(logits, targets, il, tl, dtype=torch.float32, reduction="none")
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-4)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(device, dtype):
    logits, targets, il, tl = random_case(40, 3, 30, 8, seed=23, device=device)
    logits = logits.to(dtype).double()  # exactly representable in dtype
    ref, g_ref, out, g = both(logits, targets, il, tl, dtype=dtype, reduction="none")
    assert out.dtype == torch.float32 and g.dtype == dtype
    # read in dtype, accumulated in float32: only the gradient's final rounding remains
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-2, atol=4e-3 if dtype == torch.bfloat16 else 5e-4)


def test_infeasible_and_zero_infinity(device):
    x = torch.randn(3, 2, 5, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([[1, 1, 1], [1, 2, 0]], device=device)
    out = ctcx.ctc_loss_with_logits(x, t, [3, 3], [3, 2], reduction="none")
    assert torch.isinf(out[0]) and torch.isfinite(out[1])
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isnan(g[:, 0]).all() and torch.isfinite(g[:, 1]).all()
    out = ctcx.ctc_loss_with_logits(x, t, [3, 3], [3, 2], zero_infinity=True)
    ref = F.ctc_loss(x.log_softmax(-1), t, [3, 3], [3, 2], zero_infinity=True)
    (g,), (g_ref,) = torch.autograd.grad(out, x), torch.autograd.grad(ref, x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g, g_ref)
    assert torch.all(g[:, 0] == 0)


def test_extreme_logits_fall_back_exactly(device):
    logits = torch.zeros(6, 1, 5, dtype=torch.float64, device=device)
    logits[:, :, 0] = 900.0
    ref, g_ref, out, g = both(logits, torch.tensor([[1, 2, 3, 4]], device=device), [6], [4], reduction="sum")
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


def test_batch_first_and_unbatched(device):
    logits, targets, il, tl = random_case(15, 4, 7, 5, seed=24, device=device)
    bf = logits.transpose(0, 1).contiguous()
    torch.testing.assert_close(ctcx.ctc_loss_with_logits(bf.transpose(0, 1), targets, il, tl),
                               F.ctc_loss(logits.log_softmax(-1), targets, il, tl))
    n = 0
    torch.testing.assert_close(
        ctcx.ctc_loss_with_logits(logits[:, n], targets[n, : int(tl[n])], int(il[n]), int(tl[n]), reduction="none"),
        F.ctc_loss(logits[:, n].log_softmax(-1), targets[n, : int(tl[n])], il[n], tl[n], reduction="none"))


def test_module():
    logits, targets, il, tl = random_case(15, 4, 7, 5, seed=25)
    crit = ctcx.CTCLossWithLogits(reduction="sum")
    torch.testing.assert_close(crit(logits, targets, il, tl),
                               torch.nn.CTCLoss(reduction="sum")(logits.log_softmax(-1), targets, il, tl))
    with pytest.raises(ValueError, match="reduction"):
        ctcx.CTCLossWithLogits(reduction="avg")


def test_errors_name_logits():
    with pytest.raises(ValueError, match=r"ctcx.ctc_loss_with_logits: logits must be \(T, N, C\)"):
        ctcx.ctc_loss_with_logits(torch.zeros(2, 2, 2, 2), torch.ones(2, 1, dtype=torch.long), [2, 2], [1, 1])
    with pytest.raises(ValueError, match=r"targets label 9"):
        ctcx.ctc_loss_with_logits(torch.zeros(4, 1, 5), torch.tensor([[9]]), [4], [1])


def test_gradcheck_opcheck_compile(device):
    logits, targets, il, tl = random_case(8, 3, 5, 3, seed=26, device=device)
    x = logits.requires_grad_()
    for reduction in ["none", "mean", "sum"]:
        assert torch.autograd.gradcheck(
            lambda v: ctcx.ctc_loss_with_logits(v, targets, il, tl, reduction=reduction), (x,))
    xf = logits.detach().float().requires_grad_()
    for args in [(xf, targets, il, tl, 0, False, torch.rand(3, device=device) + 0.5),
                 (xf.detach(), targets, il, tl, 0, True, None)]:
        torch.library.opcheck(torch.ops.ctcx.ctc_loss_with_logits.default, args)
    compiled = torch.compile(lambda v: ctcx.ctc_loss_with_logits(v, targets, il, tl),
                             backend="aot_eager", fullgraph=True)
    x1, x2 = logits.detach().clone().requires_grad_(), logits.detach().clone().requires_grad_()
    compiled(x1).backward()
    ctcx.ctc_loss_with_logits(x2, targets, il, tl).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
