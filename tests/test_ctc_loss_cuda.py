"""The CUDA kernels against the CPU ones, and what only CUDA has: determinism,
no host sync, CUDA-graph capture, memory safety with unchecked values.

Skipped without a GPU and ctcx's CUDA kernels. (The device-generic tests of
the other files also run on CUDA when both are present.)
"""
import pytest
import torch

import ctcx
from test_validate import BAD_VALUES, bad_args

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ctcx.cuda_available()),
    reason="needs a GPU and ctcx built with its CUDA kernels")

OPS = {"log_probs": torch.ops.ctcx.ctc_loss, "logits": torch.ops.ctcx.ctc_loss_with_logits}
LOSS_DTYPE = {torch.float64: torch.float64, torch.float32: torch.float32,
              torch.float16: torch.float32, torch.bfloat16: torch.float32}
# loss (rtol, atol), grad (rtol, atol): CPU accumulates in double, CUDA in the
# loss dtype; half gradients may differ by one rounding of the output.
TOLERANCES = {
    torch.float64: ((1e-10, 1e-10), (1e-9, 1e-11)),
    torch.float32: ((1e-5, 1e-4), (1e-4, 5e-5)),
    torch.float16: ((1e-5, 1e-4), (1e-2, 1e-3)),
    torch.bfloat16: ((1e-5, 1e-4), (2e-2, 8e-3)),
}


def special_case(T=40, C=12, S=10, blank=0, seed=0):
    """Six samples covering full length, partial lengths, an empty target with
    no frames (loss 0), a target with no frames and one too long for its
    frames (both infeasible), and repeated labels (every third label repeats
    the one before it)."""
    g = torch.Generator().manual_seed(seed)
    N = 6
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64) * 2
    labels = torch.tensor([c for c in range(C) if c != blank])
    targets = labels[torch.randint(0, len(labels), (N, S), generator=g)]
    targets[:, 2::3] = targets[:, 1::3][:, : targets[:, 2::3].shape[1]]
    il = torch.tensor([T, T // 2, 0, 0, 3, T - 5])
    tl = torch.tensor([S, S // 2, 0, 2, S, 7])
    return x, targets, il, tl


def concat(targets, tl):
    return torch.cat([targets[n, : int(tl[n])] for n in range(targets.shape[0])])


def run_op(kind, x, targets, il, tl, blank, zero_infinity, weights, device):
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return OPS[kind](to(x), to(targets), to(il), to(tl), blank, zero_infinity, to(weights))


def assert_agree(cpu, cuda, dtype):
    (loss_tol, grad_tol) = TOLERANCES[dtype]
    loss_c, grad_c = cpu
    loss_g, grad_g = cuda
    assert loss_g.dtype == loss_c.dtype and grad_g.dtype == grad_c.dtype
    assert grad_g.shape == grad_c.shape
    torch.testing.assert_close(loss_g.cpu(), loss_c, rtol=loss_tol[0], atol=loss_tol[1], equal_nan=True)
    torch.testing.assert_close(grad_g.cpu().double(), grad_c.double(), rtol=grad_tol[0], atol=grad_tol[1],
                               equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["log_probs", "logits"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("target_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("with_grad", [True, False])
def test_cuda_matches_cpu(dtype, kind, layout, target_dtype, zero_infinity, with_grad):
    blank = 3
    x, targets, il, tl = special_case(blank=blank, seed=1)
    x = (x.log_softmax(-1) if kind == "log_probs" else x).to(dtype)
    if layout == "concatenated":
        targets = concat(targets, tl)
    targets = targets.to(target_dtype)
    weights = torch.rand(x.shape[1], dtype=LOSS_DTYPE[dtype]) + 0.5 if with_grad else None
    cpu = run_op(kind, x, targets, il, tl, blank, zero_infinity, weights, "cpu")
    cuda = run_op(kind, x, targets, il, tl, blank, zero_infinity, weights, "cuda")
    assert_agree(cpu, cuda, dtype)
    loss = cuda[0].cpu()
    assert loss[2] == 0
    assert torch.all(loss[3:5] == 0) if zero_infinity else torch.isinf(loss[3:5]).all()


@pytest.mark.parametrize("kind", ["log_probs", "logits"])
def test_strided_input_keeps_its_layout(kind):
    x, targets, il, tl = special_case(seed=2)
    bf = x.transpose(0, 1).contiguous().float().transpose(0, 1)  # batch-first storage, (T, N, C) view
    if kind == "log_probs":
        bf = bf.log_softmax(-1)
    weights = torch.rand(6) + 0.5
    cpu = run_op(kind, bf, targets, il, tl, 0, False, weights, "cpu")
    x_cuda = bf.transpose(0, 1).cuda().transpose(0, 1)
    cuda = OPS[kind](x_cuda, targets.cuda(), il.cuda(), tl.cuda(), 0, False, weights.cuda())
    assert cuda[1].stride() == x_cuda.stride()
    assert_agree(cpu, cuda, torch.float32)


def test_many_classes_logits():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 8, 5000, generator=g) * 3
    targets = torch.randint(1, 5000, (8, 4), generator=g)
    il, tl = torch.full((8,), 16), torch.randint(0, 5, (8,), generator=g)
    weights = torch.rand(8) + 0.5
    cpu = run_op("logits", x, targets, il, tl, 0, False, weights, "cpu")
    cuda = run_op("logits", x, targets, il, tl, 0, False, weights, "cuda")
    assert_agree(cpu, cuda, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["log_probs", "logits"])
def test_bit_identical_runs(dtype, kind):
    x, targets, il, tl = special_case(T=80, C=20, S=25, seed=4)
    x = (x.log_softmax(-1) if kind == "log_probs" else x).to(dtype).cuda()
    args = (targets.cuda(), il.cuda(), tl.cuda(), 0, False, torch.rand(6, device="cuda") + 0.5)
    first = OPS[kind](x, *args)
    for _ in range(3):
        again = OPS[kind](x, *args)
        assert torch.equal(again[0].nan_to_num(), first[0].nan_to_num())
        assert torch.equal(again[1].nan_to_num(), first[1].nan_to_num())


@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_long_targets(layout, dtype):
    """L = 1000 loops the threads over the states; three concatenated targets
    bound the per-sample length by their 2959 labels, so two alpha rows
    (2 (2 * 2959 + 1) * 4 = 47,352 bytes in float32, twice that in float64)
    exceed the 46 KiB kept for them in shared memory and live in the
    workspace instead (padded: 2 (2 * 1000 + 1) * 8 = 32,016 bytes, shared)."""
    g = torch.Generator().manual_seed(5)
    T, N, C, L = 2300, 3, 40, 1000
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (N, L), generator=g)
    targets[:, 10:20] = 7  # a run of repeats needs a blank between each
    il, tl = torch.tensor([T, T - 100, 2000]), torch.tensor([L, L - 1, 960])
    if layout == "concatenated":
        targets = concat(targets, tl)
    weights = torch.rand(N, dtype=dtype) + 0.5
    ref = run_op("logits", x, targets, il, tl, 0, False, weights.double(), "cpu")
    cuda = run_op("logits", x.to(dtype), targets, il, tl, 0, False, weights, "cuda")
    assert torch.isfinite(cuda[0]).all()
    rtol, atol = (1e-10, 1e-10) if dtype == torch.float64 else (2e-5, 2e-4)
    torch.testing.assert_close(cuda[0].cpu().double(), ref[0], rtol=rtol, atol=atol)
    grad_atol = 1e-10 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(cuda[1].cpu().double(), ref[1], rtol=1e-3, atol=grad_atol)


@pytest.mark.parametrize("S", [16, 64, 250])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multi_warp_blocks_are_right_and_bit_identical(S, dtype):
    """Targets of 16 to 250 labels give recursion blocks of 2 to 16 warps, where
    a missing barrier between warps shows (the beta/gamma race fixed with the
    CUDA-on-CPU harness): many blocks, runs compared bitwise and with the CPU."""
    g = torch.Generator().manual_seed(S)
    T, N, C = 2 * S + 10, 256, 40
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (N, S), generator=g)
    il = torch.randint(T - 10, T + 1, (N,), generator=g)
    tl = torch.randint(S // 2, S + 1, (N,), generator=g)
    weights = torch.rand(N, dtype=torch.float64) + 0.5
    ref = run_op("log_probs", x.log_softmax(-1), targets, il, tl, 0, True, weights, "cpu")
    xs = x.log_softmax(-1).to(dtype)
    first = run_op("log_probs", xs, targets, il, tl, 0, True, weights.to(dtype), "cuda")
    for _ in range(5):
        again = run_op("log_probs", xs, targets, il, tl, 0, True, weights.to(dtype), "cuda")
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    rtol, atol = (1e-10, 1e-10) if dtype == torch.float64 else (2e-5, 2e-4)
    torch.testing.assert_close(first[0].cpu().double(), ref[0], rtol=rtol, atol=atol)
    torch.testing.assert_close(first[1].cpu().double(), ref[1], rtol=1e-3,
                               atol=1e-10 if dtype == torch.float64 else 5e-4)


BAD_UNCHECKED = {
    "label >= C": ([[1, 2, 3], [4, 1000, 1]], [10, 10], [3, 2], [1]),
    "huge label": ([[1, 2, 3], [2**40, 1, 1]], [10, 10], [3, 2], [1]),
    "negative label": ([[1, 2, 3], [4, -5, 1]], [10, 10], [3, 2], [1]),
    "label == blank": ([[1, 0, 3], [4, 1, 1]], [10, 10], [3, 2], [0]),
    "input length > T": ([[1, 2, 3], [4, 1, 1]], [10, 11], [3, 2], [1]),
    "negative input length": ([[1, 2, 3], [4, 1, 1]], [-1, 10], [3, 2], [0]),
    "target length > S": ([[1, 2, 3], [4, 1, 1]], [10, 10], [4, 2], [0]),
    "negative target length": ([[1, 2, 3], [4, 1, 1]], [10, 10], [3, -2], [1]),
}


@pytest.mark.parametrize("target_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("case", list(BAD_UNCHECKED))
def test_unchecked_bad_values_give_nan(case, target_dtype):
    targets, il, tl, bad = BAD_UNCHECKED[case]
    targets = torch.tensor(targets)
    if target_dtype == torch.int32:
        targets = targets.clamp(-(2**31), 2**31 - 1)
    x = torch.randn(10, 2, 5, device="cuda").log_softmax(-1).requires_grad_()
    args = (targets.to(target_dtype).cuda(), torch.tensor(il).cuda(), torch.tensor(tl).cuda())
    loss = ctcx.ctc_loss(x, *args, reduction="none", validate=False)
    loss.sum().backward()
    torch.cuda.synchronize()  # an out-of-bounds access would surface here
    good = [n for n in range(2) if n not in bad]
    assert torch.isnan(loss[bad]).all() and torch.isfinite(loss[good]).all()
    assert torch.isfinite(x.grad[:, good]).all()
    frames = max(0, min(il[bad[0]], 10))
    assert torch.isnan(x.grad[:frames, bad]).all() and torch.all(x.grad[frames:, bad] == 0)
    with pytest.raises(ValueError):
        ctcx.ctc_loss(x, *args)


def test_unchecked_concatenated_mismatch_gives_nan():
    x = torch.randn(10, 2, 5, device="cuda").log_softmax(-1)
    il, tl = torch.tensor([10, 10]).cuda(), torch.tensor([3, 2]).cuda()
    for targets in ([1, 2, 3, 4], [1, 2, 3, 4, 1, 2], [1, 2, 3, 4, 9]):
        loss = ctcx.ctc_loss(x, torch.tensor(targets).cuda(), il, tl, reduction="none", validate=False)
        torch.cuda.synchronize()
        if len(targets) != 5:  # offsets unknowable: every sample is NaN
            assert torch.isnan(loss).all()
        else:  # only the sample holding the bad label
            assert torch.isfinite(loss[0]) and torch.isnan(loss[1])


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_cuda_validation_messages_match_cpu(case):
    args = bad_args(BAD_VALUES[case])
    with pytest.raises(ValueError) as cpu:
        ctcx.ctc_loss(**args)
    cuda_args = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(ValueError) as cuda:
        ctcx.ctc_loss(**cuda_args)
    assert str(cuda.value) == str(cpu.value)


def test_no_host_sync_without_validation():
    x, targets, il, tl = special_case(seed=6)
    x = x.float().cuda().requires_grad_()
    targets, il, tl = targets.cuda(), il.cuda(), tl.cuda()
    flat = concat(targets, tl)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ctcx.ctc_loss_with_logits(x, targets, il, tl, zero_infinity=True, validate=False).backward()
        ctcx.ctc_loss(x.log_softmax(-1), flat.int(), il, tl, reduction="sum", zero_infinity=True,
                      validate=False).backward()
        with torch.no_grad():
            ctcx.CTCLoss(reduction="none", validate=False)(x.log_softmax(-1), targets, il, tl)
        with pytest.raises(RuntimeError, match="synchroniz"):
            ctcx.ctc_loss(x, targets, il, tl)  # validation syncs once
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(x.grad).all()


def test_no_host_sync_with_host_targets_and_lengths():
    """The usual nn.CTCLoss style, CPU targets and lengths as lists or CPU
    tensors, stays sync-free with validate=False (pinned, non-blocking copies),
    and gives the same losses and gradients as CUDA arguments."""
    x, targets, il, tl = special_case(seed=10)
    x = x.float().cuda()
    want_x = x.clone().requires_grad_()
    want = ctcx.ctc_loss(want_x.log_softmax(-1), targets.cuda(), il.cuda(), tl.cuda(), zero_infinity=True)
    want.backward()
    for form in ("lists", "cpu tensors"):
        got_x = x.clone().requires_grad_()
        il_, tl_ = (il.tolist(), tl.tolist()) if form == "lists" else (il, tl)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = ctcx.ctc_loss(got_x.log_softmax(-1), targets, il_, tl_, zero_infinity=True, validate=False)
            got.backward()
            flat = ctcx.ctc_loss_with_logits(x, concat(targets, tl), il_, tl_, reduction="none",
                                             zero_infinity=True, validate=False)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_x.grad, want_x.grad)
        assert flat.shape == (x.shape[1],) and flat.is_cuda


def test_backward_writes_one_gradient_tensor_and_the_forward_none():
    """On CUDA the forward computes the loss only and backward runs the fused op
    once with the incoming gradient as weights: no (T, N, C) gradient lives
    between forward and backward, and backward adds one (T, N, C) tensor (the
    gradient itself), not a second one for a rescale."""
    T, N, C, S = 50, 16, 5000, 10
    g = torch.Generator().manual_seed(13)
    x = torch.randn(T, N, C, generator=g).cuda().requires_grad_()
    targets = torch.randint(1, C, (N, S), generator=g).cuda()
    il, tl = torch.full((N,), T).cuda(), torch.full((N,), S).cuda()
    tnc = x.numel() * x.element_size()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    loss = ctcx.ctc_loss_with_logits(x, targets, il, tl, validate=False)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < tnc // 10
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    loss.backward()
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - start < 1.2 * tnc
    ref_x = x.detach().cpu().requires_grad_()
    ref = ctcx.ctc_loss_with_logits(ref_x, targets.cpu(), il.cpu(), tl.cpu())
    ref.backward()
    torch.testing.assert_close(loss.cpu(), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(x.grad.cpu(), ref_x.grad, rtol=1e-4, atol=5e-5)


def test_graph_capture_refuses_host_lengths():
    """A captured copy from host memory would replay the captured values, so
    host targets or lengths are refused during capture, naming the argument."""
    x, targets, il, tl = special_case(seed=11)
    x = x.float().cuda()
    ctcx.ctc_loss(x.log_softmax(-1), targets.cuda(), il.cuda(), tl.cuda(), validate=False)  # warm up
    torch.cuda.synchronize()
    for name, args in (("input_lengths", (targets.cuda(), il.tolist(), tl.cuda())),
                       ("targets", (targets, il.cuda(), tl.cuda()))):
        graph = torch.cuda.CUDAGraph()
        with pytest.raises(ValueError, match=f"{name} lives in host memory while a CUDA graph is being captured"):
            with torch.cuda.graph(graph):
                ctcx.ctc_loss(x.log_softmax(-1), *args, validate=False)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_targets_on_another_gpu_are_an_error():
    x, targets, il, tl = special_case(seed=12)
    with pytest.raises(ValueError, match="targets is on cuda:1 but the input is on cuda:0"):
        ctcx.ctc_loss(x.float().cuda(0).log_softmax(-1), targets.cuda(1), il, tl)


@pytest.mark.parametrize("kind", ["log_probs", "logits"])
def test_cuda_graph_capture_forward_and_backward(kind):
    x, targets, il, tl = special_case(seed=7)
    targets, il, tl = targets.cuda(), il.cuda(), tl.cuda()
    static_x = x.float().cuda().requires_grad_()

    def step():
        if kind == "log_probs":
            loss = ctcx.ctc_loss(static_x.log_softmax(-1), targets, il, tl, zero_infinity=True,
                                 validate=False)
        else:
            loss = ctcx.ctc_loss_with_logits(static_x, targets, il, tl, zero_infinity=True,
                                             validate=False)
        loss.backward()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the graph, as capture requires
        for _ in range(2):
            static_x.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    static_x.grad = None
    with torch.cuda.graph(graph):
        static_loss = step()

    for seed in (8, 9):
        new_x = special_case(seed=seed)[0].float().cuda()
        static_x.data.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        eager_x = new_x.clone().requires_grad_()
        if kind == "log_probs":
            ref = ctcx.ctc_loss(eager_x.log_softmax(-1), targets, il, tl, zero_infinity=True)
        else:
            ref = ctcx.ctc_loss_with_logits(eager_x, targets, il, tl, zero_infinity=True)
        ref.backward()
        torch.testing.assert_close(static_loss, ref)
        torch.testing.assert_close(static_x.grad, eager_x.grad)
