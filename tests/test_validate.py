"""The keyword-only ``validate`` argument and the value checks CUDA inputs go through.

On the CPU the C++ op always checks values, so ``validate=False`` changes
nothing there. On CUDA ctcx/_validate.py checks them with torch ops; its
messages must be exactly the C++ ones, which these tests pin on the CPU.
"""
import pytest
import torch

import ctcx
from ctcx._validate import check_values

T, C = 10, 5


def good():
    lp = torch.randn(T, 2, C, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    return lp, torch.tensor([[1, 2, 3], [4, 1, 0]]), torch.tensor([10, 8]), torch.tensor([3, 2])


BAD_VALUES = {
    "label negative": {"targets": torch.tensor([[1, 2, 3], [4, -1, 0]])},
    "label >= C": {"targets": torch.tensor([[1, 2, 5], [4, 1, 0]])},
    "label == blank": {"targets": torch.tensor([[1, 0, 3], [4, 1, 0]])},
    "label == nonzero blank": {"targets": torch.tensor([[1, 2, 3], [4, 1, 0]]), "blank": 4},
    "input length > T": {"input_lengths": torch.tensor([11, 8])},
    "input length negative": {"input_lengths": torch.tensor([10, -1])},
    "target length negative": {"target_lengths": torch.tensor([3, -2])},
    "target length > S": {"target_lengths": torch.tensor([4, 2])},
    "second sample's lengths": {"input_lengths": torch.tensor([10, 12]),
                                "target_lengths": torch.tensor([3, -1])},
    "concatenated size": {"targets": torch.tensor([1, 2, 3, 4])},
    "concatenated label": {"targets": torch.tensor([1, 2, 3, 4, 7])},
    "concatenated label, second sample": {"targets": torch.tensor([1, 2, 3, 4, 0])},
    "concatenated label after an empty target": {"targets": torch.tensor([1, 9]),
                                                 "target_lengths": torch.tensor([0, 2])},
}


def bad_args(change):
    lp, targets, il, tl = good()
    args = {"log_probs": lp, "targets": targets, "input_lengths": il, "target_lengths": tl, "blank": 0}
    args.update(change)
    return args


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_python_checks_match_cpp_messages(case):
    args = bad_args(BAD_VALUES[case])
    with pytest.raises(ValueError) as cpp:
        ctcx.ctc_loss(**args)
    with pytest.raises(ValueError) as py:
        check_values("ctcx.ctc_loss", args["log_probs"], args["targets"], args["input_lengths"],
                     args["target_lengths"], args["blank"])
    assert str(py.value) == str(cpp.value)


def test_python_checks_accept_good_input():
    lp, targets, il, tl = good()
    check_values("ctcx.ctc_loss", lp, targets, il, tl, 0)
    flat = torch.cat([targets[0, :3], targets[1, :2]])
    check_values("ctcx.ctc_loss", lp, flat, il, tl, 0)
    check_values("ctcx.ctc_loss", lp, targets[:, :0], il, torch.zeros(2, dtype=torch.long), 0)
    # padding past the target lengths is ignored, whatever it holds
    check_values("ctcx.ctc_loss", lp, torch.tensor([[1, 2, 3], [4, 1, -7]]), il, tl, 0)


@pytest.mark.parametrize("case", ["label >= C", "input length > T", "concatenated size"])
@pytest.mark.parametrize("fn", [ctcx.ctc_loss, ctcx.ctc_loss_with_logits])
def test_cpu_validates_even_with_validate_false(case, fn):
    a = bad_args(BAD_VALUES[case])
    with pytest.raises(ValueError):
        fn(a["log_probs"], a["targets"], a["input_lengths"], a["target_lengths"], a["blank"],
           validate=False)


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_cpu_inputs_are_checked_even_with_validate_false(case):
    """validate=False only skips the CUDA value checks (their host sync); CPU
    inputs are always checked in C++, so bad values still raise, with the
    same message as with validation on."""
    args = bad_args(BAD_VALUES[case])
    with pytest.raises(ValueError) as on:
        ctcx.ctc_loss(**args)
    with pytest.raises(ValueError) as off:
        ctcx.ctc_loss(**args, validate=False)
    assert str(off.value) == str(on.value)


def test_validate_is_keyword_only():
    lp, targets, il, tl = good()
    with pytest.raises(TypeError):
        ctcx.ctc_loss(lp, targets, il, tl, 0, "mean", False, False)
    with pytest.raises(TypeError):
        ctcx.CTCLoss(0, "mean", False, False)


@pytest.mark.parametrize("cls", [ctcx.CTCLoss, ctcx.CTCLossWithLogits])
def test_modules_take_validate(cls):
    lp, targets, il, tl = good()
    module = cls(validate=False)
    assert module.validate is False and "validate=False" in repr(module)
    assert "validate" not in repr(cls())
    with pytest.raises(ValueError, match="targets label 7"):
        module(lp, torch.tensor([[1, 2, 7], [4, 1, 0]]), il, tl)
