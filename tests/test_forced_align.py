"""ctcx.forced_align and ctcx.merge_tokens against the Viterbi reference and brute force."""
import random
from pathlib import Path

import pytest
import torch

import ctcx
from ctcx._reference import collapse, forced_align_brute_force, forced_align_reference


def random_batch(T, N, C, S, seed, blank=0, integer=False):
    g = torch.Generator().manual_seed(seed)
    if integer:  # many exact ties
        lp = torch.randint(-3, 1, (T, N, C), generator=g).double()
    else:
        lp = torch.randn(T, N, C, generator=g, dtype=torch.float64).log_softmax(-1)
    labels = [c for c in range(C) if c != blank]
    rng = random.Random(seed)
    il = [rng.randint(0, T) for _ in range(N)]
    targets, tl = torch.full((N, S), blank, dtype=torch.long), []
    for n in range(N):
        # at most as many labels (and repeats) as the frames allow
        L = rng.randint(0, min(S, il[n]))
        row = [rng.choice(labels) for _ in range(L)]
        while L and len(row) + sum(a == b for a, b in zip(row, row[1:])) > il[n]:
            row.pop()
            L -= 1
        targets[n, :L] = torch.tensor(row, dtype=torch.long)
        tl.append(L)
    return lp, targets, il, tl


def check_against_reference(lp, targets, il, tl, blank, labels, scores):
    T, N, _ = lp.shape
    for n in range(N):
        path, best = forced_align_reference(lp[: il[n], n], targets[n, : tl[n]].tolist(), blank)
        assert labels[n, : il[n]].tolist() == path, (n, il[n], tl[n])
        assert labels[n, il[n]:].eq(blank).all() and scores[n, il[n]:].eq(0).all()
        got = scores[n, : il[n]].double()
        assert torch.equal(got, lp[torch.arange(il[n]), n, labels[n, : il[n]]].to(scores.dtype).double())
        assert abs(got.sum().item() - best) <= 1e-9 * max(1.0, abs(best))


@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("blank", [0, 2, 4])
def test_matches_the_viterbi_reference_path_for_path(integer, blank):
    """float64 input: the same path as the reference, tie rule included."""
    lp, targets, il, tl = random_batch(12, 24, 5, 5, seed=blank + 10 * integer, blank=blank, integer=integer)
    labels, scores = ctcx.forced_align(lp, targets, il, tl, blank=blank)
    assert labels.shape == (24, 12) and labels.dtype == torch.long and scores.dtype == torch.float64
    check_against_reference(lp, targets, il, tl, blank, labels, scores)


@pytest.mark.parametrize("seed", range(6))
def test_the_path_is_a_most_probable_alignment_by_brute_force(seed):
    rng = random.Random(seed)
    T, C = rng.randint(1, 6), rng.randint(2, 4)
    lp, targets, il, tl = random_batch(T, 6, C, 3, seed=seed, integer=seed % 2 == 1)
    labels, scores = ctcx.forced_align(lp, targets, il, tl)
    for n in range(6):
        target = targets[n, : tl[n]].tolist()
        paths = forced_align_brute_force(lp[: il[n], n], target)
        assert paths, "random_batch makes only alignable samples"
        path = labels[n, : il[n]].tolist()
        assert collapse(path) == target
        assert abs(scores[n].sum().item() - paths[0][1]) < 1e-9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_input_gives_a_valid_path_of_the_best_score(dtype):
    lp64, targets, il, tl = random_batch(20, 16, 7, 6, seed=3)
    lp = lp64.to(dtype)
    labels, scores = ctcx.forced_align(lp, targets, il, tl)
    assert scores.dtype == dtype
    for n in range(16):
        target = targets[n, : tl[n]].tolist()
        path = labels[n, : il[n]].tolist()
        assert collapse(path) == target
        _, best = forced_align_reference(lp[: il[n], n].double(), target)
        assert abs(scores[n].double().sum().item() - best) <= 1e-4 * max(1.0, abs(best))


def test_a_sample_does_not_depend_on_its_batch_padding_layout_or_threads():
    lp, targets, il, tl = random_batch(30, 9, 6, 8, seed=5, integer=True)
    labels, scores = ctcx.forced_align(lp, targets, il, tl)
    for n in range(9):
        alone = ctcx.forced_align(lp[: il[n], n:n + 1], targets[n:n + 1, : tl[n]])
        assert torch.equal(alone[0][0], labels[n, : il[n]]) and torch.equal(alone[1][0], scores[n, : il[n]])
    # batch_first, strided input, concatenated targets, tensor lengths, one thread
    nt = lp.transpose(0, 1).contiguous().transpose(0, 1)  # (T, N, C) view of an (N, T, C) tensor
    flat = torch.cat([targets[n, : tl[n]] for n in range(9)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        other = ctcx.forced_align(nt.transpose(0, 1), flat.int(), torch.tensor(il), torch.tensor(tl),
                                  batch_first=True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(other[0], labels) and torch.equal(other[1], scores)


def test_impossible_samples_raise_or_get_minus_infinity():
    lp = torch.randn(4, 3, 5).log_softmax(-1)
    targets = torch.tensor([[1, 2, 0], [1, 1, 1], [3, 0, 0]])
    tl = [2, 3, 1]  # sample 1: three equal labels need 5 frames
    with pytest.raises(ValueError, match=r"sample 1 cannot be aligned \(too few frames: 4 < 3 labels \+ 2 repeats\)"):
        ctcx.forced_align(lp, targets, None, tl)
    labels, scores = ctcx.forced_align(lp, targets, None, tl, allow_impossible=True)
    assert labels[1].eq(0).all() and scores[1].eq(float("-inf")).all()
    assert torch.isfinite(scores[0]).all() and collapse(labels[2].tolist()) == [3]
    # possible by length, impossible by probability
    lp[:, 2, 3] = float("-inf")
    with pytest.raises(ValueError, match=r"sample 1 cannot be aligned \(every alignment has probability 0\)"):
        ctcx.forced_align(lp[:, [0, 2]], targets[[0, 2]], None, [2, 1])


@pytest.mark.parametrize("star", [False, True])
def test_frames_exactly_at_the_minimum_force_the_one_path(star):
    """T = L + repeats: one valid path (the labels, one blank between equal
    neighbours), however improbable; one frame fewer cannot be aligned."""
    lp = torch.randn(6, 1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).log_softmax(-1)
    lp[:, 0, 0] = -50.0  # the blank is very unlikely: the path must still take it where it is forced
    labels, scores = ctcx.forced_align(lp, torch.tensor([[1, 1, 2, 2]]), star=star)  # 4 labels + 2 repeats
    assert labels[0].tolist() in ([1, 0, 1, 2, 0, 2], [1, 4, 1, 2, 4, 2])
    assert not star or labels[0].tolist() == [1, 4, 1, 2, 4, 2]  # the wildcard beats -50 here
    with pytest.raises(ValueError, match=r"sample 0 cannot be aligned \(too few frames: 5 < 4 labels \+ 2 repeats\)"):
        ctcx.forced_align(lp[:5], torch.tensor([[1, 1, 2, 2]]), star=star)
    labels, _ = ctcx.forced_align(lp, torch.tensor([[3, 1, 2]]), [3])  # no repeats: 3 frames suffice
    assert labels[0].tolist() == [3, 1, 2, 0, 0, 0]



    lp = torch.randn(5, 2, 4).log_softmax(-1)
    labels, scores = ctcx.forced_align(lp, torch.zeros(2, 0, dtype=torch.long))
    assert labels.eq(0).all() and torch.equal(scores, lp[:, :, 0].t())
    labels, scores = ctcx.forced_align(lp, torch.tensor([[1], [2]]), [0, 5], [0, 1])
    assert labels[0].eq(0).all() and scores[0].eq(0).all() and collapse(labels[1].tolist()) == [2]
    labels, scores = ctcx.forced_align(lp[:, :0], torch.zeros(0, 3, dtype=torch.long))
    assert labels.shape == (0, 5) and scores.shape == (0, 5)


@pytest.mark.parametrize("call, message", [
    (lambda lp: ctcx.forced_align(lp[0], torch.tensor([[1]])), r"log_probs must be a floating \(T, N, C\)"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1.0]] * 2)), "targets must hold integers"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1]] * 3)), r"targets must be \(N, S\) padded with N = 2"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([1, 2])), "concatenated .1-D. targets need target_lengths"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([1, 2]), None, [1, 2]), "sum to 3"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [2]]), None, [1, 2]), r"target_lengths\[1\] = 2 must lie in \[0, S = 1\]"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [0]])), r"targets\[1\]\[0\] = 0 must be a class in \[0, C = 4\) other than blank = 0"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [4]])), r"targets\[1\]\[0\] = 4 must be a class"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [1]]), [7, 1]), r"input_lengths must lie in \[0, T = 6\]"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [1]]), [-1, 1]), r"input_lengths must lie in \[0, T = 6\]"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [1]]), None, [-1, 1]), r"target_lengths\[0\] = -1 must lie in \[0, S = 1\]"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [-2]])), r"targets\[1\]\[0\] = -2 must be a class"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [1]]), blank=4), r"blank = 4 must be an int in \[0, C\)"),
    (lambda lp: ctcx.forced_align(lp, torch.tensor([[1], [1]]), None, "1"), "target_lengths must be a tensor, list or tuple"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    lp = torch.randn(6, 2, 4).log_softmax(-1)
    with pytest.raises(ValueError, match=message):
        call(lp)


def test_the_op_checks_memory_safety_itself():
    lp = torch.randn(6, 2, 4).log_softmax(-1)
    il, tl = torch.tensor([6, 6]), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"target_lengths\[1\] = 2 is out of range"):
        torch.ops.ctcx.ctc_forced_align(lp, torch.tensor([[1], [2]]), il, tl, 0)
    with pytest.raises(ValueError, match=r"targets\[0\]\[0\] = 9 must be a class"):
        torch.ops.ctcx.ctc_forced_align(lp, torch.tensor([[9, 1], [2, 1]]), il, tl, 0)
    with pytest.raises(ValueError, match=r"input_lengths\[0\] = 7 is out of range"):
        torch.ops.ctcx.ctc_forced_align(lp, torch.tensor([[1, 1], [2, 1]]), torch.tensor([7, 6]), tl, 0)


def test_opcheck():
    lp, targets, il, tl = random_batch(8, 4, 5, 3, seed=1)
    args = (lp.float(), targets, torch.tensor(il), torch.tensor(tl), 0)
    torch.library.opcheck(torch.ops.ctcx.ctc_forced_align.default, args)
    torch.library.opcheck(torch.ops.ctcx.ctc_forced_align.default, args + (-0.5,))


def test_merge_tokens_spans_scores_and_units():
    labels = torch.tensor([0, 3, 3, 0, 0, 3, 2, 2, 0])
    scores = torch.log(torch.tensor([0.9, 0.5, 0.7, 0.8, 0.8, 0.6, 0.2, 0.4, 1.0]))
    spans = ctcx.merge_tokens(labels, scores)
    assert [(s.token, s.start, s.end) for s in spans] == [(3, 1, 3), (3, 5, 6), (2, 6, 8)]
    assert [round(s.score, 6) for s in spans] == [0.6, 0.6, 0.3]
    assert spans[2].to_units(4) == ctcx.TokenSpan(2, 24, 32, spans[2].score)
    assert spans[0].to_units(0.02, offset=1.0).start == pytest.approx(1.02)
    batched = ctcx.merge_tokens(torch.stack([labels, labels.flip(0)]), torch.stack([scores, scores.flip(0)]), blank=0)
    assert batched[0] == spans and [s.token for s in batched[1]] == [2, 3, 3]
    assert ctcx.merge_tokens(torch.tensor([1, 1, 0]), torch.zeros(3), blank=1) == [ctcx.TokenSpan(0, 2, 3, 1.0)]
    with pytest.raises(ValueError, match="labels and scores must be tensors of one shape"):
        ctcx.merge_tokens(labels, scores[:-1])


def test_aligned_spans_cover_the_target_in_order():
    lp, targets, il, tl = random_batch(40, 8, 6, 10, seed=8)
    labels, scores = ctcx.forced_align(lp, targets, il, tl)
    for n, spans in enumerate(ctcx.merge_tokens(labels, scores)):
        assert [s.token for s in spans] == targets[n, : tl[n]].tolist()
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:])) and all(0 < s.score <= 1 for s in spans)


@pytest.mark.parametrize("integer", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("blank", [0, 2, 4])
def test_star_matches_the_viterbi_reference_path_for_path(integer, blank):
    """float64 with the wildcard: the reference's path (wildcard frames labelled C) and scores."""
    lp, targets, il, tl = random_batch(12, 24, 5, 5, seed=30 + blank + 10 * integer, blank=blank, integer=integer)
    penalty = -0.5 if integer else 0.0
    labels, scores = ctcx.forced_align(lp, targets, il, tl, blank=blank, star=True, star_penalty=penalty)
    used = 0
    for n in range(24):
        target = targets[n, : tl[n]].tolist()
        path, best = forced_align_reference(lp[: il[n], n], target, blank, star_penalty=penalty)
        assert labels[n, : il[n]].tolist() == path, (n, il[n], tl[n])
        assert labels[n, il[n]:].eq(blank).all() and scores[n, il[n]:].eq(0).all()
        used += path.count(5)
        assert abs(scores[n].sum().item() - best) <= 1e-9 * max(1.0, abs(best))
        assert collapse([blank if c == 5 else c for c in path], blank) == target
    assert used > 20, "the cases should use the wildcard"


@pytest.mark.parametrize("seed", range(4))
def test_star_path_is_a_most_probable_one_by_brute_force(seed):
    rng = random.Random(seed)
    T, C = rng.randint(1, 5), rng.randint(2, 4)
    lp, targets, il, tl = random_batch(T, 5, C, 2, seed=40 + seed, integer=seed % 2 == 1)
    labels, scores = ctcx.forced_align(lp, targets, il, tl, star=True, star_penalty=-0.3)
    for n in range(5):
        target = targets[n, : tl[n]].tolist()
        paths = forced_align_brute_force(lp[: il[n], n], target, star_penalty=-0.3)
        assert abs(scores[n].sum().item() - paths[0][1]) < 1e-9
        assert tuple(labels[n, : il[n]].tolist()) in {p for p, v in paths if abs(v - paths[0][1]) < 1e-12}


@pytest.mark.parametrize("star", [False, True], ids=["plain", "star"])
def test_a_thousand_random_small_cases_score_as_the_reference(star):
    """1,000 random small samples (T <= 8, C <= 5, L <= 3; half with integer
    log-probabilities, i.e. many ties): the path collapses to the target, its
    scores are the log-probabilities of its frames, and its log-probability
    is the reference's maximum; 150 of them also against brute force."""
    rng = random.Random(1000 + star)
    checked = brute = 0
    for case in range(20):  # 20 batches of 50 samples
        T, C, S = rng.randint(1, 8), rng.randint(2, 5), 3
        blank = rng.randrange(C)
        lp, targets, il, tl = random_batch(T, 50, C, S, seed=2000 + 2 * case + star, blank=blank,
                                           integer=case % 2 == 1)
        penalty = rng.choice([0.0, -0.5]) if star else None
        labels, scores = ctcx.forced_align(lp, targets, il, tl, blank=blank, star=star,
                                           star_penalty=penalty or 0.0)
        for n in range(50):
            target = targets[n, : tl[n]].tolist()
            path = labels[n, : il[n]].tolist()
            assert collapse([blank if c == C else c for c in path], blank) == target
            _, best = forced_align_reference(lp[: il[n], n], target, blank, star_penalty=penalty)
            assert abs(scores[n].sum().item() - best) <= 1e-9 * max(1.0, abs(best))
            if brute < 150 and il[n] <= 5 and C <= 4:
                paths = forced_align_brute_force(lp[: il[n], n], target, blank, star_penalty=penalty)
                assert abs(best - paths[0][1]) <= 1e-9 * max(1.0, abs(best))
                brute += 1
            checked += 1
    assert checked == 1000 and brute == 150


@pytest.mark.parametrize("star", [False, True], ids=["plain", "star"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_cpu_vector_code_gives_the_portable_codes_path_bit_for_bit(dtype, star, monkeypatch):
    """The CPU op has AVX-512 code for float32 accumulation (labels' values
    picked from the row by permutes up to 64 classes, gathered above) and
    portable code (CTCX_NO_AVX512=1, and every CPU without AVX-512): both
    give the same labels and scores, and the reference's path on integer
    log-probabilities (exact sums, many ties) or its score otherwise, across
    class counts around 16, 32 and 64 and targets across 16-state groups."""
    configs = [(3, 2, 6), (17, 16, 40), (32, 17, 50), (37, 31, 70), (64, 33, 80), (65, 20, 60), (100, 40, 90)]
    for k, (C, S, T) in enumerate(configs):
        for integer in (False, True):
            blank = [0, C - 1, C // 2][k % 3]
            lp, targets, il, tl = random_batch(T, 12, C, S, seed=300 + 2 * k + integer, blank=blank,
                                               integer=integer)
            x = lp.to(dtype)
            kwargs = dict(blank=blank, star=star, star_penalty=-0.5 if star else 0.0)
            monkeypatch.delenv("CTCX_NO_AVX512", raising=False)
            labels, scores = ctcx.forced_align(x, targets, il, tl, **kwargs)
            monkeypatch.setenv("CTCX_NO_AVX512", "1")
            labels_p, scores_p = ctcx.forced_align(x, targets, il, tl, **kwargs)
            assert torch.equal(labels, labels_p) and torch.equal(scores, scores_p), (C, S, T, integer)
            for n in range(12):
                target = targets[n, : tl[n]].tolist()
                path, best = forced_align_reference(x[: il[n], n].double(), target, blank,
                                                    star_penalty=-0.5 if star else None)
                if integer:
                    assert labels[n, : il[n]].tolist() == path, (C, S, T, n)
                else:
                    assert collapse([blank if c == C else c for c in labels[n, : il[n]].tolist()], blank) == target
                    # (a wildcard frame's score, its value plus the penalty, is rounded to dtype)
                    tol = 1e-4 if dtype == torch.float32 or not star else 1e-2
                    assert abs(scores[n].double().sum().item() - best) <= tol * max(1.0, abs(best)), (C, n)
    monkeypatch.delenv("CTCX_NO_AVX512", raising=False)


def test_star_candidates_with_nan_and_minus_inf_rank_the_same_on_both_cpu_paths(monkeypatch):
    """The wildcard's three best classes per frame (AVX-512 for float32 up to
    64 classes, else a scalar scan): NaN ranks first, -inf is never a
    candidate, ties go to the lower class; both paths give the same output."""
    g = torch.Generator().manual_seed(5)
    for C in (4, 16, 33, 64):
        x = torch.randint(-3, 1, (20, 6, C), generator=g).float()
        x[2, 0, 1] = float("nan")
        x[3, 1, :] = float("-inf")
        x[3, 1, 0] = 0.0
        x[5, 2, 2:] = float("-inf")
        targets = torch.randint(1, C, (6, 3), generator=g)
        monkeypatch.delenv("CTCX_NO_AVX512", raising=False)
        a = ctcx.forced_align(x, targets, star=True, allow_impossible=True)
        monkeypatch.setenv("CTCX_NO_AVX512", "1")
        b = ctcx.forced_align(x, targets, star=True, allow_impossible=True)
        monkeypatch.delenv("CTCX_NO_AVX512")
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), C


def spoken(frames, C=6, hit=-0.01, miss=-6.0, blank_miss=-3.0):
    """(T, 1, C) float64 log-probabilities of a model that reads class ``frames[t]``
    at frame t (blank 0), mostly blank elsewhere."""
    lp = torch.full((len(frames), 1, C), miss, dtype=torch.float64)
    lp[:, 0, 0] = blank_miss
    lp[torch.arange(len(frames)), 0, torch.tensor(frames)] = hit
    return lp


def test_star_keeps_the_transcribed_labels_where_they_are_when_one_is_missing():
    """Frames of a label the transcript leaves out go to the wildcard; without it
    the neighbouring labels are pulled off their frames. The labels of the
    target keep every frame the model gave them."""
    lp = spoken([0, 1, 1, 0, 0, 2, 2, 0, 0, 3, 3, 0])  # the model reads "1 2 3"
    transcript = torch.tensor([[1, 3]])  # "2" left out
    labels, scores = ctcx.forced_align(lp, transcript, star=True)
    assert labels[0].tolist() == [0, 1, 1, 0, 0, 6, 6, 0, 0, 3, 3, 0]
    spans = ctcx.merge_tokens(labels, scores)[0]
    assert [(s.token, s.start, s.end) for s in spans] == [(1, 1, 3), (6, 5, 7), (3, 9, 11)]
    assert scores[0, 5].item() == pytest.approx(-0.01)
    plain, _ = ctcx.forced_align(lp, transcript)
    assert 6 not in plain[0].tolist()
    # a penalty larger than the gain turns the wildcard down; -inf turns it off
    assert torch.equal(ctcx.forced_align(lp, transcript, star=True, star_penalty=-3.5)[0], plain)
    off = ctcx.forced_align(lp, transcript, star=True, star_penalty=float("-inf"))
    assert torch.equal(off[0], plain) and torch.equal(off[1], ctcx.forced_align(lp, transcript)[1])
    # a word missing at either end, and a repeat the wildcard separates
    lp = spoken([4, 4, 0, 1, 1, 0, 1, 0, 5, 5])
    labels, _ = ctcx.forced_align(lp, torch.tensor([[1, 1]]), star=True)
    assert labels[0].tolist() == [6, 6, 0, 1, 1, 0, 1, 0, 6, 6]
    # a label the model reads twice where the transcript has it once: the
    # wildcard does not take a neighbour's class
    lp = spoken([0, 1, 1, 0, 1, 1, 0, 2, 0])
    labels, _ = ctcx.forced_align(lp, torch.tensor([[1, 2]]), star=True)
    assert 6 not in labels[0].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_star_in_low_precision_scores_as_the_reference_on_upcast_input(dtype):
    lp64, targets, il, tl = random_batch(20, 16, 7, 6, seed=33)
    lp = lp64.to(dtype)
    labels, scores = ctcx.forced_align(lp, targets, il, tl, star=True, star_penalty=-0.5)
    for n in range(16):
        path = labels[n, : il[n]].tolist()
        assert collapse([0 if c == 7 else c for c in path]) == targets[n, : tl[n]].tolist()
        _, best = forced_align_reference(lp[: il[n], n].double(), targets[n, : tl[n]].tolist(), star_penalty=-0.5)
        assert abs(scores[n].double().sum().item() - best) <= 2e-3 * max(1.0, abs(best))


def test_star_with_few_classes_and_bad_arguments():
    labels, scores = ctcx.forced_align(torch.zeros(3, 1, 1), torch.zeros(1, 0, dtype=torch.long), star=True)
    assert labels.eq(0).all() and scores.eq(0).all()
    # C = 3: between labels 1 and 2 nothing is left for the wildcard
    lp = spoken([0, 1, 2, 2, 0], C=3)
    assert 3 not in ctcx.forced_align(lp, torch.tensor([[1, 2]]), star=True)[0][0].tolist()
    lp = torch.randn(6, 2, 4).log_softmax(-1)
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="star must be True or False"):
            ctcx.forced_align(lp, torch.tensor([[1], [2]]), star=bad)
    for bad in (float("nan"), float("inf"), "0", True):
        with pytest.raises(ValueError, match="star_penalty must be a real number"):
            ctcx.forced_align(lp, torch.tensor([[1], [2]]), star=True, star_penalty=bad)
    args = (lp, torch.tensor([[1], [2]]), torch.tensor([6, 6]), torch.tensor([1, 1]), 0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="star_penalty must be a real number below"):
            torch.ops.ctcx.ctc_forced_align(*args, bad)


@pytest.mark.skipif(not (torch.cuda.is_available() and ctcx.cuda_available()), reason="needs a GPU and ctcx's CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_gives_the_cpu_path_bit_for_bit(dtype):
    lp, targets, il, tl = random_batch(60, 33, 9, 12, seed=12, integer=dtype == torch.float64)
    lp = lp.to(dtype)
    cpu = ctcx.forced_align(lp, targets, il, tl, allow_impossible=True)
    gpu = ctcx.forced_align(lp.cuda(), targets.cuda(), il, tl, allow_impossible=True)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
    cpu = ctcx.forced_align(lp, targets, il, tl, allow_impossible=True, star=True, star_penalty=-0.5)
    gpu = ctcx.forced_align(lp.cuda(), targets.cuda(), il, tl, allow_impossible=True, star=True, star_penalty=-0.5)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])
    long_lp, long_targets, long_il, long_tl = random_batch(2000, 4, 40, 300, seed=13)
    cpu = ctcx.forced_align(long_lp.float(), long_targets, long_il, long_tl)
    gpu = ctcx.forced_align(long_lp.float().cuda(), long_targets.cuda(), long_il, long_tl)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), bytes."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def growth_of_peak_rss(call) -> int:
    """How far the peak resident set rises during call() (VmHWM reset to the current set first)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = peak_rss()
    call()
    return peak_rss() - before


def test_cpu_memory_stays_far_below_the_two_bit_bound():
    """The docstring's promise for (T, N, L) = (2000, 64, 300): per thread one
    sample's backpointers (228 KB), nothing per batch but the outputs
    (1.5 MB), against 19.2 MB for 2 bits per state of the whole batch. At 2
    threads the peak resident memory grows by less than half that bound
    (one byte per state would be 77 MB); the same measurement sees an
    allocation of the bound's size."""
    import os

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident set")
    if "ASAN_OPTIONS" in os.environ:
        pytest.skip("AddressSanitizer's allocator keeps freed memory: peak RSS says nothing about ctcx there")
    threads = torch.get_num_threads()
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(2000, 64, 40, generator=g).log_softmax(-1)
    targets = torch.randint(1, 40, (64, 300), generator=g)
    bound = 2 * 2000 * 64 * 601 / 8
    try:
        torch.set_num_threads(2)
        ctcx.forced_align(lp, targets)  # warm up: one-off allocations of the library and the thread pool
        grown = growth_of_peak_rss(lambda: ctcx.forced_align(lp, targets))
    finally:
        torch.set_num_threads(threads)
    assert grown < bound / 2, f"peak RSS grew {grown / 1e6:.1f} MB, bound {bound / 1e6:.1f} MB"
    def touch_fresh_pages():  # new anonymous pages, which no allocator cache can serve
        import mmap
        with mmap.mmap(-1, int(bound)) as m:
            m.write(b"\1" * int(bound))

    assert growth_of_peak_rss(touch_fresh_pages) > bound / 2
