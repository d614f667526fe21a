"""Confidence that means something: the probability of a reading, temperature scaling, calibration scores.

A reading's confidence is the probability the model gives its label,
summed over every CTC alignment of the label to the frames:
``P(label | image) = exp(-ctc_loss(log_softmax(logits / T), label))``, computed
with ctcx's own loss. An empty reading's probability is that of the
all-blank path (target length 0).

The temperature ``T`` is fitted after training on held-out labelled images:
the ``T`` > 0 minimising the mean CTC negative log-likelihood of the true
labels. This is temperature scaling (Guo et al. 2017, "On Calibration of
Modern Neural Networks", ICML), with the sequence likelihood in place of the
class likelihood. Dividing the logits by one positive number keeps every
frame's best class, so greedy readings do not change; only the confidences
do. ``T`` > 1 makes an overconfident model less sure of itself.

A model is calibrated when, of the readings it gives confidence ``p``, a
fraction ``p`` is right. :func:`expected_calibration_error` measures the gap
(Guo et al. 2017, section 2); :func:`accuracy_at_coverage` says what
rejecting the least confident readings buys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

import ctcx

__all__ = ["TEMPERATURE_BOUNDS", "check_temperature", "frames_needed", "encode_labels", "label_log_probs",
           "sequence_confidence", "fit_temperature", "expected_calibration_error", "accuracy_at_coverage",
           "CalibrationReport", "stored_temperature", "describe_calibration"]

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The interval :func:`fit_temperature` searches by default."""


def frames_needed(label: str) -> int:
    """The fewest CTC frames that can carry ``label``: one per character, plus a
    blank between each pair of equal neighbours."""
    return len(label) + sum(a == b for a, b in zip(label, label[1:]))


def encode_labels(labels: Sequence[str], charset: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Padded class indices of ``labels`` (class 0 is the blank, ``charset[i]`` is class ``i + 1``).

    Returns:
        (targets: int64 (N, S) with S = the longest label's length, padded
        with 1; target_lengths: int64 (N,)). Empty labels are allowed.

    Raises:
        ValueError: naming ``labels``, if one is not a string or has a
            character outside ``charset``.
    """
    index = {c: i + 1 for i, c in enumerate(charset)}
    width = max((len(label) for label in labels if isinstance(label, str)), default=0)
    targets = torch.ones(len(labels), width, dtype=torch.long)
    for n, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"labels[{n}] must be a string, got {type(label).__name__}")
        unknown = sorted(set(label) - set(index))
        if unknown:
            raise ValueError(f"labels[{n}] = {label!r} has characters {unknown} outside the charset {charset!r}")
        targets[n, :len(label)] = torch.tensor([index[c] for c in label], dtype=torch.long)
    return targets, torch.tensor([len(label) for label in labels], dtype=torch.long)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ValueError naming it unless it is a finite number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def _prepare(logits: torch.Tensor, labels: Sequence[str], charset: str,
             input_lengths: Optional[Sequence[int] | torch.Tensor]):
    """Checked float64 logits (T, N, C), targets, target lengths and input lengths."""
    if not isinstance(logits, torch.Tensor) or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating-point tensor, got "
                         f"{logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if logits.dim() != 3:
        raise ValueError(f"logits must be (T, N, C), got shape {tuple(logits.shape)}")
    frames, count, classes = logits.shape
    if count == 0 or frames == 0:
        raise ValueError(f"logits hold no readings: shape {tuple(logits.shape)}")
    if not isinstance(charset, str) or classes != len(charset) + 1:
        raise ValueError(f"logits have {classes} classes, but the blank and the charset {charset!r} make "
                         f"{len(charset) + 1 if isinstance(charset, str) else '?'}")
    if isinstance(labels, str) or len(labels) != count:
        raise ValueError(f"labels must be a sequence of {count} strings (one per sample of logits), got "
                         f"{'a string' if isinstance(labels, str) else len(labels)}")
    if input_lengths is None:
        lengths = torch.full((count,), frames, dtype=torch.long)
    else:
        lengths = torch.as_tensor(input_lengths)
        if lengths.shape != (count,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise ValueError(f"input_lengths must be {count} integers, got {lengths.dtype} {tuple(lengths.shape)}")
        lengths = lengths.long().cpu()
        if bool((lengths < 1).any()) or bool((lengths > frames).any()):
            raise ValueError(f"input_lengths must lie in [1, {frames}], got {lengths.tolist()}")
    logits = logits.detach().double()
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits hold NaN or infinite values")
    targets, target_lengths = encode_labels(labels, charset)
    return logits, targets.to(logits.device), target_lengths.to(logits.device), lengths.to(logits.device)


@torch.no_grad()
def _nll(logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor, input_lengths: torch.Tensor,
         temperature: float) -> torch.Tensor:
    """Per-sample -log P(label) under softmax(logits / T), float64 (N,); inf where no alignment exists."""
    return ctcx.ctc_loss_with_logits(logits / temperature, targets, input_lengths, target_lengths, blank=0,
                                     reduction="none")


def label_log_probs(logits: torch.Tensor, labels: Sequence[str], charset: str, temperature: float = 1.0,
                    input_lengths: Optional[Sequence[int] | torch.Tensor] = None) -> torch.Tensor:
    """log P(label | image) of each sample, summed over all CTC alignments, under softmax(logits / T).

    Args:
        logits: (T, N, C) float scores of the model (any float dtype, any
            device; computed in float64), class 0 the blank, class ``i`` the
            character ``charset[i - 1]``.
        labels: N strings over ``charset`` (empty allowed: the all-blank path).
        charset: the model's characters; C must be ``len(charset) + 1``.
        temperature: T > 0.
        input_lengths: frames used per sample, (N,) ints in [1, T]; default all T.

    Returns:
        float64 (N,) tensor of log-probabilities (nats, <= 0), on ``logits``'
        device; ``-inf`` for a label longer than its frames can carry
        (see :func:`frames_needed`).

    Raises:
        ValueError: naming the argument, for logits that are not a finite
            (T, N, C) float tensor with samples, a class count that does not
            match ``charset``, labels of another count or with characters
            outside ``charset``, bad input lengths, or a temperature that is
            not a finite positive number.
    """
    temperature = check_temperature(temperature)
    logits, targets, target_lengths, input_lengths = _prepare(logits, labels, charset, input_lengths)
    return -_nll(logits, targets, target_lengths, input_lengths, temperature)


def sequence_confidence(logits: torch.Tensor, labels: Sequence[str], charset: str, temperature: float = 1.0,
                        input_lengths: Optional[Sequence[int] | torch.Tensor] = None) -> torch.Tensor:
    """P(label | image) in [0, 1]: ``exp`` of :func:`label_log_probs` (same arguments and errors).

    Returns:
        float64 (N,) tensor of probabilities.
    """
    return label_log_probs(logits, labels, charset, temperature, input_lengths).exp()


def fit_temperature(logits: torch.Tensor, labels: Sequence[str], charset: str,
                    input_lengths: Optional[Sequence[int] | torch.Tensor] = None,
                    bounds: Tuple[float, float] = TEMPERATURE_BOUNDS, tolerance: float = 1e-6) -> float:
    """The temperature T minimising the mean CTC negative log-likelihood of the true ``labels``.

    Temperature scaling (Guo et al. 2017) for sequences: the objective is
    ``mean_n -log P(labels[n] | logits[:, n] / T)`` with P summed over all
    alignments (:func:`label_log_probs`). The search runs in float64 on
    ``log T``: the objective on 49 evenly spaced points of ``[log lo, log hi]``,
    then golden-section search between the best point's neighbours until the
    interval is under ``tolerance`` wide. It is deterministic and never leaves
    ``bounds``; a result at a bound means the optimum may lie beyond it.

    Args:
        logits, labels, charset, input_lengths: as for :func:`label_log_probs`;
            ``labels`` are the true labels of the held-out images.
        bounds: (lo, hi) with 0 < lo < hi, the interval searched.
        tolerance: width in ``log T`` at which the search stops, > 0.

    Returns:
        T, a float in ``bounds``.

    Raises:
        ValueError: as :func:`label_log_probs`; also naming ``labels`` for a
            label its frames cannot carry (its probability is 0 at every T),
            and for bad ``bounds`` or ``tolerance``.
    """
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds) \
            or not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (lo, hi) with 0 < lo < hi, got {bounds!r}")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    logits, targets, target_lengths, input_lengths = _prepare(logits, labels, charset, input_lengths)
    for n, (label, frames) in enumerate(zip(labels, input_lengths.tolist())):
        if frames_needed(label) > frames:
            raise ValueError(f"labels[{n}] = {label!r} needs {frames_needed(label)} frames but its sample has "
                             f"{frames}: its probability is 0 at every temperature")

    def objective(log_t: float) -> float:
        nll = _nll(logits, targets, target_lengths, input_lengths, math.exp(log_t))
        return math.fsum(nll.tolist()) / len(labels)  # fsum: the same value whatever the thread count

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    grid = np.linspace(lo, hi, 49)
    values = [objective(float(u)) for u in grid]
    best = int(np.argmin(values))
    a, b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(d)
    middle = (a + b) / 2
    if objective(middle) > values[best]:  # only where the objective is not unimodal around the grid's best
        middle = float(grid[best])
    return min(max(math.exp(middle), bounds[0]), bounds[1])


def _check_scores(confidences: Sequence[float], correct: Sequence[bool]) -> Tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct)
    if conf.ndim != 1 or conf.size == 0:
        raise ValueError(f"confidences must be a non-empty 1-D sequence, got shape {conf.shape}")
    if right.shape != conf.shape:
        raise ValueError(f"correct must have one entry per confidence ({conf.size}), got shape {right.shape}")
    if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError(f"confidences must lie in [0, 1], got values from {conf.min()!r} to {conf.max()!r}")
    if right.dtype != np.bool_ and not np.isin(right, (0, 1)).all():
        raise ValueError("correct must hold booleans (or 0 and 1)")
    return conf, right.astype(np.float64)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """Expected calibration error with equal-width bins (Guo et al. 2017, eq. 3).

    Bin m (1..M) holds the readings of confidence in ((m - 1)/M, m/M] (a
    confidence of 0 goes to the first). ECE = sum over bins of
    (readings in bin / readings) * |exact match in bin - mean confidence in bin|.

    Args:
        confidences: N floats in [0, 1].
        correct: N booleans, whether each reading is right.
        bins: M >= 1.

    Returns:
        ECE, a fraction in [0, 1] (0 = calibrated).

    Raises:
        ValueError: naming the argument, for empty or mismatched inputs,
            confidences outside [0, 1], or bins < 1.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    conf, right = _check_scores(confidences, correct)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for m in range(bins):
        members = which == m
        if members.any():
            total += members.sum() / conf.size * abs(right[members].mean() - conf[members].mean())
    return float(total)


def accuracy_at_coverage(confidences: Sequence[float], correct: Sequence[bool], coverage: float) -> float:
    """Exact match among the most confident readings when the rest are rejected.

    Keeps the ``ceil(coverage * N)`` readings of highest confidence (equal
    confidences: the earlier reading first) and returns the fraction of them
    that are right.

    Args:
        confidences, correct: as for :func:`expected_calibration_error`.
        coverage: the fraction of readings kept, in (0, 1].

    Returns:
        a fraction in [0, 1].

    Raises:
        ValueError: naming the argument, for empty or mismatched inputs,
            confidences outside [0, 1], or coverage outside (0, 1].
    """
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
    conf, right = _check_scores(confidences, correct)
    kept = max(1, math.ceil(coverage * conf.size - 1e-9))  # 1e-9: 0.7 * 10 is 7.000000000000001
    order = np.argsort(-conf, kind="stable")
    return float(right[order[:kept]].mean())


@dataclass(frozen=True)
class CalibrationReport:
    """How far confidences can be trusted on a labelled set.

    ``ece``: :func:`expected_calibration_error` (15 bins);
    ``accuracy_at_80`` / ``accuracy_at_90``: :func:`accuracy_at_coverage` when
    the 20% / 10% least confident readings are rejected; ``temperature``: the T
    the confidences were computed with; ``count``: readings scored.
    """

    ece: float
    accuracy_at_80: float
    accuracy_at_90: float
    temperature: float
    count: int

    @classmethod
    def of(cls, confidences: Sequence[float], correct: Sequence[bool], temperature: float) -> "CalibrationReport":
        """Score ``confidences`` against ``correct`` (raises as :func:`expected_calibration_error`)."""
        return cls(expected_calibration_error(confidences, correct), accuracy_at_coverage(confidences, correct, 0.8),
                   accuracy_at_coverage(confidences, correct, 0.9), float(temperature), len(confidences))

    def __str__(self) -> str:
        return (f"ECE {self.ece:.2%}, exact match {self.accuracy_at_80:.2%} of the 80% most confident, "
                f"{self.accuracy_at_90:.2%} of the 90% (T = {self.temperature:.3g}, {self.count} readings)")


def stored_temperature(checkpoint: Mapping[str, Any]) -> float:
    """The temperature a checkpoint dict holds: its ``calibration["temperature"]``, or 1.0 if not calibrated."""
    calibration = checkpoint.get("calibration")
    return float(calibration["temperature"]) if calibration else 1.0


def describe_calibration(checkpoint: Mapping[str, Any]) -> str:
    """One phrase for a checkpoint dict's temperature, e.g. ``"T = 1.42, fitted on 2000 images"``
    or ``"T = 1, not calibrated"``."""
    calibration = checkpoint.get("calibration")
    if not calibration:
        return "T = 1, not calibrated"
    return f"T = {calibration['temperature']:.3g}, fitted on {calibration['fitted_on']} images"
