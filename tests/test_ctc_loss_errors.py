"""Every class of bad input to ctcx.ctc_loss raises a ValueError naming the argument."""
import pytest
import torch

import ctcx


def good(device="cpu"):
    lp = torch.randn(10, 2, 5, device=device).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [4, 1, 0]], device=device)
    return lp, targets, torch.tensor([10, 8]), torch.tensor([3, 2])


def test_good_input_passes(device):
    assert torch.isfinite(ctcx.ctc_loss(*good(device)))


@pytest.mark.parametrize("change,match", [
    (lambda a: {**a, "targets": torch.tensor([[1, 2, 3], [4, -1, 0]])}, r"targets label -1 \(sample 1, position 1\)"),
    (lambda a: {**a, "targets": torch.tensor([[1, 2, 5], [4, 1, 0]])}, r"targets label 5 .* C = 5"),
    (lambda a: {**a, "targets": torch.tensor([[1, 0, 3], [4, 1, 0]])}, r"targets label 0 .* blank = 0"),
    (lambda a: {**a, "blank": 5}, r"blank = 5 must be an int in \[0, C\) = \[0, 5\)"),
    (lambda a: {**a, "blank": -1}, r"blank = -1"),
    (lambda a: {**a, "input_lengths": torch.tensor([11, 8])}, r"input_lengths\[0\] = 11 .* T = 10"),
    (lambda a: {**a, "input_lengths": [10, -1]}, r"input_lengths\[1\] = -1"),
    (lambda a: {**a, "target_lengths": torch.tensor([3, -2])}, r"target_lengths\[1\] = -2 is negative"),
    (lambda a: {**a, "target_lengths": torch.tensor([4, 2])}, r"target_lengths\[0\] = 4 exceeds .* S = 3"),
    (lambda a: {**a, "targets": torch.tensor([1, 2, 3, 4])}, r"concatenated targets have 4 labels but sum\(target_lengths\) = 5"),
    (lambda a: {**a, "targets": torch.tensor([[1, 2, 3]])}, r"padded targets must be \(N, S\) with N = 2"),
    (lambda a: {**a, "targets": torch.ones(2, 3, 1, dtype=torch.long)}, r"targets must be \(N, S\) padded or 1-D"),
    (lambda a: {**a, "targets": torch.ones(2, 3)}, r"targets must be int32 or int64"),
    (lambda a: {**a, "targets": [[1, 2, 3], [4, 1, 0]]}, r"targets must be a tensor"),
    (lambda a: {**a, "input_lengths": torch.tensor([10, 8, 8])}, r"input_lengths must have shape \(2,\)"),
    (lambda a: {**a, "target_lengths": [3]}, r"target_lengths must have shape \(2,\)"),
    (lambda a: {**a, "input_lengths": torch.tensor([10.0, 8.0])}, r"input_lengths must hold integers"),
    (lambda a: {**a, "target_lengths": "3,2"}, r"target_lengths must be a tensor, list or tuple"),
    (lambda a: {**a, "log_probs": torch.zeros(10, 2, 5, dtype=torch.long)}, r"log_probs must be float16, bfloat16, float32 or float64"),
    (lambda a: {**a, "log_probs": torch.zeros(10, 2, 5, 1)}, r"log_probs must be \(T, N, C\) or unbatched \(T, C\)"),
    (lambda a: {**a, "log_probs": torch.zeros(10, 3, 5)}, r"padded targets must be \(N, S\) with N = 3"),
    (lambda a: {**a, "reduction": "avg"}, r"reduction must be one of"),
])
def test_bad_input_raises_value_error(change, match):
    lp, targets, il, tl = good()
    args = change({"log_probs": lp, "targets": targets, "input_lengths": il, "target_lengths": tl})
    with pytest.raises(ValueError, match=match):
        ctcx.ctc_loss(**args)


def test_bad_input_with_gradient_also_raises():
    lp, targets, il, tl = good()
    with pytest.raises(ValueError, match=r"targets label 7"):
        ctcx.ctc_loss(lp.requires_grad_(), torch.tensor([[1, 2, 7], [4, 1, 0]]), il, tl)


def test_unbatched_shape_errors():
    lp = torch.randn(6, 5).log_softmax(-1)
    with pytest.raises(ValueError, match=r"unbatched targets must be \(S,\)"):
        ctcx.ctc_loss(lp, torch.tensor([[1, 2]]), 6, 2)
    with pytest.raises(ValueError, match=r"input_lengths must have shape \(\) or \(1,\)"):
        ctcx.ctc_loss(lp, torch.tensor([1, 2]), [6, 6], 2)


def test_module_rejects_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        ctcx.CTCLoss(reduction="average")


def test_direct_op_call_is_memory_safe():
    """The op itself re-checks what the Python wrapper normalises."""
    lp, targets, il, tl = good()
    op = torch.ops.ctcx.ctc_loss
    with pytest.raises(ValueError, match="input_lengths must be int64"):
        op(lp, targets, il.int(), tl, 0, False, None)
    with pytest.raises(ValueError, match=r"targets label 9"):
        op(lp, torch.tensor([[1, 2, 9], [4, 1, 0]]), il, tl, 0, False, None)
    with pytest.raises(ValueError, match="blank = 7 is out of range"):
        op(lp, targets, il, tl, 7, False, None)
    with pytest.raises(ValueError, match="grad_weights must have shape"):
        op(lp, targets, il, tl, 0, False, torch.ones(3))


def test_a_class_dimension_of_size_one_or_an_empty_tensor_may_have_any_stride():
    """Found by tests/fuzz: with C = 1 (or no elements) a tensor's stride over C
    is meaningless and .contiguous() keeps it, yet the ops once refused such
    a tensor ("unit stride over C"). Every op takes it and answers as for a
    contiguous copy."""
    dense = torch.zeros(4, 2, 1, dtype=torch.float64)
    odd = torch.empty_strided((4, 2, 1), (2, 1, 8), dtype=torch.float64).copy_(dense)
    empty = torch.empty_strided((0, 2, 1), (2, 1, 8), dtype=torch.float64)
    no_targets = torch.zeros(2, 0, dtype=torch.long)
    for x in (odd, empty):
        want = dense[: x.shape[0]]
        for fn in (ctcx.ctc_loss, ctcx.ctc_loss_with_logits):
            mine, theirs = x.clone().requires_grad_(), want.clone().requires_grad_()
            got = fn(mine, no_targets, [x.shape[0]] * 2, [0, 0], reduction="sum")
            ref = fn(theirs, no_targets, [x.shape[0]] * 2, [0, 0], reduction="sum")
            assert torch.equal(got.detach(), ref.detach())
            got.backward()
            ref.backward()
            assert torch.equal(mine.grad, theirs.grad)
        assert ctcx.greedy_decode(x) == [[], []]
        assert torch.equal(ctcx.beam_search(x).lengths, torch.zeros(2, 1, dtype=torch.long))
        assert torch.equal(ctcx.forced_align(x, no_targets)[0], torch.zeros(2, x.shape[0], dtype=torch.long))
