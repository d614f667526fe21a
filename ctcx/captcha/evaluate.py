"""Reading labels off a trained CRNN: prediction with confidences and per-character probabilities, and scores."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

import ctcx

from .calibration import CalibrationReport, check_temperature, expected_calibration_error, fit_temperature, \
    frames_needed, label_log_probs
from .config import DECODERS
from .images import to_model_input
from .metrics import character_error_rate, exact_match
from .model import CRNN

__all__ = ["Prediction", "EvalResult", "predict", "evaluate", "fold_charset", "model_logits", "fit_calibration",
           "FRAME_COLUMNS"]


@dataclass
class Prediction:
    """One image's reading.

    ``text``: the decoded label. ``confidence``: the probability in [0, 1] the
    model gives the label, summed over all its alignments to the frames,
    under the temperature T given to :func:`predict` (the command line
    passes the checkpoint's fitted one, see :mod:`~ctcx.captcha.calibration`):
    ``exp(-ctc_loss(log_softmax(logits / T), text))``, whatever the decoder;
    for an empty reading, the probability of the all-blank path.
    ``char_probs``: per character, its probability under ``softmax(logits / T)``
    (greedy: the highest over the frames of its run; beam: at the frame where
    the beam emitted it). ``char_columns``: per character, the columns
    ``[start, end)`` of the model's input image where it sits, from the most
    probable alignment of the reading to the frames (:func:`ctcx.forced_align`;
    one frame is 4 columns; empty when :func:`predict` was told not to locate).
    """

    text: str
    confidence: float
    char_probs: List[float]
    char_columns: List[Tuple[int, int]] = field(default_factory=list)


@dataclass
class EvalResult:
    """Scores on a labelled set (fractions in [0, 1]).

    ``accuracy``: exact match; ``accuracy_ci``: exact match ignoring case;
    ``cer``: character error rate (edit distance / reference characters).
    ``confidences``: each reading's :attr:`Prediction.confidence` under
    ``temperature``; ``ece``: their expected calibration error (15 bins)
    against exact match; ``accuracy_at_80`` / ``accuracy_at_90``: exact match
    of the 80% / 90% most confident readings
    (:mod:`~ctcx.captcha.calibration`).
    """

    decoder: str
    accuracy: float
    accuracy_ci: float
    cer: float
    predictions: List[str]
    references: List[str]
    confidences: List[float]
    temperature: float
    ece: float
    accuracy_at_80: float
    accuracy_at_90: float

    @property
    def count(self) -> int:
        return len(self.references)

    @property
    def calibration(self) -> CalibrationReport:
        return CalibrationReport(self.ece, self.accuracy_at_80, self.accuracy_at_90, self.temperature, self.count)


def _readings(log_probs: torch.Tensor, tokens: List[List[int]], char_probs: List[List[float]], charset: str,
              temperature: float) -> List[Prediction]:
    texts = ["".join(charset[c - 1] for c in row) for row in tokens]
    confidences = label_log_probs(log_probs, texts, charset, temperature).exp().tolist()
    return [Prediction(text, confidence, probs) for text, confidence, probs in zip(texts, confidences, char_probs)]


def _greedy(log_probs: torch.Tensor, charset: str, temperature: float = 1.0) -> List[Prediction]:
    """Best path of (T, N, C) log-probabilities; probabilities reported under ``temperature``."""
    best = log_probs.argmax(-1).t().numpy()  # (N, T)
    probs = (log_probs.double() / temperature).softmax(-1).transpose(0, 1).numpy()  # (N, T, C)
    tokens, char_probs = [], []
    for n in range(best.shape[0]):
        row, row_probs, previous = [], [], 0
        for t, c in enumerate(best[n]):
            if c and c == previous:
                row_probs[-1] = max(row_probs[-1], float(probs[n, t, c]))
            elif c:
                row.append(int(c))
                row_probs.append(float(probs[n, t, c]))
            previous = c
        tokens.append(row)
        char_probs.append(row_probs)
    return _readings(log_probs, tokens, char_probs, charset, temperature)


def _beam(log_probs: torch.Tensor, charset: str, beam_width: int, min_length: Optional[int],
          max_length: Optional[int], temperature: float = 1.0) -> List[Prediction]:
    """Prefix beam search on (T, N, C) log-probabilities (at T = 1: the temperature
    changes the confidences, not the readings)."""
    result = ctcx.beam_search(log_probs, beam_width=beam_width, blank=0, min_length=min_length,
                              max_length=max_length)
    probs = (log_probs.double() / temperature).softmax(-1)
    tokens, char_probs = [], []
    for n in range(log_probs.shape[1]):
        length = int(result.lengths[n, 0])
        row = result.tokens[n, 0, :length].tolist()
        frames = result.timesteps[n, 0, :length].tolist()
        tokens.append(row)
        char_probs.append([float(probs[t, n, c]) for t, c in zip(frames, row)])
    return _readings(log_probs, tokens, char_probs, charset, temperature)


@torch.no_grad()
def _logit_batches(model: CRNN, images: Sequence[np.ndarray], batch_size: int
                   ) -> Iterator[Tuple[List[int], torch.Tensor]]:
    """(indices, float32 logits (T, n, C) on the model's device) per batch of equal-width images."""
    model.eval()
    device = next(model.parameters()).device
    by_width: Dict[int, List[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_width[image.shape[-1]].append(i)
    for indices in by_width.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = torch.from_numpy(np.stack([images[i] for i in chunk]))
            yield chunk, model(to_model_input(batch).to(device)).float()


@torch.no_grad()
def predict(model: CRNN, images: Sequence[np.ndarray], charset: str, decoder: str = "greedy",
            beam_width: int = 10, min_length: Optional[int] = None, max_length: Optional[int] = None,
            batch_size: int = 256, locate: bool = True, temperature: float = 1.0,
            read_as: Optional[str] = None) -> List[Prediction]:
    """Read ``images`` with ``model`` (put in eval mode, run on its parameters' device).

    Images of equal width are batched together, so no image is padded and
    each reading is the same as the image would get on its own.

    Args:
        images: uint8 arrays (C, H, W_i) from :func:`~ctcx.captcha.images.preprocess`.
        decoder: ``"greedy"`` (best path, :func:`ctcx.greedy_decode`'s rule),
            ``"beam"`` (prefix beam search, :func:`ctcx.beam_search`) or
            ``"constrained"`` (beam search keeping only labels of
            ``min_length``..``max_length`` characters).
        locate: fill each reading's ``char_columns`` (one forced alignment
            per batch; :func:`evaluate` leaves it out).
        temperature: T > 0 for the confidences and character probabilities
            (the checkpoint's fitted one, see
            :func:`~ctcx.captcha.calibration.stored_temperature`). The
            readings themselves are decoded at T = 1, so they do not depend on it.
        read_as: the characters readings may use, when fewer than the
            model's ``charset`` (a 0-9a-zA-Z reader on 0-9A-Z captchas): see
            :func:`fold_charset`; the temperature then scales the folded
            log-probabilities. None = the model's charset.

    Returns:
        one :class:`Prediction` per image, in order.

    Raises:
        ValueError: for an unknown decoder, ``"constrained"`` without a
            length, a temperature that is not a finite number > 0, or
            ``read_as`` characters the model cannot read (as :func:`fold_charset`).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "constrained" and not (min_length or max_length):
        raise ValueError("the constrained decoder needs min_length and/or max_length")
    temperature = check_temperature(temperature)
    fold = None
    if read_as is not None and read_as != charset:
        fold = _fold_groups(charset, read_as)
        charset = read_as
    out: List[Optional[Prediction]] = [None] * len(images)
    for chunk, logits in _logit_batches(model, images, batch_size):
        log_probs = logits.log_softmax(-1).cpu()
        if fold is not None:
            log_probs = _fold(log_probs, fold)
        if decoder == "greedy":
            readings = _greedy(log_probs, charset, temperature)
        elif decoder == "beam":
            readings = _beam(log_probs, charset, beam_width, None, None, temperature)
        else:
            readings = _beam(log_probs, charset, beam_width, min_length, max_length, temperature)
        if locate:
            _locate(log_probs, readings, charset)
        for i, reading in zip(chunk, readings):
            out[i] = reading
    return out


def _fold_groups(charset: str, read_as: str) -> List[List[int]]:
    if not read_as or len(set(read_as)) != len(read_as):
        raise ValueError(f"read_as must be distinct characters, got {read_as!r}")
    column = {c: i + 1 for i, c in enumerate(charset)}
    groups = [[0]]  # the blank
    unreadable = []
    for c in read_as:
        group = [column[c]] if c in column else []
        other = c.swapcase()
        if other != c and other in column and other not in read_as:
            group.append(column[other])
        if not group:
            unreadable.append(c)
        groups.append(group)
    if unreadable:
        raise ValueError(f"read_as: the model cannot read {''.join(unreadable)!r} (its charset is {charset!r})")
    return groups


def _fold(log_probs: torch.Tensor, groups: List[List[int]]) -> torch.Tensor:
    columns = [torch.logsumexp(log_probs[..., g], -1) for g in groups]
    return torch.stack(columns, -1).log_softmax(-1)


def fold_charset(log_probs: torch.Tensor, charset: str, read_as: str) -> torch.Tensor:
    """Log-probabilities over a smaller charset: the model's classes merged into ``read_as``'s.

    A character of ``read_as`` gets its own class's probability plus that of
    its other case when the other case is not in ``read_as`` (so a 0-9a-zA-Z
    reader reads 0-9A-Z captchas with ``o`` counted as ``O``); classes that
    fall in no group are dropped and each frame renormalised (the reading
    conditioned on using only ``read_as``). The blank stays class 0.

    Args:
        log_probs: (..., 1 + len(charset)) log-probabilities, blank first.
        charset: the model's characters (class i + 1 is ``charset[i]``).
        read_as: the characters to read with.

    Returns:
        (..., 1 + len(read_as)) log-probabilities.

    Raises:
        ValueError: if ``read_as`` repeats a character or has one that
            neither case of is in ``charset``, or log_probs' last dimension
            is not 1 + len(charset).
    """
    if log_probs.shape[-1] != len(charset) + 1:
        raise ValueError(f"log_probs: last dimension {log_probs.shape[-1]}, expected {len(charset) + 1} "
                         f"(blank + charset)")
    return _fold(log_probs, _fold_groups(charset, read_as))


def model_logits(model: CRNN, images: Sequence[np.ndarray], batch_size: int = 256
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The model's logits for every image, in order, padded with zeros to the longest.

    Returns:
        (logits: float32 (T, N, C) on the CPU, T the most frames of any image;
        input_lengths: int64 (N,), each image's own frames).

    Raises:
        ValueError: if there are no images.
    """
    if not len(images):
        raise ValueError("no images")
    parts: List[Optional[torch.Tensor]] = [None] * len(images)
    for chunk, logits in _logit_batches(model, images, batch_size):
        logits = logits.cpu()
        for j, i in enumerate(chunk):
            parts[i] = logits[:, j]
    lengths = torch.tensor([p.shape[0] for p in parts], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(parts), lengths


def fit_calibration(model: CRNN, images: Sequence[np.ndarray], labels: Sequence[str], charset: str,
                    batch_size: int = 256) -> Dict[str, Any]:
    """Fit the model's temperature on labelled images (:func:`~ctcx.captcha.calibration.fit_temperature`).

    Labels the model cannot give (characters outside ``charset``, or more
    characters than the image's frames can carry) are left out of the fit.

    Returns:
        the checkpoint's ``calibration`` entry: ``temperature`` (T),
        ``fitted_on`` (images the fit used), and ``ece_before`` / ``ece_after``:
        the expected calibration error of the greedy readings of those images
        at T = 1 and at the fitted T (measured on the images it was fitted on).

    Raises:
        ValueError: if the numbers of images and labels differ, or no label is usable.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    logits, lengths = model_logits(model, images, batch_size)
    usable = [n for n, label in enumerate(labels)
              if not set(label) - set(charset) and frames_needed(label) <= int(lengths[n])]
    if not usable:
        raise ValueError(f"none of the {len(labels)} labels can be read with the charset {charset!r} "
                         f"in the frames of its image")
    logits, lengths, labels = logits[:, usable], lengths[usable], [labels[n] for n in usable]
    temperature = fit_temperature(logits, labels, charset, lengths)
    texts = ["".join(charset[c - 1] for c in row) for row in ctcx.greedy_decode(logits, lengths)]
    correct = [t == r for t, r in zip(texts, labels)]

    def ece(t: float) -> float:
        return expected_calibration_error(label_log_probs(logits, texts, charset, t, lengths).exp().tolist(),
                                          correct)

    return {"temperature": temperature, "fitted_on": len(labels), "ece_before": ece(1.0),
            "ece_after": ece(temperature)}


FRAME_COLUMNS = 4
"""Input columns per CTC frame (:meth:`~ctcx.captcha.model.CRNN.output_lengths`)."""


def _locate(log_probs: torch.Tensor, readings: List[Prediction], charset: str) -> None:
    """Fill each reading's ``char_columns`` from the most probable alignment of
    its text to ``log_probs`` (T, N, C) (Viterbi, :func:`ctcx.forced_align`)."""
    index = {c: i + 1 for i, c in enumerate(charset)}
    width = max((len(r.text) for r in readings), default=0)
    targets = torch.zeros(len(readings), width, dtype=torch.long)
    for n, r in enumerate(readings):
        targets[n, :len(r.text)] = torch.tensor([index[c] for c in r.text], dtype=torch.long)
    labels, scores = ctcx.forced_align(log_probs, targets, None, [len(r.text) for r in readings],
                                       allow_impossible=True)
    for r, spans in zip(readings, ctcx.merge_tokens(labels, scores)):
        if len(spans) == len(r.text):
            r.char_columns = [(int(s.start) * FRAME_COLUMNS, int(s.end) * FRAME_COLUMNS) for s in spans]


def evaluate(model: CRNN, images: Sequence[np.ndarray], references: Sequence[str], charset: str,
             decoder: str = "greedy", beam_width: int = 10, min_length: Optional[int] = None,
             max_length: Optional[int] = None, temperature: float = 1.0,
             read_as: Optional[str] = None) -> EvalResult:
    """Exact match (also ignoring case), character error rate and calibration of ``model`` on labelled images.

    Args:
        images: as for :func:`predict`.
        references: one label per image; characters outside ``charset``
            cannot be predicted and so count as errors.
        decoder, beam_width, min_length, max_length, temperature, read_as: as for :func:`predict`.

    Raises:
        ValueError: if the number of images and references differ, or there
            are none, or the decoder arguments, temperature or read_as are bad.
    """
    if len(images) != len(references):
        raise ValueError(f"{len(images)} images but {len(references)} labels")
    readings = predict(model, images, charset, decoder, beam_width, min_length, max_length, locate=False,
                       temperature=temperature, read_as=read_as)
    texts, confidences = [p.text for p in readings], [p.confidence for p in readings]
    references = list(references)
    accuracy = exact_match(texts, references)  # first: its error names an empty set
    report = CalibrationReport.of(confidences, [t == r for t, r in zip(texts, references)], temperature)
    return EvalResult(decoder, accuracy, exact_match([t.lower() for t in texts], [r.lower() for r in references]),
                      character_error_rate(texts, references), texts, references, confidences,
                      report.temperature, report.ece, report.accuracy_at_80, report.accuracy_at_90)
