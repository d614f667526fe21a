"""ctcx.ctc_loss against torch.nn.functional.ctc_loss (float64) and the references."""
import math

import pytest
import torch
import torch.nn.functional as F

import ctcx
from ctcx._reference import ctc_loss_reference, ctc_nll_brute_force


def random_case(T, N, C, S, blank=0, seed=0, min_input=None, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    labels = [c for c in range(C) if c != blank]
    targets = torch.tensor(labels)[torch.randint(0, len(labels), (N, S), generator=g)]
    target_lengths = torch.randint(0, S + 1, (N,), generator=g)
    lo = min_input if min_input is not None else max(1, T // 2)
    input_lengths = torch.randint(lo, T + 1, (N,), generator=g)
    return (logits.to(device), targets.to(device), input_lengths.to(device), target_lengths.to(device))


def concat(targets, target_lengths):
    return torch.cat([targets[n, : int(target_lengths[n])] for n in range(targets.shape[0])])


def native_and_ctcx(logits, targets, il, tl, dtype=torch.float64, **kw):
    """Losses and logits-gradients of native (float64) and ctcx (dtype)."""
    x64 = logits.detach().double().requires_grad_()
    ref = F.ctc_loss(x64.log_softmax(-1), targets, il, tl, **kw)
    (g_ref,) = torch.autograd.grad(ref.sum(), x64)
    x = logits.detach().to(dtype).requires_grad_()
    out = ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl, **kw)
    (g,) = torch.autograd.grad(out.sum(), x)
    return ref, g_ref, out, g


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("blank", [0, 3, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_native_float64(device, reduction, layout, blank, seed):
    logits, targets, il, tl = random_case(30, 5, 8, 9, blank=blank, seed=seed, device=device)
    if layout == "concatenated":
        targets = concat(targets, tl)
    ref, g_ref, out, g = native_and_ctcx(logits, targets, il, tl, reduction=reduction, blank=blank)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shape", [(50, 4, 20, 10), (120, 3, 6, 40), (16, 8, 5000, 4)])
def test_matches_native_float32(device, shape):
    T, N, C, S = shape
    logits, targets, il, tl = random_case(T, N, C, S, seed=3, device=device)
    ref, g_ref, out, g = native_and_ctcx(logits, targets, il, tl, dtype=torch.float32, reduction="none")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=2e-4)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-4, atol=2e-5)


def test_log_probs_gradient_is_minus_posterior(device):
    logits, targets, il, tl = random_case(25, 4, 9, 6, seed=5, device=device)
    lp = logits.log_softmax(-1).requires_grad_()
    (g,) = torch.autograd.grad(ctcx.ctc_loss(lp, targets, il, tl, reduction="sum"), lp)
    lp_n = lp.detach().requires_grad_()
    (g_native,) = torch.autograd.grad(F.ctc_loss(lp_n, targets, il, tl, reduction="sum"), lp_n)
    valid = (torch.arange(25, device=device)[:, None] < il[None, :])[..., None]
    # native returns exp(log_probs) - posterior on valid frames
    torch.testing.assert_close(g, g_native - lp.detach().exp() * valid, rtol=1e-9, atol=1e-12)
    for n in range(4):
        allowed = set(targets[n, : int(tl[n])].tolist()) | {0}
        nonzero = set(torch.nonzero(g[:, n].abs().sum(0)).flatten().tolist())
        assert nonzero <= allowed
        # occupancies of a valid frame sum to one
        torch.testing.assert_close(g[: int(il[n]), n].sum(-1), -torch.ones(int(il[n]), dtype=g.dtype, device=device))
        assert torch.all(g[int(il[n]):, n] == 0)


def test_matches_python_reference_and_brute_force(device):
    logits, targets, il, tl = random_case(7, 3, 4, 3, seed=11, min_input=4, device=device)
    lp = logits.log_softmax(-1)
    out = ctcx.ctc_loss(lp, targets, il, tl, reduction="none")
    ref = ctc_loss_reference(lp.cpu(), targets.cpu(), il.tolist(), tl.tolist())
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-12)
    for n in range(3):
        brute = ctc_nll_brute_force(lp[: int(il[n]), n].cpu(), targets[n, : int(tl[n])].tolist())
        assert out[n].item() == pytest.approx(brute, rel=1e-10)


def lp_of(T, C, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, 1, C, generator=g, dtype=torch.float64).log_softmax(-1).to(device)


@pytest.mark.parametrize("target,T", [
    ([1, 1], 3),           # repeated label needs a blank between: minimal T = 3
    ([2, 2, 2], 5),        # minimal T = L + repeats = 5
    ([1, 2, 3], 3),        # minimal T = L without repeats
    ([1, 1, 2, 2], 6),
    ([], 4),               # empty target: all blanks
    ([3], 1),              # T = 1
])
def test_edge_cases_feasible(device, target, T):
    lp = lp_of(T, 5, device=device)
    t = torch.tensor([target], dtype=torch.long, device=device).reshape(1, len(target))
    out = ctcx.ctc_loss(lp, t, [T], [len(target)], reduction="none")
    brute = ctc_nll_brute_force(lp[:, 0].cpu(), target)
    assert math.isfinite(out.item())
    assert out.item() == pytest.approx(brute, rel=1e-10)
    assert out.item() == pytest.approx(F.ctc_loss(lp, t, [T], [len(target)], reduction="none").item(), rel=1e-10)


@pytest.mark.parametrize("target,T", [([1, 1], 2), ([1, 2, 3], 2), ([2, 2, 2], 4), ([1], 0)])
def test_infeasible_alignment(device, target, T):
    C = 5
    x = torch.randn(max(T, 1), 2, C, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([target, target], device=device)
    il, tl = [T, T], [len(target)] * 2
    out = ctcx.ctc_loss(x.log_softmax(-1), t, il, tl, reduction="none")
    assert torch.isinf(out).all()
    (g,) = torch.autograd.grad(out.sum(), x)
    ref = F.ctc_loss(x.log_softmax(-1), t, il, tl, reduction="none")
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    # without zero_infinity both give NaN gradients on the sample's frames
    assert torch.isnan(g[:T]).all() and torch.isnan(g_ref[:T]).all()
    for reduction in ["none", "mean", "sum"]:
        out = ctcx.ctc_loss(x.log_softmax(-1), t, il, tl, reduction=reduction, zero_infinity=True)
        assert torch.all(out == 0)
        (g,) = torch.autograd.grad(out.sum(), x)
        assert torch.all(g == 0)


def test_zero_infinity_keeps_feasible_samples(device):
    x = torch.randn(4, 2, 5, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.tensor([[1, 1, 1], [1, 2, 0]], device=device)
    il, tl = [4, 4], [3, 2]
    out = ctcx.ctc_loss(x.log_softmax(-1), t, il, tl, reduction="mean", zero_infinity=True)
    ref = F.ctc_loss(x.log_softmax(-1), t, il, tl, reduction="mean", zero_infinity=True)
    (g,), (g_ref,) = torch.autograd.grad(out, x), torch.autograd.grad(ref, x)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g, g_ref)
    assert torch.all(g[:, 0] == 0) and g[:, 1].abs().sum() > 0


def test_zero_input_length(device):
    lp = lp_of(3, 5, device=device).expand(3, 2, 5).contiguous().requires_grad_()
    t = torch.tensor([[1, 2], [1, 2]], device=device)
    out = ctcx.ctc_loss(lp, t, [0, 0], [0, 1], reduction="none")
    assert out[0].item() == 0 and math.isinf(out[1].item())
    # No frames: no gradient for the empty target (loss 0 for certain); the
    # infeasible one is zeroed by zero_infinity, as in torch.nn.CTCLoss.
    (g,) = torch.autograd.grad(out[0], lp)
    assert torch.equal(g, torch.zeros_like(g))
    zi = ctcx.ctc_loss(lp, t, [0, 0], [0, 1], reduction="sum", zero_infinity=True)
    (g,) = torch.autograd.grad(zi, lp)
    assert zi.item() == 0 and torch.equal(g, torch.zeros_like(g))


def test_unbatched(device):
    logits, targets, il, tl = random_case(12, 1, 6, 4, seed=2, device=device)
    lp = logits[:, 0].log_softmax(-1)
    for il_, tl_ in [(il[0], tl[0]), (int(il[0]), int(tl[0])), ((int(il[0]),), (int(tl[0]),))]:
        out = ctcx.ctc_loss(lp, targets[0], il_, tl_, reduction="none")
        # native wants exactly target_length labels when unbatched; ctcx also takes padding
        ref = F.ctc_loss(lp, targets[0, : int(tl[0])], il[0], tl[0], reduction="none")
        assert out.shape == ref.shape == ()
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("targets_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("lengths_kind", ["tensor", "list", "tuple", "int32 tensor"])
def test_argument_forms(device, targets_dtype, lengths_kind):
    logits, targets, il, tl = random_case(20, 3, 6, 5, seed=4, device=device)
    lp = logits.log_softmax(-1)
    conv = {"tensor": lambda v: v, "list": lambda v: v.tolist(), "tuple": lambda v: tuple(v.tolist()),
            "int32 tensor": lambda v: v.int()}[lengths_kind]
    out = ctcx.ctc_loss(lp, targets.to(targets_dtype), conv(il), conv(tl))
    ref = F.ctc_loss(lp, targets, il, tl)
    torch.testing.assert_close(out, ref)


def test_module_matches_nn_ctcloss(device):
    logits, targets, il, tl = random_case(20, 3, 6, 5, seed=8, device=device)
    for kw in [{}, {"blank": 5, "reduction": "sum"}, {"reduction": "none", "zero_infinity": True}]:
        if kw.get("blank") == 5:
            targets = targets.masked_fill(targets == 5, 1)
        torch.testing.assert_close(ctcx.CTCLoss(**kw)(logits.log_softmax(-1), targets, il, tl),
                                   torch.nn.CTCLoss(**kw)(logits.log_softmax(-1), targets, il, tl))
    assert "reduction='mean'" in repr(ctcx.CTCLoss())


def test_batch_first_strided_input(device):
    logits, targets, il, tl = random_case(15, 4, 7, 5, seed=9, device=device)
    bf = logits.transpose(0, 1).contiguous().requires_grad_()  # (N, T, C) as a model emits
    out = ctcx.ctc_loss(bf.log_softmax(-1).transpose(0, 1), targets, il, tl)
    (g,) = torch.autograd.grad(out, bf)
    bf2 = bf.detach().requires_grad_()
    ref = F.ctc_loss(bf2.log_softmax(-1).transpose(0, 1), targets, il, tl)
    (g_ref,) = torch.autograd.grad(ref, bf2)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g, g_ref)
    lp = logits.log_softmax(-1)[..., ::1].transpose(1, 2).contiguous().transpose(1, 2)  # class dim strided
    torch.testing.assert_close(ctcx.ctc_loss(lp, targets, il, tl), F.ctc_loss(lp, targets, il, tl))


def test_backward_scaling_and_retain_graph(device):
    logits, targets, il, tl = random_case(20, 4, 6, 5, seed=10, device=device)
    x = logits.requires_grad_()
    w = torch.rand(4, dtype=torch.float64, device=device)
    for reduction in ["none", "mean", "sum"]:
        out = ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl, reduction=reduction)
        ref = F.ctc_loss(x.log_softmax(-1), targets, il, tl, reduction=reduction)
        go = w if reduction == "none" else torch.tensor(2.5, dtype=torch.float64, device=device)
        g1 = torch.autograd.grad(out, x, go, retain_graph=True)[0]
        g2 = torch.autograd.grad(out, x, go)[0]
        (g_ref,) = torch.autograd.grad(ref, x, go)
        torch.testing.assert_close(g1, g_ref)
        torch.testing.assert_close(g2, g_ref)


def test_leaf_accumulates_gradient(device):
    logits, targets, il, tl = random_case(20, 4, 6, 5, seed=12, device=device)
    lp = logits.log_softmax(-1).requires_grad_()
    ctcx.ctc_loss(lp, targets, il, tl).backward()
    first = lp.grad.clone()
    ctcx.ctc_loss(lp, targets, il, tl).backward()
    torch.testing.assert_close(lp.grad, 2 * first)


def test_no_gradient_work_without_grad(device):
    logits, targets, il, tl = random_case(10, 2, 5, 3, seed=1, device=device)
    loss, grad = torch.ops.ctcx.ctc_loss(logits.log_softmax(-1), targets, il, tl, 0, False, None)
    assert grad.numel() == 0 and loss.shape == (2,)
    with torch.no_grad():
        x = logits.requires_grad_()
        assert not ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl).requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(device, dtype):
    logits, targets, il, tl = random_case(30, 3, 10, 6, seed=6, device=device)
    lp = logits.log_softmax(-1).to(dtype).requires_grad_()
    # The reference sees exactly the rounded half input, in float64.
    lp64 = lp.detach().double().requires_grad_()
    ref = F.ctc_loss(lp64, targets, il, tl, reduction="none")
    (native_grad,) = torch.autograd.grad(ref.sum(), lp64)
    # native returns exp(log_probs) - posterior on a sample's frames, 0 past them
    frames = torch.arange(lp.shape[0], device=device).view(-1, 1, 1) < il.view(1, -1, 1)
    posterior = torch.where(frames, lp64.detach().exp() - native_grad, 0.0)
    out = ctcx.ctc_loss(lp, targets, il, tl, reduction="none")
    assert out.dtype == torch.float32
    # accumulated in float32 or better from the same inputs: float32 rounding only
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert lp.grad.dtype == dtype
    # -posterior, rounded once to nearest in the half dtype: off by half a unit
    # in the last place at most, |value| * eps / 2 (a subnormal's half step
    # absolute), plus the float32 accumulation (1e-4 relative, as the CUDA float32
    # gradient). A fixed eps absolute would pass a rounding toward zero.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(lp.grad.double(), -posterior, rtol=eps / 2 + 1e-4,
                               atol=torch.finfo(dtype).smallest_normal * eps / 2 + 1e-12)


def test_gradcheck(device):
    logits, targets, il, tl = random_case(8, 3, 5, 3, seed=13, device=device)
    x = logits.requires_grad_()
    for reduction in ["none", "mean", "sum"]:
        assert torch.autograd.gradcheck(
            lambda v: ctcx.ctc_loss(v.log_softmax(-1), targets, il, tl, reduction=reduction), (x,))
    lp = logits.log_softmax(-1).requires_grad_()
    # directly in log_probs, too: the true gradient, not native's exp(lp) - posterior
    assert torch.autograd.gradcheck(lambda v: ctcx.ctc_loss(v, targets, il, tl, reduction="sum"), (lp,))


def test_opcheck(device):
    logits, targets, il, tl = random_case(10, 3, 6, 4, seed=14, device=device)
    lp = logits.float().log_softmax(-1).requires_grad_()
    w = torch.rand(3, device=device) + 0.5
    for args in [(lp, targets, il, tl, 0, False, w), (lp.detach(), targets.int(), il, tl, 0, True, None),
                 (lp, concat(targets, tl), il, tl, 0, False, w)]:
        torch.library.opcheck(torch.ops.ctcx.ctc_loss.default, args)


def test_torch_compile_smoke(device):
    logits, targets, il, tl = random_case(12, 3, 6, 4, seed=15, device=device)

    def step(x):
        return ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    out, ref = compiled(x1), step(x2)
    out.backward()
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("gap", [100.0, 800.0, 5000.0])
def test_extreme_dynamic_range_matches_native(device, gap):
    """Paths forced through labels `gap` nats below the blank: the scaled fast
    path underflows for large gaps and must hand over to the log-space path."""
    T, C, L = 6, 5, 4
    logits = torch.zeros(T, 2, C, dtype=torch.float64, device=device)
    logits[:, :, 0] = gap  # blank dominates every frame by ~gap nats
    targets = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]], device=device)
    il, tl = [T, 4], [L, 2]
    for dtype in [torch.float64, torch.float32]:
        x = logits.to(dtype).requires_grad_()
        out = ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl, reduction="none")
        (g,) = torch.autograd.grad(out.sum(), x)
        # native on the same input, so both see the same rounding of log_softmax
        x_ref = logits.to(dtype).requires_grad_()
        ref = F.ctc_loss(x_ref.log_softmax(-1), targets, il, tl, reduction="none")
        (g_ref,) = torch.autograd.grad(ref.sum(), x_ref)
        assert torch.isfinite(out).all()
        tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
        torch.testing.assert_close(out, ref, **tol)
        torch.testing.assert_close(g, g_ref, **tol)


@pytest.mark.parametrize("N", [1, 8], ids=["one-sample", "lanes"])
@pytest.mark.parametrize("grad", [False, True], ids=["loss", "grad"])
def test_paths_that_lag_by_more_than_700_nats_and_then_win_are_not_lost(device, N, grad):
    """Found by the fuzz suite (issue 28): very confident random frames (logits
    of scale 30) over 200 frames, where the alignments that end up carrying
    nearly all of p(l | x) are, at some frame, more than 1e308 times less
    probable than others. The scaled fast path then underflowed them to zero
    and returned a loss 0.3% to 0.8% too large (34 to 100 nats here), silently;
    it must detect this and hand the sample to the exact log-space path."""
    T, C, L = 200, 46, 2
    for seed in (36, 52, 57):
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(T, N, C, generator=g, dtype=torch.float64) * 30).log_softmax(-1).to(device)
        targets = torch.randint(1, C, (N, L), generator=g).to(device)
        x1 = x.clone().requires_grad_(grad)
        x2 = x.clone().requires_grad_(grad)
        out = ctcx.ctc_loss(x1, targets, [T] * N, [L] * N, reduction="none")
        ref = F.ctc_loss(x2, targets, [T] * N, [L] * N, reduction="none")
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=0)
        if grad:
            (g1,) = torch.autograd.grad(out.sum(), x1)
            (g2,) = torch.autograd.grad(ref.sum(), x2)
            # native's gradient is exp(log_probs) - posterior; ctcx's is -posterior
            torch.testing.assert_close(g1, g2 - x.exp(), rtol=1e-8, atol=1e-10)


def test_nan_input_gives_nan_loss(device):
    lp = torch.randn(8, 2, 5, dtype=torch.float64, device=device).log_softmax(-1)
    lp[3, 0, 0] = float("nan")
    out = ctcx.ctc_loss(lp, torch.tensor([[1, 2], [3, 4]], device=device), [8, 8], [2, 2], reduction="none")
    assert torch.isnan(out[0]) and torch.isfinite(out[1])


@pytest.mark.parametrize("variant", ["log_probs", "logits"])
def test_double_backward_raises_instead_of_a_wrong_hessian(variant):
    """With create_graph=True the stored gradient would enter the graph as a
    constant, so a Hessian-vector product through it would be silently wrong
    (max error 0.21 against finite differences before this was refused)."""
    logits, targets, il, tl = random_case(4, 2, 5, 2, seed=21)
    x = logits.detach().requires_grad_()
    if variant == "log_probs":
        loss, name = ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl), "ctcx.ctc_loss"
    else:
        loss, name = ctcx.ctc_loss_with_logits(x, targets, il, tl), "ctcx.ctc_loss_with_logits"
    with pytest.raises(RuntimeError, match=rf"{name}: the CTC loss can be differentiated once.*create_graph"):
        torch.autograd.grad(loss, x, create_graph=True)
    # Once is fine, and still right.
    (g,) = torch.autograd.grad(loss, x)
    x64 = logits.detach().requires_grad_()
    (g_ref,) = torch.autograd.grad(F.ctc_loss(x64.log_softmax(-1), targets, il, tl), x64)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("lengths", ["0-dim tensors", "1-element tensors", "lists"])
def test_batch_of_one_takes_every_length_form_native_takes(device, lengths):
    """PyTorch's own test_CTCLoss_critical_target_len passes a batch of one
    with 0-dim length tensors; native accepts that, so ctcx must too."""
    logits, targets, il, tl = random_case(10, 1, 5, 3, seed=22, min_input=10, device=device)
    tl = torch.full_like(tl, 3)
    conv = {"0-dim tensors": lambda v: v[0], "1-element tensors": lambda v: v,
            "lists": lambda v: v.tolist()}[lengths]
    lp = logits.log_softmax(-1)
    for reduction in ("none", "mean"):
        out = ctcx.ctc_loss(lp, targets, conv(il), conv(tl), reduction=reduction)
        ref = F.ctc_loss(lp, targets, conv(il), conv(tl), reduction=reduction)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match=r"input_lengths must have shape \(2,\)"):
        ctcx.ctc_loss(torch.cat([lp, lp], 1), torch.cat([targets, targets]), il[0], [3, 3])


@pytest.mark.parametrize("lengths", ["random", "equal"])
@pytest.mark.parametrize("kind", ["log_probs", "logits"])
def test_one_and_two_threads_give_identical_results(kind, lengths):
    """The CPU kernel splits the batch across threads; every sample's loss and
    gradient must come out bit for bit the same whatever the thread count:
    with random lengths (single samples) and with the trainer's equal lengths
    (64 samples of (40, 4): lane groups of 8)."""
    if lengths == "random":
        logits, targets, il, tl = random_case(40, 16, 9, 8, seed=23)
    else:
        logits, targets, _, _ = random_case(40, 64, 37, 4, seed=23)
        il, tl = torch.full((64,), 40), torch.full((64,), 4)
    fn = ctcx.ctc_loss if kind == "log_probs" else ctcx.ctc_loss_with_logits
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            x = logits.detach().float().requires_grad_()
            loss = fn(x.log_softmax(-1) if kind == "log_probs" else x, targets, il, tl, reduction="none")
            loss.sum().backward()
            results.append((loss.detach(), x.grad))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("op", ["ctc_loss", "ctc_loss_with_logits"])
def test_loss_only_call_differentiates_by_a_second_fused_call(op):
    """The op called without grad_weights computes the loss only (what
    ctcx.ctc_loss does on CUDA); backward then runs it once more with the
    incoming gradient as the weights. Any incoming gradient (negative, zero,
    per sample), retain_graph and a second backward all give the true gradient."""
    logits, targets, il, tl = random_case(12, 4, 6, 4, seed=24)
    x = logits.detach().requires_grad_()
    inp = x.log_softmax(-1) if op == "ctc_loss" else x
    loss, grad = getattr(torch.ops.ctcx, op)(inp, targets, il, tl, 0, False, None)
    assert grad.numel() == 0  # nothing computed or held for the gradient in the forward
    x64 = logits.detach().requires_grad_()
    ref = F.ctc_loss(x64.log_softmax(-1), targets, il, tl, reduction="none")
    for g_out in (torch.ones(4, dtype=torch.float64), torch.tensor([2.0, -1.0, 0.0, 0.5], dtype=torch.float64)):
        (g,) = torch.autograd.grad(loss, x, g_out, retain_graph=True)
        (g_ref,) = torch.autograd.grad(ref, x64, g_out, retain_graph=True)
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("fn", [ctcx.ctc_loss, ctcx.ctc_loss_with_logits], ids=["log_probs", "logits"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("batched", [True, False])
def test_eager_cpu_node_matches_the_registered_autograd(fn, dtype, reduction, batched):
    """Plain CPU tensors take one C++ autograd node (ctcx::ctc_loss_folded);
    a Parameter (not a plain tensor) takes the op's registered autograd formula
    and the reduction's ops. Same losses and gradients, for an incoming
    gradient of one and for any other."""
    logits, targets, il, tl = random_case(12, 3, 6, 4, seed=31)
    if not batched:
        logits, targets, il, tl = logits[:, 0], targets[0], il[0], tl[0]
    base = logits.to(dtype) if fn is ctcx.ctc_loss_with_logits else logits.log_softmax(-1).to(dtype)
    results = []
    for make in (lambda t: t.detach().clone().requires_grad_(), lambda t: torch.nn.Parameter(t.detach().clone())):
        x = make(base)
        out = fn(x, targets, il, tl, reduction=reduction)
        ones = torch.ones_like(out)
        go = torch.rand(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype) - 0.5
        g1 = torch.autograd.grad(out, x, ones, retain_graph=True)[0]
        g2 = torch.autograd.grad(out, x, go)[0]
        results.append((out.detach(), g1, g2))
        assert out.shape == (() if reduction != "none" or not batched else (3,))
    (a, a1, a2), (b, b1, b2) = results
    assert torch.equal(a, b) and torch.equal(a1, b1)
    torch.testing.assert_close(a2, b2, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-6)


@pytest.mark.parametrize("fn", [ctcx.ctc_loss, ctcx.ctc_loss_with_logits], ids=["log_probs", "logits"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_eager_cpu_backward_hands_the_gradient_over(fn, reduction):
    """The promise of README's "Loss internals": a plain eager CPU call's
    loss.backward() hands the fused gradient to .grad untouched: no op of
    backward reads or writes a (T, N, C) tensor (no copy, no scaling; only
    the incoming gradient's few values are read), and it is the true one."""
    from torch.profiler import profile

    logits, targets, il, tl = random_case(20, 16, 7, 5, seed=41)
    x = (logits if fn is ctcx.ctc_loss_with_logits else logits.log_softmax(-1)).detach().requires_grad_()
    out = fn(x, targets, il, tl, reduction=reduction)
    def touched(grad_out):  # the aten ops of a backward that read a (T, N, C) tensor, views aside
        with profile(record_shapes=True) as prof:
            torch.autograd.grad(out, x, grad_out, retain_graph=True)
        return {e.key for e in prof.key_averages(group_by_input_shape=True)
                if e.key.startswith("aten::") and e.key not in ("aten::detach", "aten::as_strided")
                and any(list(shape) == list(x.shape) for shape in e.input_shapes)}

    assert "aten::mul" in touched(2 * torch.ones_like(out))  # scaling by 2 must show
    out = fn(x, targets, il, tl, reduction=reduction)
    with profile(record_shapes=True) as prof:
        out.backward(torch.ones_like(out))
    ran = {e.key for e in prof.key_averages(group_by_input_shape=True)
           if e.key.startswith("aten::") and e.key not in ("aten::detach", "aten::as_strided")
           and any(list(shape) == list(x.shape) for shape in e.input_shapes)}
    assert not ran, f"ops that read or wrote the (T, N, C) gradient in backward: {ran}"
    x64 = logits.double().requires_grad_()
    ref = F.ctc_loss(x64.log_softmax(-1), targets, il, tl, reduction=reduction)
    (g_ref,) = torch.autograd.grad(ref, x64, torch.ones_like(ref))  # with respect to the logits
    g = x.grad.double()
    if fn is ctcx.ctc_loss:  # chain rule through log_softmax: from log_probs to logits
        g = g - logits.double().softmax(-1) * g.sum(-1, keepdim=True)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    # a second backward through a retained graph recomputes the same gradient
    x.grad = None
    again = fn(x, targets, il, tl, reduction=reduction)
    (g1,) = torch.autograd.grad(again, x, torch.ones_like(again), retain_graph=True)
    (g2,) = torch.autograd.grad(again, x, torch.ones_like(again))
    assert torch.equal(g1, g2)
