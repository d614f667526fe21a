"""Reading labels off a trained CRNN: prediction with per-character probabilities, and scores."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import ctcx

from .config import DECODERS
from .images import to_model_input
from .metrics import character_error_rate, exact_match
from .model import CRNN

__all__ = ["Prediction", "EvalResult", "predict", "evaluate", "FRAME_COLUMNS"]


@dataclass
class Prediction:
    """One image's reading.

    ``text``: the decoded label. ``char_probs``: per character, its softmax
    probability (greedy: the highest over the frames of its run; beam: at
    the frame where the beam emitted it). ``confidence``: probability of the
    reading, in [0, 1] (greedy: of the best path; beam: of the label, summed
    over its alignments). ``char_columns``: per character, the columns
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
    """

    decoder: str
    accuracy: float
    accuracy_ci: float
    cer: float
    predictions: List[str]
    references: List[str]

    @property
    def count(self) -> int:
        return len(self.references)


def _greedy(log_probs: torch.Tensor, charset: str) -> List[Prediction]:
    probs, best = log_probs.float().exp().max(-1)  # (T, N)
    path_logp = log_probs.float().max(-1).values.sum(0)
    probs, best = probs.t().numpy(), best.t().numpy()
    out = []
    for n in range(best.shape[0]):
        text, char_probs, previous = [], [], 0
        for t, c in enumerate(best[n]):
            if c and c == previous:
                char_probs[-1] = max(char_probs[-1], float(probs[n, t]))
            elif c:
                text.append(charset[c - 1])
                char_probs.append(float(probs[n, t]))
            previous = c
        out.append(Prediction("".join(text), float(path_logp[n].exp()), char_probs))
    return out


def _beam(log_probs: torch.Tensor, charset: str, beam_width: int, min_length: Optional[int],
          max_length: Optional[int]) -> List[Prediction]:
    result = ctcx.beam_search(log_probs, beam_width=beam_width, blank=0, min_length=min_length,
                              max_length=max_length)
    probs = log_probs.float().exp()
    out = []
    for n in range(log_probs.shape[1]):
        length = int(result.lengths[n, 0])
        tokens = result.tokens[n, 0, :length].tolist()
        frames = result.timesteps[n, 0, :length].tolist()
        score = float(result.scores[n, 0])
        out.append(Prediction("".join(charset[c - 1] for c in tokens),
                              float(np.exp(score)) if np.isfinite(score) else 0.0,
                              [float(probs[t, n, c]) for t, c in zip(frames, tokens)]))
    return out


@torch.no_grad()
def predict(model: CRNN, images: Sequence[np.ndarray], charset: str, decoder: str = "greedy",
            beam_width: int = 10, min_length: Optional[int] = None, max_length: Optional[int] = None,
            batch_size: int = 256, locate: bool = True) -> List[Prediction]:
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

    Returns:
        one :class:`Prediction` per image, in order.

    Raises:
        ValueError: for an unknown decoder, or ``"constrained"`` without a length.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "constrained" and not (min_length or max_length):
        raise ValueError("the constrained decoder needs min_length and/or max_length")
    model.eval()
    device = next(model.parameters()).device
    by_width: Dict[int, List[int]] = defaultdict(list)
    for i, image in enumerate(images):
        by_width[image.shape[-1]].append(i)
    out: List[Optional[Prediction]] = [None] * len(images)
    for indices in by_width.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = torch.from_numpy(np.stack([images[i] for i in chunk]))
            log_probs = model(to_model_input(batch).to(device)).float().log_softmax(-1).cpu()
            if decoder == "greedy":
                readings = _greedy(log_probs, charset)
            elif decoder == "beam":
                readings = _beam(log_probs, charset, beam_width, None, None)
            else:
                readings = _beam(log_probs, charset, beam_width, min_length, max_length)
            if locate:
                _locate(log_probs, readings, charset)
            for i, reading in zip(chunk, readings):
                out[i] = reading
    return out


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
             max_length: Optional[int] = None) -> EvalResult:
    """Exact match (also ignoring case) and character error rate of ``model`` on labelled images.

    Args:
        images: as for :func:`predict`.
        references: one label per image; characters outside ``charset``
            cannot be predicted and so count as errors.
        decoder, beam_width, min_length, max_length: as for :func:`predict`.

    Raises:
        ValueError: if the number of images and references differ, or there
            are none, or the decoder arguments are bad.
    """
    if len(images) != len(references):
        raise ValueError(f"{len(images)} images but {len(references)} labels")
    texts = [p.text for p in predict(model, images, charset, decoder, beam_width, min_length, max_length,
                                     locate=False)]
    references = list(references)
    return EvalResult(decoder, exact_match(texts, references),
                      exact_match([t.lower() for t in texts], [r.lower() for r in references]),
                      character_error_rate(texts, references), texts, references)
