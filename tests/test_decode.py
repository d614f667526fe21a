"""ctcx.greedy_decode: best path = argmax per frame, merge repeats, drop blanks."""
import itertools

import pytest
import torch

import ctcx
from ctcx._reference import collapse


def test_hand_made_paths(device):
    C = 4
    paths = [[1, 1, 0, 1, 2, 2, 0], [0, 0, 0, 0, 0, 0, 0], [3, 0, 3, 3, 1, 0, 0]]
    lp = torch.full((7, 3, C), -10.0)
    for n, p in enumerate(paths):
        for t, c in enumerate(p):
            lp[t, n, c] = 0.0
    lp = lp.to(device)
    assert ctcx.greedy_decode(lp) == [[1, 1, 2], [], [3, 3, 1]]
    assert ctcx.greedy_decode(lp, [3, 7, 1]) == [[1], [], [3]]
    # blank at C - 1: class 3 is now blank and 0 a label
    assert ctcx.greedy_decode(lp, blank=3) == [[1, 0, 1, 2, 0], [0], [0, 1, 0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_matches_argmax_collapse_random(device, dtype):
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(40, 16, 6, generator=g).log_softmax(-1).to(dtype)
    lengths = torch.randint(0, 41, (16,), generator=g)
    out = ctcx.greedy_decode(lp.to(device), lengths.to(device), blank=2)
    for n in range(16):
        best = lp[: int(lengths[n]), n].argmax(-1).tolist()
        assert out[n] == collapse(best, blank=2)


def test_ties_and_nan_follow_torch_argmax(device):
    lp = torch.zeros(6, 2, 5)  # all tied: argmax is class 0 everywhere
    lp[1, 0, 3] = float("nan")  # NaN wins its frame
    lp[4, 1, 2] = 1.0
    lp[4, 1, 4] = 1.0  # tie between 2 and 4: the smaller index
    out = ctcx.greedy_decode(lp.to(device))
    for n in range(2):
        assert out[n] == collapse(lp[:, n].argmax(-1).tolist())
    assert out == [[3], [2]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("C", [15, 16, 17, 33, 1000])
def test_wide_rows_follow_torch_argmax(device, C, dtype):
    """Rows wider than the CPU's 16-class blocks: the maximum found in one
    pass, its first occurrence in a later block, ties across blocks, NaN
    late in a row, rows of -inf, +inf and signed zeros, as torch.argmax."""
    g = torch.Generator().manual_seed(C)
    T, N = 12, 3
    x = torch.randn(T, N, C, generator=g).to(dtype)
    top = x.amax(-1, keepdim=True)
    x[0, 0, C - 1] = top[0, 0, 0] + 1  # the last class, alone in the last block
    x[1, 0, C // 2] = x[1, 0, C - 1] = top[1, 0, 0] + 1  # a tie across blocks: the first
    x[2, 1, C - 2] = float("nan")  # NaN late in the row
    x[2, 1, 0] = float("inf")
    x[3, 2] = float("-inf")  # a row of -inf: class 0
    x[4, 2] = 0.0
    x[4, 2, : C // 2] = -0.0  # -0 == +0: the first of them
    x[5, 1, C - 3] = float("inf")
    x[6, 0] = 1.0  # all tied
    out = ctcx.greedy_decode(x.to(device), blank=1)
    for n in range(N):
        assert out[n] == collapse(x[:, n].argmax(-1).tolist(), blank=1), n


def test_batch_first_and_strided_views(device):
    g = torch.Generator().manual_seed(2)
    lp = torch.randn(30, 5, 9, generator=g).to(device)
    want = ctcx.greedy_decode(lp)
    assert ctcx.greedy_decode(lp.transpose(0, 1).contiguous(), batch_first=True) == want
    wide = torch.randn(30, 5, 18, generator=g).to(device)
    wide[..., ::2] = lp
    assert ctcx.greedy_decode(wide[..., ::2]) == want  # class stride 2: copied to unit stride


def test_greedy_is_the_best_path_by_enumeration():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(5, 1, 3, generator=g).log_softmax(-1)
    best = max(itertools.product(range(3), repeat=5), key=lambda p: sum(lp[t, 0, c].item() for t, c in enumerate(p)))
    assert ctcx.greedy_decode(lp) == [collapse(best)]


def test_op_outputs(device):
    lp = torch.full((4, 2, 3), -5.0, device=device)
    lp[0, :, 1] = 0
    lp[2, :, 2] = 0
    tokens, lengths = torch.ops.ctcx.ctc_greedy_decode(lp, torch.tensor([4, 1], device=device), 0)
    assert tokens.tolist() == [[1, 2, -1, -1], [1, -1, -1, -1]] and lengths.tolist() == [2, 1]


@pytest.mark.parametrize("kwargs,match", [
    ({"log_probs": torch.zeros(5, 3)}, "log_probs must be a floating \\(T, N, C\\)"),
    ({"log_probs": torch.zeros(5, 2, 3, dtype=torch.long)}, "log_probs must be a floating \\(T, N, C\\)"),
    ({"log_probs": torch.zeros(2, 5, 3), "batch_first": True, "input_lengths": [5, 6]}, "input_lengths must lie in \\[0, T = 5\\]"),
    ({"blank": 3}, "blank = 3"),
    ({"input_lengths": [5]}, "input_lengths must hold N = 2 integers"),
    ({"input_lengths": [5, 6]}, "input_lengths must lie in \\[0, T = 5\\]"),
])
def test_bad_input(kwargs, match):
    args = {"log_probs": torch.zeros(5, 2, 3), **kwargs}
    with pytest.raises(ValueError, match=match) as err:
        ctcx.greedy_decode(**args)
    assert str(err.value).startswith("ctcx.greedy_decode: ")  # the function, then the argument by name


def test_op_checks_raw_calls():
    with pytest.raises(ValueError, match="input_lengths\\[0\\] = 9"):
        torch.ops.ctcx.ctc_greedy_decode(torch.zeros(5, 2, 3), torch.tensor([9, 1]), 0)
