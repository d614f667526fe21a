"""ctcx.greedy_decode: best path = argmax per frame, merge repeats, drop blanks."""
import itertools

import pytest
import torch

import ctcx
from ctcx._reference import collapse


def test_hand_made_paths():
    C = 4
    paths = [[1, 1, 0, 1, 2, 2, 0], [0, 0, 0, 0, 0, 0, 0], [3, 0, 3, 3, 1, 0, 0]]
    lp = torch.full((7, 3, C), -10.0)
    for n, p in enumerate(paths):
        for t, c in enumerate(p):
            lp[t, n, c] = 0.0
    assert ctcx.greedy_decode(lp) == [[1, 1, 2], [], [3, 3, 1]]
    assert ctcx.greedy_decode(lp, [3, 7, 1]) == [[1], [], [3]]
    # blank at C - 1: class 3 is now blank and 0 a label
    assert ctcx.greedy_decode(lp, blank=3) == [[1, 0, 1, 2, 0], [0], [0, 1, 0]]


def test_matches_argmax_collapse_random():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(40, 16, 6, generator=g).log_softmax(-1)
    lengths = torch.randint(0, 41, (16,), generator=g)
    out = ctcx.greedy_decode(lp, lengths, blank=2)
    for n in range(16):
        best = lp[: int(lengths[n]), n].argmax(-1).tolist()
        assert out[n] == collapse(best, blank=2)


def test_greedy_is_the_best_path_by_enumeration():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(5, 1, 3, generator=g).log_softmax(-1)
    best = max(itertools.product(range(3), repeat=5), key=lambda p: sum(lp[t, 0, c].item() for t, c in enumerate(p)))
    assert ctcx.greedy_decode(lp) == [collapse(best)]


@pytest.mark.parametrize("kwargs,match", [
    ({"log_probs": torch.zeros(5, 3)}, "floating \\(T, N, C\\)"),
    ({"log_probs": torch.zeros(5, 2, 3, dtype=torch.long)}, "floating \\(T, N, C\\)"),
    ({"blank": 3}, "blank = 3"),
    ({"input_lengths": [5]}, "N = 2 integers"),
    ({"input_lengths": [5, 6]}, "\\[0, T = 5\\]"),
])
def test_bad_input(kwargs, match):
    args = {"log_probs": torch.zeros(5, 2, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        ctcx.greedy_decode(**args)
