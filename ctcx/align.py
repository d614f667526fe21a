"""CTC forced alignment: where each label of a known transcript sits in the frames.

:func:`forced_align` finds, for a whole batch in one call, the single most
probable CTC alignment of each sample's target (the Viterbi recursion: Graves
et al. 2006's forward recursion with max in place of sum), on the CPU (C++,
parallel over the batch) or CUDA. :func:`merge_tokens` turns a frame-level
alignment into token spans, and :meth:`TokenSpan.to_units` converts frames
to seconds or pixels.

From torchaudio: ``torchaudio.functional.forced_align(emission, targets,
input_lengths, target_lengths, blank)`` with ``emission`` of shape (1, T, C)
is ``ctcx.forced_align(emission, targets, input_lengths, target_lengths,
blank, batch_first=True)``, with the same (1, T) outputs; ctcx takes N > 1
as well, padded or concatenated targets, and lengths as lists. Where the
best alignment is unique both return it; where several tie, ctcx returns
one of them by the rule below (torchaudio may return a worse one,
pytorch/audio#4221). ``torchaudio.functional.merge_tokens`` is
:func:`merge_tokens`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple, Union

import torch

from . import ops
from .decode import _decode_inputs, _integer_lengths

__all__ = ["forced_align", "merge_tokens", "TokenSpan"]

Lengths = Union[torch.Tensor, Sequence[int], None]
_FN = "ctcx.forced_align"


def _targets_padded(targets, target_lengths: Lengths, N: int, C: int, blank: int,
                    device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N, S) int64 padded targets and (N,) int64 lengths on ``device``; ValueError naming the argument."""
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"{_FN}: targets must be a tensor (N, S) padded or 1-D concatenated, "
                         f"got {type(targets).__name__}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"{_FN}: targets must hold integers, got dtype {targets.dtype}")
    if targets.dim() not in (1, 2) or (targets.dim() == 2 and targets.shape[0] != N):
        raise ValueError(f"{_FN}: targets must be (N, S) padded with N = {N}, or 1-D concatenated, "
                         f"got shape {tuple(targets.shape)}")
    if target_lengths is None:
        if targets.dim() == 1:
            raise ValueError(f"{_FN}: concatenated (1-D) targets need target_lengths")
        lengths = torch.full((N,), targets.shape[1], dtype=torch.long)
    else:
        lengths = _integer_lengths(_FN, "target_lengths", target_lengths, N)
    lengths = lengths.to(dtype=torch.long)
    targets = targets.to(dtype=torch.long)
    lengths_host = lengths.cpu()
    if targets.dim() == 1:
        if bool((lengths_host < 0).any()) or int(lengths_host.sum()) != targets.numel():
            raise ValueError(f"{_FN}: concatenated targets hold {targets.numel()} labels but target_lengths "
                             f"{lengths_host.tolist()} (each >= 0) sum to {int(lengths_host.sum())}")
        width = int(lengths_host.max()) if N else 0
        padded = torch.full((N, width), blank, dtype=torch.long, device=targets.device)
        if targets.numel():
            rows = torch.repeat_interleave(torch.arange(N, device=targets.device), lengths.to(targets.device))
            starts = torch.cumsum(lengths.to(targets.device), 0) - lengths.to(targets.device)
            cols = torch.arange(targets.numel(), device=targets.device) - starts[rows]
            padded[rows, cols] = targets
        targets = padded
    S = targets.shape[1]
    bad = (lengths_host < 0) | (lengths_host > S)
    if bool(bad.any()):
        n = int(bad.nonzero()[0])
        raise ValueError(f"{_FN}: target_lengths[{n}] = {int(lengths_host[n])} must lie in [0, S = {S}]")
    used = torch.arange(S, device=targets.device) < lengths.to(targets.device)[:, None]
    wrong = used & ((targets < 0) | (targets >= C) | (targets == blank))
    if bool(wrong.any()):
        n, i = (int(v) for v in wrong.nonzero()[0])
        raise ValueError(f"{_FN}: targets[{n}][{i}] = {int(targets[n, i])} must be a class in [0, C = {C}) "
                         f"other than blank = {blank}")
    return targets.to(device).contiguous(), lengths.to(device)


def _star_candidates(lp: torch.Tensor, penalty: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The wildcard's candidates as the CUDA glue makes them (csrc/cuda/forced_align_cuda.cpp;
    for the CUDA emulation tests): each frame's min(4, C) best classes, values
    (T, N, K) in the op math type plus ``penalty`` and classes (T, N, K) int64."""
    acc = torch.float64 if lp.dtype == torch.float64 else torch.float32
    values, classes = lp.topk(min(4, lp.shape[-1]), dim=-1)
    return (values.to(acc) + penalty).contiguous(), classes.contiguous()


def forced_align(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths = None,
                 target_lengths: Lengths = None, blank: int = 0, *, batch_first: bool = False,
                 allow_impossible: bool = False, star: bool = False,
                 star_penalty: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The most probable CTC alignment of each sample's target (Viterbi).

    For every sample, among all frame-level paths that collapse to its target
    (CTC's many-to-one map: merge repeats, drop blanks; Graves et al. 2006),
    the one with the largest sum of per-frame log-probabilities, found by the
    forward recursion with max in place of sum and traced back through 2-bit
    backpointers. Exact: no pruning, no beam. One batched C++ op on the CPU
    (parallel over the batch) or CUDA kernels on the GPU.

    Ties: where predecessors score the same, the one that advanced least wins
    (staying in a state, then moving one state, then skipping a blank); at
    the last frame, ending on a blank wins over ending on the last label.
    Traced back from the end, that keeps the path in each state as long as a
    tie allows, so of tied paths the one that reaches every state earliest
    is returned (frames "a - -" rather than "- a -" or "- - a" for target
    [a] over three equal frames). The rule is the same on every device, for
    every batch composition and thread count. Scores accumulate in float32
    (float64 for float64 input), one addition per frame in frame order. A NaN
    log-probability loses every comparison, so a path avoids it where it can.

    Memory: the CPU keeps, per sample in progress (one per thread), its
    backpointers, ``input_length * 6 * ceil((L + 1) / 16)`` bytes (three
    16-bit words per frame for each 16 blank and 16 label states: 1.5 bits
    per frame and extended-label state, rounded up to whole groups), and two
    rows of 2 L + 1 scores; for (T, N, L) = (2000, 64, 300) that is 228 KB
    per thread, against the bound
    of 2 bits for all N T (2 L + 1) states of 19.2 MB. CUDA aligns all
    samples at once: a workspace of two bit planes of ceil((2 S + 1) / 32)
    32-bit words per frame and sample, plus two rows of 2 S + 1 scores per
    sample, 19.5 MB + 0.3 MB for the same call (S = L = 300). No (T, N, C)
    intermediate. The outputs are (N, T) int64 and (N, T) of log_probs' dtype;
    on CUDA ``star=True`` adds each frame's four best classes, (T, N, 4)
    values and ids (12 or 16 bytes per candidate).

    Wildcard (``star=True``; the idea of the ``<star>`` token of
    torchaudio's MMS alignment tutorial and of ctc-forced-aligner, here
    optional in every gap): for a transcript that misses something said or
    written, e.g. a word left out. Any stretch of frames between two labels
    of the target (and before the first, after the last) may then be spent
    on a wildcard, labelled ``C`` (one past the last class) in ``labels``,
    which scores at each frame the log-probability of the frame's most
    probable class that is neither the blank nor a target label on either
    side of that gap, plus ``star_penalty``: the model's best reading of
    something the transcript does not hold there. The blank states of the
    recursion score the larger of the blank's and the wildcard's
    log-probability (the blank's on a tie), so the wildcard takes the frames
    where the model reads such a label more clearly than silence, and the
    labels of the target keep their own frames (the neighbours are excluded
    so that the wildcard never competes with a label's own frames). A
    negative ``star_penalty`` makes the wildcard more reluctant (``-inf``
    turns it off). A wildcard frame between two equal labels separates them
    as a blank does. :func:`merge_tokens` returns the wildcard's stretches as
    spans of token ``C``. The path is exact under this scoring (the Viterbi
    recursion over the same states) and the tie rule below holds.

    Args:
        log_probs: (T, N, C) log-probabilities, or (N, T, C) with
            ``batch_first=True``; float16, bfloat16, float32 or float64, CPU
            or CUDA, any strides (a copy only when classes are not contiguous).
        targets: the transcripts, (N, S) padded (padding ignored) or the N
            targets concatenated (1-D, with ``target_lengths``); integer
            labels in [0, C), none equal to ``blank``.
        input_lengths: (N,) valid frames per sample, each in [0, T]; None = T.
        target_lengths: (N,) labels per sample (<= S when padded); None = S
            for padded targets.
        blank: the blank class, in [0, C).
        batch_first: log_probs is (N, T, C).
        allow_impossible: instead of raising for a sample with no alignment
            of finite log-probability, return its row with blank labels and
            ``-inf`` scores on its valid frames.
        star: allow a wildcard in every gap of the target (see above).
        star_penalty: added to the wildcard's score at every frame it takes
            (a log-probability, a float; <= 0 is the useful range).

    Returns:
        ``(labels, scores)``: labels (N, T) int64, the class emitted at each
        frame (blank, a target label, or ``C`` for the wildcard; blank past
        ``input_lengths``);
        scores (N, T) of log_probs' dtype, the log-probability of that class
        at that frame (0 past ``input_lengths``), so ``scores.sum(1)`` is the
        path's log-probability.

    Raises:
        ValueError: naming the argument, for a wrong type, dtype, shape or
            value; and, unless ``allow_impossible``, naming the sample, when a
            target cannot be aligned: too few frames for its labels and the
            blanks its repeats need (``input_length < L + repeats``), every
            alignment of probability 0, or NaN on its best path. On CUDA the
            value checks and this one read the device (one host sync).
    """
    if not isinstance(star, bool):
        raise ValueError(f"{_FN}: star must be True or False, got {star!r}")
    if (isinstance(star_penalty, bool) or not isinstance(star_penalty, (int, float))
            or math.isnan(star_penalty) or star_penalty == math.inf):
        raise ValueError(f"{_FN}: star_penalty must be a real number below +inf (a log-probability), "
                         f"got {star_penalty!r}")
    lp, il = _decode_inputs(_FN, log_probs, input_lengths, blank, batch_first)
    T, N, C = lp.shape
    tg, tl = _targets_padded(targets, target_lengths, N, C, blank, lp.device)
    labels, scores, path = torch.ops.ctcx.ctc_forced_align(lp, tg, il, tl, blank,
                                                           float(star_penalty) if star else None)
    bad = ~torch.isfinite(path)
    if N and bool(bad.any()):
        if allow_impossible:
            frames = torch.arange(T, device=lp.device) < il[:, None]
            scores = scores.masked_fill(bad[:, None] & frames, float("-inf"))
        else:
            n = int(bad.nonzero()[0])
            L = int(tl[n])
            repeats = int((tg[n, 1:L] == tg[n, :L - 1]).sum()) if L > 1 else 0
            why = ("NaN on its best path" if bool(torch.isnan(path[n])) else
                   f"too few frames: {int(il[n])} < {L} labels + {repeats} repeats"
                   if int(il[n]) < L + repeats else "every alignment has probability 0")
            raise ValueError(f"{_FN}: sample {n} cannot be aligned ({why}); pass allow_impossible=True "
                             f"to get -inf scores for such samples instead")
    return labels, scores


@dataclass(frozen=True)
class TokenSpan:
    """One token of an alignment: ``token`` over frames ``[start, end)``, and
    ``score``, the mean probability of that token over those frames."""

    token: int
    start: float
    end: float
    score: float

    def to_units(self, frame_stride: float, offset: float = 0.0) -> "TokenSpan":
        """The span in seconds or pixels: frame ``f`` starts at ``offset + f * frame_stride``
        (e.g. a CRNN whose frames are 4 pixel columns: ``frame_stride=4``; speech at
        20 ms per frame: ``frame_stride=0.02``)."""
        return replace(self, start=offset + self.start * frame_stride, end=offset + self.end * frame_stride)


def _merge_row(labels: List[int], probs: List[float], blank: int) -> List[TokenSpan]:
    spans, t, T = [], 0, len(labels)
    while t < T:
        end = t + 1
        while end < T and labels[end] == labels[t]:
            end += 1
        if labels[t] != blank:
            spans.append(TokenSpan(labels[t], t, end, sum(probs[t:end]) / (end - t)))
        t = end
    return spans


def merge_tokens(labels: torch.Tensor, scores: torch.Tensor,
                 blank: int = 0) -> Union[List[TokenSpan], List[List[TokenSpan]]]:
    """Token spans of frame-level alignments (as ``torchaudio.functional.merge_tokens``).

    Consecutive frames of the same label form one span; blank frames separate
    spans and are dropped. Two equal labels in a row of the target are two
    spans only if a blank separates them, which a CTC alignment guarantees.

    Args:
        labels: (T,) or (N, T) integer classes per frame (e.g.
            :func:`forced_align`'s labels).
        scores: the same shape, log-probabilities of those classes.
        blank: the blank class.

    Returns:
        A list of :class:`TokenSpan` (frames ``[start, end)``, ``score`` the
        mean of ``exp(scores)`` over the span) for 1-D input; one such list per
        sample for 2-D input.

    Raises:
        ValueError: if labels and scores are not tensors of the same 1-D or 2-D shape.
    """
    if (not isinstance(labels, torch.Tensor) or not isinstance(scores, torch.Tensor)
            or labels.shape != scores.shape or labels.dim() not in (1, 2)):
        raise ValueError(f"ctcx.merge_tokens: labels and scores must be tensors of one shape, (T,) or "
                         f"(N, T), got {getattr(labels, 'shape', type(labels).__name__)} and "
                         f"{getattr(scores, 'shape', type(scores).__name__)}")
    rows, probs = labels.tolist(), scores.detach().double().exp().tolist()
    if labels.dim() == 1:
        return _merge_row(rows, probs, blank)
    return [_merge_row(r, p, blank) for r, p in zip(rows, probs)]
