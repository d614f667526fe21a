"""ctcx.beam_search against a brute-force oracle and a textbook prefix beam
search, hand-made edge cases, constraints, bad input, opcheck and compile.

Every test runs on the CPU and, with a GPU and ctcx's CUDA kernels, on CUDA
(the `device` fixture); test_cpu_cuda_agree compares the two directly.
"""
import math

import pytest
import torch

import ctcx
from ctcx._reference import collapse, ctc_decode_brute_force, prefix_beam_search_reference

NEG_INF = float("-inf")
HAS_CUDA = torch.cuda.is_available() and ctcx.cuda_available()


def random_log_probs(T, N, C, seed, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale).log_softmax(-1).to(dtype)


def hypotheses(result, n):
    """[(tokens tuple, score, timesteps tuple)] of sample n, missing ones left out."""
    out = []
    for i in range(result.scores.shape[1]):
        score = result.scores[n, i].item()
        length = int(result.lengths[n, i])
        if score == NEG_INF:
            assert length == 0 and (result.tokens[n, i] == -1).all() and (result.timesteps[n, i] == -1).all()
            continue
        tokens = result.tokens[n, i].tolist()
        times = result.timesteps[n, i].tolist()
        assert all(v == -1 for v in tokens[length:] + times[length:])
        out.append((tuple(tokens[:length]), score, tuple(times[:length])))
    return out


def assert_same_ranking(got, want, tol):
    """Same scores rank by rank; the same labellings except where scores tie within tol."""
    assert len(got) == len(want), (got, want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert abs(g[1] - w[1]) <= tol, (i, g, w)
        if g[0] != w[0]:
            twin = [h for h in want if h[0] == g[0]]
            assert twin and abs(twin[0][1] - w[1]) <= tol, (i, g, w)


def one_hot_frames(path, C, blank_value=-30.0):
    """(T, 1, C) log-probs that put (almost) all mass on path[t] at frame t."""
    lp = torch.full((len(path), 1, C), blank_value, dtype=torch.float64)
    for t, c in enumerate(path):
        lp[t, 0, c] = 0.0
    return lp.log_softmax(-1)


# ---------------------------------------------------------------- exactness

ORACLE_CASES = [
    # T, C, blank, min_length, max_length, allowed, dtype
    (4, 3, 0, None, None, None, torch.float64),
    (5, 3, 1, None, None, None, torch.float32),
    (3, 4, 3, None, None, None, torch.float64),
    (5, 4, 0, None, None, None, torch.float32),
    (4, 4, 2, 2, None, None, torch.float64),
    (5, 3, 0, 1, 2, None, torch.float32),
    (4, 4, 0, None, 1, None, torch.float64),
    (4, 4, 1, 1, 3, [True, True, False, True], torch.float64),
    (3, 3, 0, 0, 0, None, torch.float32),
]


@pytest.mark.parametrize("T,C,blank,min_length,max_length,allowed,dtype", ORACLE_CASES)
def test_exact_top_k_equals_brute_force(device, T, C, blank, min_length, max_length, allowed, dtype):
    """With a beam holding every reachable prefix the search is exact: its
    top-k is the top-k of all labellings by log P(labelling | x)."""
    N = 3
    lp = random_log_probs(T, N, C, seed=T * 100 + C * 10 + blank, scale=1.5)
    mask = None if allowed is None else torch.tensor(allowed)
    beam = 256  # > the 148 labellings of 5 frames over 3 tokens with non-zero probability
    result = ctcx.beam_search(lp.to(device, dtype), beam_width=beam, top_k=beam, blank=blank,
                              min_length=min_length, max_length=max_length,
                              allowed_tokens=None if mask is None else mask.to(device))
    for n in range(N):
        want = ctc_decode_brute_force(lp[:, n], blank, min_length or 0, max_length, mask)
        got = hypotheses(result, n)
        assert_same_ranking([h[:2] for h in got], want, 1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_pruned_beam_equals_reference(device, seed):
    """With a small beam (pruning at every frame), the same beams, scores and
    timesteps as the textbook reference, sample by sample in one batch."""
    g = torch.Generator().manual_seed(seed)
    T, N, C = 18, 5, 3 + seed
    blank = [0, C - 1, 1, 2][seed]
    beam = [1, 3, 5, 8][seed]
    lp = random_log_probs(T, N, C, seed, scale=[1.0, 2.0, 4.0, 3.0][seed])
    lengths = torch.randint(0, T + 1, (N,), generator=g)
    lengths[0] = T
    kwargs = [{}, {"min_length": 3}, {"max_length": 4}, {"min_length": 2, "max_length": 6}][seed]
    result = ctcx.beam_search(lp.to(device), lengths.to(device), beam_width=beam, top_k=beam,
                              blank=blank, **kwargs)
    for n in range(N):
        want = prefix_beam_search_reference(lp[: int(lengths[n]), n], beam, blank,
                                            kwargs.get("min_length", 0), kwargs.get("max_length"))
        got = hypotheses(result, n)
        assert [h[0] for h in got] == [h[0] for h in want]
        assert [h[2] for h in got] == [h[2] for h in want]
        assert [h[1] for h in got] == pytest.approx([h[1] for h in want], abs=1e-9)


@pytest.mark.parametrize("C", [40, 60, 100])
@pytest.mark.parametrize("beam", [1, 2, 3, 4])
def test_token_restriction_equals_reference(device, C, beam):
    """C - 1 > 2 beam_width: the search expands only the 2 beam_width best
    tokens of each frame (csrc/include/ctcx/ctc_decode.h argues why no other
    can reach the beam); the textbook reference expands every token. Same
    beams, scores and timesteps, flat and peaked posteriors alike."""
    T, N = 14, 6
    for scale in (1.0, 4.0):
        lp = random_log_probs(T, N, C, seed=C * 10 + beam, scale=scale)
        result = ctcx.beam_search(lp.to(device), beam_width=beam, top_k=beam, blank=0)
        for n in range(N):
            want = prefix_beam_search_reference(lp[:, n], beam, 0, 0, None)
            got = hypotheses(result, n)
            assert [h[0] for h in got] == [h[0] for h in want]
            assert [h[2] for h in got] == [h[2] for h in want]
            assert [h[1] for h in got] == pytest.approx([h[1] for h in want], abs=1e-9)


def test_token_restriction_keeps_ranks_past_beam_width(device):
    """Why the 2 beam_width best tokens, not beam_width: after two frames the
    beam of 2 holds "a" (best, its mass split between ending in blank and in
    a) and "ab". The third frame's best tokens are a (its REP and STAY each
    get half of "a") and b (merged into "ab"), so "a" + the third-best token c
    beats both halves and is second: a list of 2 tokens would miss it."""
    probs = torch.tensor([
        # blank  a     b     c     d     e     f      g
        [0.05, 0.90, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005],
        [0.40, 0.40, 0.15, 0.01, 0.01, 0.01, 0.01, 0.01],
        [0.05, 0.30, 0.29, 0.28, 0.02, 0.02, 0.02, 0.02],
    ], dtype=torch.float64)
    lp = probs.log().unsqueeze(1)
    got = hypotheses(ctcx.beam_search(lp.to(device), beam_width=2, top_k=2), 0)
    want = prefix_beam_search_reference(lp[:, 0], 2, 0, 0, None)
    assert [h[0] for h in want] == [(1, 2), (1, 3)]
    assert [h[0] for h in got] == [h[0] for h in want]
    assert [h[2] for h in got] == [h[2] for h in want] == [(0, 2), (0, 2)]
    assert [h[1] for h in got] == pytest.approx([h[1] for h in want], abs=1e-9)


def test_large_beam_and_vocabulary_exact_on_one_frame(device):
    """beam_width 512, C = 8192: on one frame the hypotheses are the empty
    one (the blank) and every single token, so the top 512 are known."""
    C, beam, blank = 8192, 512, 17
    lp = random_log_probs(1, 2, C, seed=3, scale=3.0, dtype=torch.float32)
    result = ctcx.beam_search(lp.to(device), beam_width=beam, top_k=beam, blank=blank)
    for n in range(2):
        scores, order = lp[0, n].double().sort(descending=True, stable=True)
        want = [((() if c == blank else (c,)), s) for c, s in zip(order.tolist()[:beam], scores.tolist())]
        assert_same_ranking([h[:2] for h in hypotheses(result, n)], want, 1e-6)


def test_large_beam_and_vocabulary_runs(device):
    lp = random_log_probs(6, 2, 8192, seed=4, scale=4.0, dtype=torch.float32).to(device)
    result = ctcx.beam_search(lp, beam_width=512, top_k=8)
    assert torch.isfinite(result.scores).all()
    assert (result.scores[:, :-1] >= result.scores[:, 1:]).all()


# --------------------------------------------------------------- edge cases

def test_repeated_labels_need_a_blank_between(device):
    C = 3
    two = ctcx.beam_search(one_hot_frames([1, 0, 1], C).to(device), beam_width=4)
    one = ctcx.beam_search(one_hot_frames([1, 1, 1], C).to(device), beam_width=4)
    assert hypotheses(two, 0)[0][0] == (1, 1)
    assert hypotheses(one, 0)[0][0] == (1,)


def test_hand_made_timesteps(device):
    # frames:  -  a  a  -  b  b  -  a  (a = 1, b = 2)
    lp = one_hot_frames([0, 1, 1, 0, 2, 2, 0, 1], 3)
    best = hypotheses(ctcx.beam_search(lp.to(device), beam_width=8), 0)[0]
    assert best[0] == (1, 2, 1) and best[2] == (1, 4, 7)
    assert best[1] == pytest.approx(0.0, abs=1e-6)
    # b right after a, no blank: b starts where its first frame is
    lp = one_hot_frames([1, 1, 2, 2, 2, 0], 3)
    best = hypotheses(ctcx.beam_search(lp.to(device), beam_width=8), 0)[0]
    assert best[0] == (1, 2) and best[2] == (0, 2)


def test_all_blank_input(device):
    lp = random_log_probs(7, 2, 5, seed=5)
    lp[..., 0] += 20  # blank dominates every frame
    lp = lp.log_softmax(-1)
    result = ctcx.beam_search(lp.to(device), beam_width=4, top_k=2)
    for n in range(2):
        best = hypotheses(result, n)[0]
        assert best[0] == ()
        assert best[1] == pytest.approx(lp[:, n, 0].sum().item(), abs=1e-9)


def test_one_frame_lists_every_hypothesis(device):
    lp = random_log_probs(1, 1, 4, seed=6)
    got = hypotheses(ctcx.beam_search(lp.to(device), beam_width=6, top_k=6, blank=2), 0)
    want = sorted([((), lp[0, 0, 2].item())] + [((c,), lp[0, 0, c].item()) for c in (0, 1, 3)],
                  key=lambda h: -h[1])
    assert_same_ranking([h[:2] for h in got], want, 1e-12)
    assert len(got) == 4  # top_k 6 > 4 hypotheses: two padded rows


def test_top_k_beyond_hypotheses_is_padded(device):
    result = ctcx.beam_search(random_log_probs(1, 2, 3, seed=7).to(device), beam_width=8, top_k=5)
    assert result.scores.shape == (2, 5)
    assert (result.scores[:, 3:] == NEG_INF).all() and (result.lengths[:, 3:] == 0).all()
    assert (result.tokens[:, 3:] == -1).all() and (result.timesteps[:, 3:] == -1).all()
    assert torch.isfinite(result.scores[:, :3]).all()


def test_input_lengths_ignore_padding(device):
    lp = random_log_probs(12, 3, 6, seed=8)
    lengths = torch.tensor([12, 5, 0])
    padded = lp.clone()
    padded[5:, 1] = float("nan")
    padded[:, 2] = 1e4
    full = ctcx.beam_search(padded.to(device), lengths.to(device), beam_width=6, top_k=3)
    short = ctcx.beam_search(lp[:5, 1:2].to(device), beam_width=6, top_k=3)
    assert hypotheses(full, 1) == hypotheses(short, 0)
    assert hypotheses(full, 2) == [((), 0.0, ())]  # no frames: the empty hypothesis, score 0
    assert full.tokens.shape == (3, 3, 12)


def test_blank_only_vocabulary(device):
    lp = torch.zeros(5, 2, 1, device=device)
    result = ctcx.beam_search(lp, beam_width=3, top_k=2)
    assert hypotheses(result, 0) == hypotheses(result, 1) == [((), 0.0, ())]


def test_blank_last_class(device):
    C = 5
    lp = random_log_probs(9, 2, C, seed=9)
    a = ctcx.beam_search(lp.to(device), beam_width=5, top_k=3, blank=C - 1)
    # the same problem with the classes rotated so that the blank is class 0
    rotated = torch.roll(lp, 1, dims=-1)
    b = ctcx.beam_search(rotated.to(device), beam_width=5, top_k=3, blank=0)
    for n in range(2):
        ha, hb = hypotheses(a, n), hypotheses(b, n)
        assert [tuple(c + 1 for c in h[0]) for h in ha] == [h[0] for h in hb]
        assert [h[1] for h in ha] == pytest.approx([h[1] for h in hb], abs=1e-12)


def test_constraints_nothing_satisfies(device):
    lp = random_log_probs(4, 2, 4, seed=10).to(device)
    too_long = ctcx.beam_search(lp, beam_width=8, top_k=3, min_length=5)
    assert (too_long.scores == NEG_INF).all() and (too_long.lengths == 0).all()
    nothing_allowed = ctcx.beam_search(lp, beam_width=8, top_k=3, min_length=1,
                                       allowed_tokens=torch.tensor([True, False, False, False]))
    assert (nothing_allowed.scores == NEG_INF).all()
    no_frames = ctcx.beam_search(lp, torch.tensor([0, 4], device=device), beam_width=8, min_length=1)
    assert no_frames.scores[0, 0] == NEG_INF and no_frames.scores[1, 0] > NEG_INF


def test_constraints_shape_the_answer(device):
    """A known length recovers a token the unconstrained search drops."""
    # frames: a, then a weak b (prob 0.4 vs blank 0.6), then c
    lp = torch.log(torch.tensor([[[0.05, 0.9, 0.025, 0.025]],
                                 [[0.6, 0.0, 0.4, 0.0]],
                                 [[0.05, 0.025, 0.025, 0.9]]], dtype=torch.float64).clamp_min(1e-12))
    free = hypotheses(ctcx.beam_search(lp.to(device), beam_width=8), 0)[0]
    fixed = hypotheses(ctcx.beam_search(lp.to(device), beam_width=8, min_length=3, max_length=3), 0)[0]
    assert free[0] == (1, 3) and fixed[0] == (1, 2, 3)
    allowed = torch.tensor([True, True, False, True])
    masked = hypotheses(ctcx.beam_search(lp.to(device), beam_width=8, top_k=8, allowed_tokens=allowed), 0)
    assert all(2 not in h[0] for h in masked)


def test_batch_first_and_dtypes(device):
    lp = random_log_probs(10, 3, 7, seed=11, dtype=torch.float32)
    base = ctcx.beam_search(lp.to(device), beam_width=5, top_k=2)
    first = ctcx.beam_search(lp.transpose(0, 1).contiguous().to(device), beam_width=5, top_k=2,
                             batch_first=True)
    for a, b in zip(base, first):
        assert torch.equal(a, b)
    assert base.scores.dtype == torch.float32 and base.tokens.dtype == torch.int64
    assert ctcx.beam_search(lp.double().to(device), beam_width=5).scores.dtype == torch.float64
    for dtype in (torch.float16, torch.bfloat16):
        low = ctcx.beam_search(lp.to(device, dtype), beam_width=5, top_k=2)
        assert low.scores.dtype == torch.float32
        # half inputs are read into float32 exactly: the same search as on the
        # rounded values given in float32, tokens, scores and timesteps alike
        widened = ctcx.beam_search(lp.to(dtype).float().to(device), beam_width=5, top_k=2)
        for a, b in zip(low, widened):
            assert torch.equal(a, b)
        # and the rounding of the input moves the best score by ~T * eps(dtype) at most
        assert low.scores[:, 0].cpu() == pytest.approx(base.scores[:, 0].cpu(), abs=10 * 7 * torch.finfo(dtype).eps)


def test_blank_skip_threshold_is_a_lower_bound(device):
    lp = random_log_probs(30, 4, 6, seed=12, scale=5.0).to(device)
    exact = ctcx.beam_search(lp, beam_width=8, top_k=4)
    same = ctcx.beam_search(lp, beam_width=8, top_k=4, blank_skip_threshold=1.0)
    for a, b in zip(exact, same):
        assert torch.equal(a, b)
    skipped = ctcx.beam_search(lp, beam_width=8, top_k=4, blank_skip_threshold=0.5)
    # frames really are skipped: their blank probability exceeds the threshold
    assert (lp[..., 0].exp() > 0.5).sum() >= 10
    compared = lower = 0
    for n in range(4):
        exact_scores = dict(h[:2] for h in hypotheses(exact, n))
        for tokens, score, _ in hypotheses(skipped, n):
            assert tokens in exact_scores  # a peaked posterior: the same top hypotheses
            assert score <= exact_scores[tokens] + 1e-5
            compared += 1
            lower += score < exact_scores[tokens] - 1e-6
    assert compared == 16 and lower > 0  # some scores lost the alignments through skipped frames


def test_nan_and_inf_inputs_are_safe(device):
    lp = random_log_probs(6, 2, 5, seed=13)
    lp[2, 0, 3] = float("nan")
    lp[4, 0, 0] = float("nan")  # the blank: every prefix of the beam meets this one
    lp[:, 1, 2] = NEG_INF
    result = ctcx.beam_search(lp.to(device), beam_width=6, top_k=6)
    assert all(2 not in h[0] for h in hypotheses(result, 1))
    assert not torch.isnan(result.scores).any()
    # NaN counts as impossible: exactly the result of -inf in its place
    same = ctcx.beam_search(lp.nan_to_num(nan=NEG_INF).to(device), beam_width=6, top_k=6)
    for a, b in zip(result, same):
        assert torch.equal(a, b)


def test_deterministic_with_ties(device):
    lp = torch.full((8, 2, 5), math.log(0.2), dtype=torch.float32)  # every path equally likely
    a = ctcx.beam_search(lp.to(device), beam_width=16, top_k=16)
    b = ctcx.beam_search(lp.to(device), beam_width=16, top_k=16)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    # The pinned tie order (equal scores: the fixed candidate ids of
    # csrc/include/ctcx/ctc_decode.h, tokens by index), the same on every device.
    want = [[1, 2, 1], [1, 2, 3], [1, 2, 4], [1, 3, 1], [1, 2, 1, 2], [1, 2, 1, 3], [1, 2, 1, 4],
            [1, 2, 3, 1], [1, 2, 3, 2], [1, 2, 3, 4], [1, 2, 4, 1], [1, 2, 4, 2], [1, 2, 4, 3],
            [1, 3, 1, 2], [1, 3, 1, 3], [1, 3, 1, 4]]
    for n in range(2):
        assert [list(h[0]) for h in hypotheses(a, n)] == want


def test_greedy_agrees_with_beam_one_on_peaked_input(device):
    lp = random_log_probs(40, 6, 8, seed=14, scale=8.0)
    greedy = ctcx.greedy_decode(lp.to(device))
    beam = ctcx.beam_search(lp.to(device), beam_width=1)
    for n in range(6):
        assert list(hypotheses(beam, n)[0][0]) == greedy[n] == collapse(lp[:, n].argmax(-1).tolist())


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and ctcx built with its CUDA kernels")
@pytest.mark.parametrize("T,N,C,beam,dtype,kwargs", [
    (60, 8, 30, 16, torch.float32, {}),
    (40, 4, 1000, 64, torch.float32, {"min_length": 3, "max_length": 12}),
    (50, 5, 40, 10, torch.float16, {"blank_skip_threshold": 0.95, "blank": 39}),
    # float64: with 512 beams of 8192 tokens, float32 rounding could reorder
    # near-ties at the beam's edge (CPU and CUDA exp/log differ in the last bit)
    (20, 3, 8192, 512, torch.float64, {}),
])
def test_cpu_cuda_agree(T, N, C, beam, dtype, kwargs):
    lp = random_log_probs(T, N, C, seed=T + C, scale=4.0, dtype=dtype)
    lengths = torch.tensor([T] + [T - 3 * n for n in range(1, N)])
    cpu = ctcx.beam_search(lp, lengths, beam_width=beam, top_k=4, **kwargs)
    gpu = ctcx.beam_search(lp.cuda(), lengths.cuda(), beam_width=beam, top_k=4, **kwargs)
    assert torch.equal(cpu.tokens, gpu.tokens.cpu())
    assert torch.equal(cpu.lengths, gpu.lengths.cpu())
    assert torch.equal(cpu.timesteps, gpu.timesteps.cpu())
    torch.testing.assert_close(cpu.scores, gpu.scores.cpu(), rtol=0, atol=1e-4)


# ------------------------------------------------------------ strings, errors

def test_decode_strings():
    tokens = torch.tensor([[[3, 1, -1], [2, -1, -1]], [[-1, -1, -1], [1, 1, 2]]])
    lengths = torch.tensor([[2, 1], [0, 3]])
    assert ctcx.decode_strings(tokens, lengths, "abc") == [["ca", "b"], ["", "aab"]]
    # blank in the middle: classes 0, 1 | blank 2 | 3 -> symbols 0, 1, 2
    assert ctcx.decode_strings(torch.tensor([[0, 3, 1]]), torch.tensor([3]), ["p", "q", "r"], blank=2) == ["prq"]
    with pytest.raises(ValueError, match="token 2 has no symbol"):
        ctcx.decode_strings(torch.tensor([[2]]), torch.tensor([1]), "ab", blank=2)
    with pytest.raises(ValueError, match="lengths must have shape"):
        ctcx.decode_strings(tokens, torch.tensor([1, 2]), "abc")


@pytest.mark.parametrize("kwargs,match", [
    ({"log_probs": torch.zeros(5, 3)}, "log_probs must be a floating \\(T, N, C\\)"),
    ({"log_probs": torch.zeros(5, 2, 3, dtype=torch.long)}, "log_probs must be a floating \\(T, N, C\\)"),
    ({"blank": 3}, "blank = 3"),
    ({"blank": -1}, "blank = -1"),
    ({"input_lengths": [5]}, "input_lengths must hold N = 2 integers"),
    ({"input_lengths": [5, 6]}, "input_lengths must lie in \\[0, T = 5\\]"),
    ({"input_lengths": [-1, 2]}, "input_lengths must lie in \\[0, T = 5\\]"),
    ({"input_lengths": torch.tensor([1.0, 2.0])}, "input_lengths must hold N = 2 integers"),
    ({"beam_width": 0}, "beam_width = 0"),
    ({"beam_width": 1025}, "beam_width = 1025"),
    ({"beam_width": 2.5}, "beam_width must be an int"),
    ({"top_k": 0}, "top_k = 0"),
    ({"beam_width": 4, "top_k": 5}, "top_k = 5"),
    ({"min_length": -1}, "min_length = -1"),
    ({"max_length": "3"}, "max_length = '3'"),
    ({"min_length": 4, "max_length": 3}, "min_length = 4 exceeds max_length = 3"),
    ({"allowed_tokens": torch.ones(3)}, "allowed_tokens must be a bool tensor"),
    ({"allowed_tokens": torch.ones(4, dtype=torch.bool)}, "allowed_tokens must be a bool tensor of shape \\(C,\\) = \\(3,\\)"),
    ({"blank_skip_threshold": 0.0}, "blank_skip_threshold = 0.0"),
    ({"blank_skip_threshold": 1.5}, "blank_skip_threshold = 1.5"),
])
def test_bad_input(device, kwargs, match):
    args = {"log_probs": torch.zeros(5, 2, 3), **kwargs}
    args = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(ValueError, match=match) as err:
        ctcx.beam_search(**args)
    assert str(err.value).startswith("ctcx.beam_search: ")  # the function, then the argument by name


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(5, 2, 3), torch.tensor([5, 6]), 4, 1, 0, 0, 5, None, None), "input_lengths\\[1\\] = 6"),
    ((torch.zeros(5, 2, 3), torch.tensor([5, 5]), 2000, 1, 0, 0, 5, None, None), "beam_width = 2000"),
    ((torch.zeros(5, 2, 3), torch.tensor([5, 5]), 4, 1, 3, 0, 5, None, None), "blank = 3"),
    ((torch.zeros(5, 2, 3), torch.tensor([5, 5], dtype=torch.int32), 4, 1, 0, 0, 5, None, None),
     "input_lengths must be int64"),
    ((torch.zeros(5, 2, 3), torch.tensor([5, 5]), 4, 1, 0, 0, 5, torch.ones(2, dtype=torch.bool), None),
     "allowed_tokens must have shape"),
    ((torch.zeros(5, 2, 3), torch.tensor([5, 5]), 4, 1, 0, 0, 5, None, 2.0), "blank_skip_threshold"),
])
def test_op_checks_raw_calls(args, match):
    """Direct torch.ops calls are checked in C++ too (ValueError, not a crash)."""
    with pytest.raises(ValueError, match=match):
        torch.ops.ctcx.ctc_beam_search(*args)


def test_opcheck_and_compile(device):
    lp = random_log_probs(7, 3, 5, seed=15, dtype=torch.float32).to(device)
    lengths = torch.tensor([7, 4, 0], device=device)
    allowed = torch.tensor([True, True, False, True, True], device=device)
    for args in [(lp, lengths, 4, 2, 0, 0, 7, None, None), (lp, lengths, 3, 3, 1, 1, 4, allowed, 0.9)]:
        torch.library.opcheck(torch.ops.ctcx.ctc_beam_search.default, args)
    torch.library.opcheck(torch.ops.ctcx.ctc_greedy_decode.default, (lp, lengths, 0))

    def decode(x):
        return ctcx.beam_search(x, lengths, beam_width=4, top_k=2, max_length=5)

    compiled = torch.compile(decode, backend="aot_eager", fullgraph=True)
    for a, b in zip(compiled(lp), decode(lp)):
        assert torch.equal(a, b)


def test_beam_width_1024_is_exact(device):
    """The largest beam: every labelling of 4 frames over 6 tokens (1003 of
    them, more than a beam of 512 holds) stays in the beam, so all 1024 rows
    are the brute-force ranking, then padding."""
    lp = random_log_probs(4, 2, 7, seed=31, scale=1.0)
    result = ctcx.beam_search(lp.to(device), beam_width=1024, top_k=1024)
    for n in range(2):
        want = ctc_decode_brute_force(lp[:, n], 0, 0, None, None)
        assert len(want) == 1003
        assert_same_ranking([h[:2] for h in hypotheses(result, n)], want, 1e-9)
