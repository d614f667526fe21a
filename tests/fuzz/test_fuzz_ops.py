"""Generated cases for every public op (hypothesis): each either matches its
reference (float64 native CTC for the loss, brute-force enumeration or the
Viterbi reference for decoding and alignment) within a stated tolerance, or
raises a ValueError naming the argument. Shapes down to 0 and 1, every
dtype, both layouts, padded and concatenated targets, strided views, blank
anywhere, extreme and non-normalised values, lengths at their limits.

The "ci" profile (tests/conftest.py) runs 60 cases per test, the same on every
run; ``--hypothesis-profile=long`` runs 10,000 new ones per test.
"""
from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is pinned in requirements-dev.txt")
from hypothesis import given, strategies as st  # noqa: E402

import ctcx  # noqa: E402
from ctcx._reference import (collapse, ctc_decode_brute_force, forced_align_reference,  # noqa: E402
                             NEG_INF)

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float64: 1e-9, torch.float32: 2e-4, torch.float16: 3e-2, torch.bfloat16: 1e-1}


@st.composite
def ctc_inputs(draw, max_T=10, max_N=4, max_C=6, max_S=5, normalised=True, dtypes=DTYPES):
    """log_probs (T, N, C) (possibly a strided view), targets padded or 1-D, lengths, blank."""
    T = draw(st.integers(0, max_T))
    N = draw(st.integers(1, max_N))
    C = draw(st.integers(1, max_C))
    blank = draw(st.integers(0, C - 1))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale
    if normalised:
        x = x.log_softmax(-1)
    if draw(st.booleans()) and T and C > 1:  # a class that never occurs
        x[:, :, draw(st.integers(0, C - 1))] = -math.inf
        if normalised:
            x = torch.where(torch.isinf(x).all(-1, keepdim=True), torch.zeros_like(x), x)
    layout = draw(st.sampled_from(["contiguous", "batch_first_storage", "padded_classes", "expanded_batch",
                                   "strided_classes"]))
    x = x.to(dtype)
    if layout == "batch_first_storage":
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    elif layout == "padded_classes":
        x = torch.cat([x, torch.zeros(T, N, 3, dtype=dtype)], -1)[..., :C]
    elif layout == "expanded_batch":  # one sample's values seen N times (batch stride 0)
        x = x[:, :1].expand(T, N, C)
    elif layout == "strided_classes":  # classes two elements apart (class stride 2)
        wide = torch.full((T, N, 2 * C), 7.0, dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    labels = [c for c in range(C) if c != blank]
    il = [draw(st.integers(0, T)) for _ in range(N)]
    S = draw(st.integers(0, max_S)) if labels else 0
    tl = [draw(st.integers(0, S)) for _ in range(N)]
    targets = torch.full((N, S), blank if blank else C - 1 if C > 1 else 0, dtype=torch.long)
    for n in range(N):
        for i in range(tl[n]):
            targets[n, i] = draw(st.sampled_from(labels))
    concatenated = draw(st.booleans())
    if concatenated:
        targets = torch.cat([targets[n, : tl[n]] for n in range(N)]) if N else targets.flatten()
    as_tensor = draw(st.booleans())
    lengths = (torch.tensor(il), torch.tensor(tl)) if as_tensor else (il, tl)
    return x, targets, lengths[0], lengths[1], blank, il, tl


def target_of(targets, tl, n):
    if targets.dim() == 1:
        start = sum(tl[:n])
        return targets[start:start + tl[n]].tolist()
    return targets[n, : tl[n]].tolist()


def native_losses(x, targets, tl_list, il_list, blank, reduction, zero_infinity):
    """torch's own CTC in float64, sample by sample (it refuses T = 0: there
    the loss is 0 for an empty target, +inf otherwise), reduced as it reduces."""
    nll = []  # differentiable where x requires grad
    for n in range(x.shape[1]):
        target = torch.tensor(target_of(targets, tl_list, n), dtype=torch.long)
        if il_list[n] == 0 or x.shape[0] == 0:
            nll.append(torch.tensor(0.0 if not len(target) else math.inf, dtype=torch.float64))
            continue
        nll.append(torch.nn.functional.ctc_loss(x[: il_list[n], n:n + 1].double(), target[None], [il_list[n]],
                                                [len(target)], blank=blank, reduction="sum",
                                                zero_infinity=zero_infinity))
    nll = torch.stack(nll) if nll else torch.zeros(0, dtype=torch.float64)
    if zero_infinity:
        nll = torch.where(torch.isinf(nll), torch.zeros((), dtype=nll.dtype), nll)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / torch.tensor(tl_list, dtype=torch.float64).clamp(min=1)).mean()


@given(ctc_inputs(), st.sampled_from(["none", "sum", "mean"]), st.booleans())
def test_ctc_loss_matches_native_ctc_in_float64(case, reduction, zero_infinity):
    x, targets, il, tl, blank, il_list, tl_list = case
    got = ctcx.ctc_loss(x, targets, il, tl, blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    want = native_losses(x, targets, tl_list, il_list, blank, reduction, zero_infinity)
    tol = TOL[x.dtype]
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * 10, equal_nan=True)


@given(ctc_inputs(max_T=8, max_C=5, dtypes=[torch.float64, torch.float32]))
def test_ctc_loss_gradient_is_the_true_gradient(case):
    """ctcx's convention: d loss / d log_probs = -(posterior occupancy); native
    returns exp(log_probs) - posterior, so on the valid frames of a sample
    with a finite loss the two differ by exp(log_probs) (sum reduction); zero
    elsewhere (padding frames, and with zero_infinity impossible samples)."""
    x, targets, il, tl, blank, il_list, tl_list = case
    x = x.detach().clone().requires_grad_()
    ctcx.ctc_loss(x, targets, il, tl, blank=blank, reduction="sum", zero_infinity=True).backward()
    for n in range(x.shape[1]):
        frames, target = il_list[n], torch.tensor(target_of(targets, tl_list, n), dtype=torch.long)
        want = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64)
        if frames:
            ref = x.detach()[:frames, n:n + 1].double().requires_grad_()
            loss = torch.nn.functional.ctc_loss(ref, target[None], [frames], [len(target)], blank=blank,
                                                reduction="sum")
            if math.isfinite(loss.item()):
                loss.backward()
                want[:frames] = ref.grad[:, 0] - ref.detach()[:, 0].exp()
                # native's gradient is NaN at a log-probability of -inf; the true one
                # (no occupancy of a class that cannot occur) is 0
                want[:frames] = torch.where(torch.isinf(ref.detach()[:, 0]), 0.0, want[:frames])
        tol = 1e-9 if x.dtype == torch.float64 else 1e-4
        torch.testing.assert_close(x.grad[:, n].double(), want, rtol=tol, atol=tol)


@given(ctc_inputs(max_T=5, max_N=2, max_C=3, max_S=0, dtypes=[torch.float64, torch.float32]),
       st.integers(1, 3))
def test_beam_search_with_a_full_beam_is_exact(case, top_k):
    """A beam that holds every prefix (here 256 > every labelling of 5 frames
    over 3 classes) returns the top labellings of brute-force enumeration."""
    x, _, il, _, blank, il_list, _ = case
    result = ctcx.beam_search(x, il, beam_width=256, top_k=top_k, blank=blank)
    for n in range(x.shape[1]):
        want = ctc_decode_brute_force(x[: il_list[n], n].double(), blank)
        best = want[0][1] if want else NEG_INF
        got = result.scores[n, 0].item()
        if best == NEG_INF:
            assert got == NEG_INF
            continue
        assert abs(got - best) <= TOL[x.dtype] * max(1.0, abs(best))
        length = int(result.lengths[n, 0])
        tokens = tuple(result.tokens[n, 0, :length].tolist())
        probability = dict(want).get(tokens, NEG_INF)
        assert abs(probability - best) <= TOL[x.dtype] * max(1.0, abs(best))


@given(ctc_inputs(max_S=0))
def test_greedy_decode_collapses_the_best_path(case):
    x, _, il, _, blank, il_list, _ = case
    if x.dtype in (torch.float16, torch.bfloat16) and x.shape[0]:
        x = x.double().to(x.dtype)
    got = ctcx.greedy_decode(x, il, blank=blank)
    for n in range(x.shape[1]):
        row = x[: il_list[n], n].double()
        best = row.max(-1).values if len(row) else row.sum(-1)
        path = got[n]
        # the decoding is the collapse of some path that takes a best class at every frame
        assert len(path) <= il_list[n]
        firsts = [int((r == b).nonzero()[0]) for r, b in zip(row, best)] if len(row) else []
        if all(int((r == b).sum()) == 1 for r, b in zip(row, best)):  # no tie: one best path
            assert path == collapse(firsts, blank)


@given(ctc_inputs(max_T=8, max_C=5, max_S=4), st.booleans(), st.sampled_from([0.0, -0.5]), st.booleans())
def test_forced_align_scores_as_the_viterbi_reference_or_refuses(case, star, penalty, batch_first):
    x, targets, il, tl, blank, il_list, tl_list = case
    C = x.shape[-1]
    view = x.transpose(0, 1) if batch_first else x
    try:
        labels, scores = ctcx.forced_align(view, targets, il, tl, blank=blank, batch_first=batch_first, star=star,
                                           star_penalty=penalty)
    except ValueError as err:
        assert "cannot be aligned" in str(err)
        n = int(str(err).split("sample ")[1].split(" ")[0])
        _, best = forced_align_reference(x[: il_list[n], n].double(), target_of(targets, tl_list, n), blank,
                                         star_penalty=penalty if star else None)
        assert best == NEG_INF or math.isnan(best)
        return
    for n in range(x.shape[1]):
        target = target_of(targets, tl_list, n)
        path = labels[n, : il_list[n]].tolist()
        assert collapse([blank if c == C else c for c in path], blank) == target
        assert labels[n, il_list[n]:].eq(blank).all()
        _, best = forced_align_reference(x[: il_list[n], n].double(), target, blank,
                                         star_penalty=penalty if star else None)
        total = scores[n, : il_list[n]].double().sum().item()
        assert abs(total - best) <= TOL[x.dtype] * max(1.0, abs(best)) * max(1, il_list[n])


@given(st.sampled_from(["T", "C", "blank", "lengths", "targets", "dtype"]), st.integers(0, 2**31 - 1))
def test_bad_arguments_raise_value_errors_naming_them(what, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 2, 4, generator=g).log_softmax(-1)
    targets, il, tl = torch.tensor([[1, 2], [3, 1]]), [6, 6], [2, 2]
    kwargs = {}
    if what == "T":
        x = x[0]
    elif what == "C":
        x = x[..., :0]
    elif what == "blank":
        kwargs["blank"] = 4 + seed % 3
    elif what == "lengths":
        il = [7, 6] if seed % 2 else [-1, 6]
    elif what == "targets":
        targets = torch.tensor([[1, 4], [3, 1]]) if seed % 2 else torch.tensor([[1, 2.0], [3, 1]])
    else:
        x = x.to(torch.int64)
    for call in (lambda: ctcx.ctc_loss(x, targets, il, tl, **kwargs),
                 lambda: ctcx.forced_align(x, targets, il, tl, **kwargs)):
        with pytest.raises((ValueError, TypeError)):
            call()
    if what not in ("targets",):
        for call in (lambda: ctcx.greedy_decode(x, il, **kwargs), lambda: ctcx.beam_search(x, il, **kwargs)):
            with pytest.raises((ValueError, TypeError)):
                call()


@given(ctc_inputs(max_T=8, max_C=5, normalised=False, dtypes=[torch.float64, torch.float32]),
       st.sampled_from(["none", "sum", "mean"]))
def test_ctc_loss_with_logits_and_its_gradient_match_native_on_log_softmax(case, reduction):
    """From raw logits: the loss of log_softmax(logits), and d loss / d logits
    equal to torch's own CTC on log_softmax(logits) (float64), zero_infinity
    on; the modules give the same as the functions."""
    x, targets, il, tl, blank, il_list, tl_list = case
    if not torch.isfinite(x).all():
        x = torch.where(torch.isfinite(x), x, torch.full_like(x, -30.0))  # logits are finite
    logits = x.detach().clone().requires_grad_()
    got = ctcx.ctc_loss_with_logits(logits, targets, il, tl, blank=blank, reduction=reduction, zero_infinity=True)
    module = ctcx.CTCLossWithLogits(blank=blank, reduction=reduction, zero_infinity=True)(logits.detach(), targets,
                                                                                           il, tl)
    ref = x.detach().double().clone().requires_grad_()
    want = native_losses(ref.log_softmax(-1), targets, tl_list, il_list, blank, reduction, True)
    tol = TOL[x.dtype]
    torch.testing.assert_close(got.double(), want.detach(), rtol=tol, atol=tol * 10)
    torch.testing.assert_close(module, got, rtol=0, atol=0)
    if want.requires_grad:
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(logits.grad.double(), ref.grad, rtol=1e-4, atol=1e-4 if tol > 1e-9 else 1e-9)


@given(ctc_inputs(max_T=5, max_N=2, max_C=4, max_S=0, dtypes=[torch.float64]), st.integers(0, 3),
       st.one_of(st.none(), st.integers(0, 4)), st.booleans())
def test_beam_search_constraints_match_brute_force(case, min_length, max_length, restrict):
    """min_length, max_length and allowed_tokens with a full beam: the best
    labelling that satisfies them, as brute force finds it."""
    x, _, il, _, blank, il_list, _ = case
    C = x.shape[-1]
    allowed = torch.tensor([c % 2 == 0 or c == blank for c in range(C)]) if restrict else None
    if max_length is not None and max_length < min_length:
        with pytest.raises(ValueError):
            ctcx.beam_search(x, il, beam_width=512, blank=blank, min_length=min_length, max_length=max_length)
        return
    result = ctcx.beam_search(x, il, beam_width=512, top_k=1, blank=blank, min_length=min_length,
                              max_length=max_length, allowed_tokens=allowed)
    for n in range(x.shape[1]):
        want = ctc_decode_brute_force(x[: il_list[n], n], blank, min_length, max_length, allowed)
        got = result.scores[n, 0].item()
        if not want:
            assert got == NEG_INF
            continue
        assert abs(got - want[0][1]) <= 1e-9 * max(1.0, abs(want[0][1]))
        length = int(result.lengths[n, 0])
        tokens = tuple(result.tokens[n, 0, :length].tolist())
        assert abs(dict(want).get(tokens, NEG_INF) - want[0][1]) <= 1e-9 * max(1.0, abs(want[0][1]))


@given(ctc_inputs(max_T=12, max_N=5, max_C=6, max_S=5, dtypes=[torch.float32, torch.float64]), st.booleans())
def test_one_and_two_threads_give_the_same_answers(case, star):
    """Decoding and alignment do not depend on the thread count, bit for bit;
    the loss agrees to rounding."""
    x, targets, il, tl, blank, il_list, tl_list = case
    threads = torch.get_num_threads()
    out = []
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            align = ctcx.forced_align(x, targets, il, tl, blank=blank, allow_impossible=True, star=star)
            out.append((ctcx.greedy_decode(x, il, blank=blank), ctcx.beam_search(x, il, beam_width=4, blank=blank),
                        align, ctcx.ctc_loss(x, targets, il, tl, blank=blank, reduction="none")))
    finally:
        torch.set_num_threads(threads)
    (g1, b1, a1, l1), (g2, b2, a2, l2) = out
    assert g1 == g2
    assert all(torch.equal(p, q) for p, q in zip(b1, b2))
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-6)


def restricted_brute_force(x, blank, threshold):
    """{labelling: log-probability} summed over the alignments that a beam search
    with blank_skip_threshold scores: on a frame whose blank probability exceeds
    the threshold, an alignment may emit only the blank or repeat the previous
    frame's label (no prefix is extended there)."""
    import itertools

    T, C = x.shape
    skip = [math.exp(float(x[t, blank])) > threshold for t in range(T)]
    sums = {}
    for path in itertools.product(range(C), repeat=T):
        if any(skip[t] and path[t] != blank and (t == 0 or path[t - 1] != path[t]) for t in range(T)):
            continue
        score = sum(float(x[t, c]) for t, c in enumerate(path))
        key = tuple(collapse(list(path), blank))
        low, high = sorted((sums.get(key, NEG_INF), score))
        sums[key] = high if low == NEG_INF else high + math.log1p(math.exp(low - high))
    return sums


@given(ctc_inputs(max_T=5, max_N=2, max_C=4, max_S=0, dtypes=[torch.float64]),
       st.sampled_from([0.05, 0.3, 0.5, 0.7, 0.95, 1.0]))
def test_beam_search_blank_skipping_matches_brute_force_over_the_frames_it_keeps(case, threshold):
    """blank_skip_threshold with a full beam: the best labelling and its score
    over the alignments the option keeps (blank or a repeat on frames whose
    blank probability exceeds the threshold), as enumeration finds them."""
    x, _, il, _, blank, il_list, _ = case
    if x.shape[-1] < 2:  # a lone blank class: nothing to decode
        return
    result = ctcx.beam_search(x, il, beam_width=512, top_k=1, blank=blank, blank_skip_threshold=threshold)
    for n in range(x.shape[1]):
        sums = restricted_brute_force(x[: il_list[n], n], blank, threshold)
        got = result.scores[n, 0].item()
        if not sums or max(sums.values()) == NEG_INF:
            assert got == NEG_INF
            continue
        best = max(sums.values())
        assert abs(got - best) <= 1e-9 * max(1.0, abs(best)), (got, best)
        tokens = tuple(result.tokens[n, 0, : int(result.lengths[n, 0])].tolist())
        assert abs(sums.get(tokens, NEG_INF) - best) <= 1e-9 * max(1.0, abs(best))


def _fewer(divisor):
    """A large-case test runs a tenth as many examples as the profile gives the others."""
    from hypothesis import settings

    return settings(max_examples=max(4, settings.default.max_examples // divisor))


@_fewer(10)
@given(ctc_inputs(max_T=300, max_N=8, max_C=80, max_S=80, dtypes=[torch.float64, torch.float32]))
def test_large_cases_match_native_ctc_and_the_viterbi_reference(case):
    """Sizes up to T = 300, C = 80, 80 labels (multi-group AVX-512 rows, the
    permute and gather paths, long loss recursions): the loss against torch's
    float64 CTC per sample, the alignment's path score against the reference."""
    x, targets, il, tl, blank, il_list, tl_list = case
    got = ctcx.ctc_loss(x, targets, il, tl, blank=blank, reduction="none")
    want = native_losses(x, targets, tl_list, il_list, blank, "none", False)
    tol = 1e-9 if x.dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol * 10)
    labels, scores = ctcx.forced_align(x, targets, il, tl, blank=blank, allow_impossible=True)
    for n in range(x.shape[1]):
        _, best = forced_align_reference(x[: il_list[n], n], target_of(targets, tl_list, n), blank)
        score = scores[n].double().sum().item()
        if best == NEG_INF:
            assert scores[n, : il_list[n]].eq(-math.inf).all() or il_list[n] == 0
            continue
        assert abs(score - best) <= tol * max(1.0, abs(best)) * 10, (n, score, best)
