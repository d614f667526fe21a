"""Batched CTC prefix beam search on CPU and CUDA, and a helper to read its output.

Prefix beam search as in Hannun et al. 2014, "First-Pass Large Vocabulary
Continuous Speech Recognition using Bi-Directional Recurrent DNNs"
(arXiv:1408.2873), algorithm 1, without a language model. The algorithm and
its exactness argument are described in ``csrc/include/ctcx/ctc_decode.h``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Mapping, NamedTuple, Optional, Sequence, Union

import torch

from . import ops  # noqa: F401  (registers torch.ops.ctcx.ctc_beam_search)
from .decode import Lengths, _decode_inputs

if TYPE_CHECKING:
    from .lexicon import Hotwords, Lexicon
    from .lm import NgramLM

__all__ = ["beam_search", "BeamSearchResult", "FusedBeamSearchResult", "decode_strings", "MAX_BEAM_WIDTH"]

#: Largest beam_width the kernels support (csrc/include/ctcx/ctc_decode.h).
MAX_BEAM_WIDTH = 1024

_FN = "ctcx.beam_search"


class BeamSearchResult(NamedTuple):
    """The top_k hypotheses of every sample, best first (K = top_k).

    Attributes:
        tokens: (N, K, T) int64 class indices, padded with -1 after each
            hypothesis' length.
        lengths: (N, K) int64 number of tokens of each hypothesis.
        scores: (N, K) log P(hypothesis | x), summed over all its alignments;
            float32, or float64 for float64 input. -inf (with length 0) where
            fewer than K hypotheses exist or satisfy the constraints.
        timesteps: (N, K, T) int64 frame at which each token starts (along the
            hypothesis' most probable history), padded with -1.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    timesteps: torch.Tensor


class FusedBeamSearchResult(NamedTuple):
    """:class:`BeamSearchResult` of a search with a language model, lexicon,
    hotwords or insertion bonus, with the score split into its parts.

    Attributes:
        tokens, lengths, timesteps: as in :class:`BeamSearchResult`.
        scores: (N, K) the fused score that ranks the hypotheses:
            ``ctc_scores + lm_weight * lm_scores + insertion_bonus * units
            + hotword bonus``; -inf for missing hypotheses.
        ctc_scores: (N, K) ln P_ctc(hypothesis | x), summed over its alignments.
        lm_scores: (N, K) ln P_lm(hypothesis), ``</s>`` included, without
            the weight (0 without an LM).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    timesteps: torch.Tensor
    ctc_scores: torch.Tensor
    lm_scores: torch.Tensor


def _optional_length(name: str, value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{_FN}: {name} = {value!r} must be None or an int >= 0")
    return value


def beam_search(log_probs: torch.Tensor, input_lengths: Lengths = None, beam_width: int = 10,
                top_k: int = 1, blank: int = 0, *, batch_first: bool = False,
                min_length: Optional[int] = None, max_length: Optional[int] = None,
                allowed_tokens: Optional[torch.Tensor] = None,
                blank_skip_threshold: Optional[float] = None, lm: Optional["NgramLM"] = None,
                lm_weight: float = 0.5, insertion_bonus: float = 0.0, lexicon: Optional["Lexicon"] = None,
                hotwords: Union[None, "Hotwords", Mapping[str, float]] = None,
                beam_threshold: Optional[float] = None) -> Union[BeamSearchResult, FusedBeamSearchResult]:
    """CTC prefix beam search (Hannun et al. 2014), batched, on CPU or CUDA.

    Every prefix keeps the probability of its alignments ending in a blank and
    ending in its last token; extending a prefix by its own last token needs a
    blank in between ("a a" is two tokens only with a blank between them);
    identical prefixes reached from different parents are summed (log-sum-exp,
    not max). The beam keeps the ``beam_width`` most probable prefixes after
    every frame. No frame and no token is skipped: with a beam at least as
    large as the number of prefixes alive, the result is the exact top-k of
    log P(labelling | x); with a smaller beam, a prefix's score misses the
    alignments through prefixes pruned earlier (as in every beam search).
    Ties are broken deterministically, and CPU and CUDA run the same
    algorithm. The CPU runs one sample per thread (``torch.get_num_threads``).

    Args:
        log_probs: (T, N, C) log-probabilities (e.g. ``log_softmax`` output),
            or (N, T, C) with ``batch_first=True``; float16, bfloat16, float32
            or float64, CPU or CUDA. NaN entries count as impossible.
        input_lengths: (N,) valid frames per sample, each in [0, T] (tensor,
            list or tuple); None means all T. A sample with no frames decodes
            to the empty hypothesis with score 0.
        beam_width: prefixes kept per frame, in [1, MAX_BEAM_WIDTH = 1024].
        top_k: hypotheses returned per sample, in [1, beam_width].
        blank: index of the blank class, in [0, C).
        batch_first: whether log_probs is (N, T, C).
        min_length, max_length: only hypotheses with min_length <= length <=
            max_length are returned. Prefixes longer than max_length are never
            formed, and prefixes that can no longer reach min_length in the
            frames left are dropped, so the beam is spent on hypotheses that
            can satisfy the constraints. None: no bound.
        allowed_tokens: (C,) bool mask of the tokens hypotheses may contain
            (the blank's entry is ignored); None: all.
        blank_skip_threshold: an approximation for speed, off by default
            (None): frames whose blank probability exceeds this value in
            (0, 1] extend no prefix (only blank and repeat transitions are
            scored), so scores become lower bounds and a token emitted only on
            such frames is lost. ``1.0`` skips nothing for normalized inputs.

    Returns:
        :class:`BeamSearchResult` ``(tokens, lengths, scores, timesteps)`` of
        shapes (N, K, T), (N, K), (N, K), (N, K, T) with K = top_k, on
        log_probs' device, best first. With ``lm``, ``lexicon``,
        ``hotwords`` or a non-zero ``insertion_bonus``: a
        :class:`FusedBeamSearchResult`, which adds ``ctc_scores`` and
        ``lm_scores`` (N, K). With none of them the search is the plain
        one, bit for bit.

    Raises:
        ValueError: for a log_probs that is not a 3-D tensor of a supported
            dtype, blank out of range, input_lengths of the wrong size or
            values, beam_width outside [1, 1024], top_k outside [1,
            beam_width], negative or crossed min_length/max_length, an
            allowed_tokens that is not a (C,) bool mask, or a
            blank_skip_threshold outside (0, 1]; an lm, lexicon or hotwords
            of another type, made for another number of classes or blank,
            or with word delimiters that disagree; a negative or non-finite
            lm_weight, a non-finite insertion_bonus.
        RuntimeError: for CUDA tensors when ctcx was built without its CUDA
            kernels.
    """
    for name, value in (("beam_width", beam_width), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{_FN}: {name} must be an int, got {value!r}")
    if not 1 <= beam_width <= MAX_BEAM_WIDTH:
        raise ValueError(f"{_FN}: beam_width = {beam_width} is out of range; expected "
                         f"1 <= beam_width <= {MAX_BEAM_WIDTH}")
    if not 1 <= top_k <= beam_width:
        raise ValueError(f"{_FN}: top_k = {top_k} is out of range; expected "
                         f"1 <= top_k <= beam_width = {beam_width}")
    min_length = _optional_length("min_length", min_length)
    max_length = _optional_length("max_length", max_length)
    if min_length is not None and max_length is not None and min_length > max_length:
        raise ValueError(f"{_FN}: min_length = {min_length} exceeds max_length = {max_length}")
    if blank_skip_threshold is not None:
        if isinstance(blank_skip_threshold, bool) or not isinstance(blank_skip_threshold, (int, float)) \
                or not 0 < blank_skip_threshold <= 1:
            raise ValueError(f"{_FN}: blank_skip_threshold = {blank_skip_threshold!r} must be None "
                             "or a number in (0, 1]")
        blank_skip_threshold = float(blank_skip_threshold)

    lp, lengths = _decode_inputs(_FN, log_probs, input_lengths, blank, batch_first)
    T, _, C = lp.shape
    if allowed_tokens is not None:
        if (not isinstance(allowed_tokens, torch.Tensor) or allowed_tokens.dtype != torch.bool
                or tuple(allowed_tokens.shape) != (C,)):
            raise ValueError(f"{_FN}: allowed_tokens must be a bool tensor of shape (C,) = ({C},), got "
                             f"{getattr(allowed_tokens, 'dtype', type(allowed_tokens).__name__)} "
                             f"{tuple(getattr(allowed_tokens, 'shape', ()))}")
        allowed_tokens = allowed_tokens.to(lp.device)
    fused = (lm is not None or lexicon is not None or hotwords is not None or insertion_bonus != 0.0
             or beam_threshold is not None)
    if beam_threshold is not None and (isinstance(beam_threshold, bool) or not isinstance(beam_threshold, (int, float))
                                       or not beam_threshold > 0):
        raise ValueError(f"{_FN}: beam_threshold = {beam_threshold!r} must be None or a number > 0")
    if not fused:
        return BeamSearchResult(*torch.ops.ctcx.ctc_beam_search(
            lp, lengths, beam_width, top_k, blank, min_length or 0,
            T if max_length is None else min(max_length, T), allowed_tokens, blank_skip_threshold))
    lm_tables, lm_info, lexicon_tables, hot_tables, delimiter, max_gain = _fusion_inputs(
        lp, blank, lm, lm_weight, insertion_bonus, lexicon, hotwords)
    return FusedBeamSearchResult(*torch.ops.ctcx.ctc_lm_beam_search(
        lp, lengths, beam_width, top_k, blank, min_length or 0,
        T if max_length is None else min(max_length, T), allowed_tokens, blank_skip_threshold,
        lm_tables, lm_info, lexicon_tables, hot_tables, delimiter, float(lm_weight), float(insertion_bonus),
        max_gain, None if beam_threshold is None else float(beam_threshold)))


def _fusion_inputs(lp: torch.Tensor, blank: int, lm, lm_weight, insertion_bonus, lexicon, hotwords):
    """Validate the fusion arguments; return the op's lists, the word delimiter and max_gain."""
    from .lexicon import Hotwords, Lexicon
    from .lm import NgramLM

    C = lp.shape[2]
    for name, value in (("lm_weight", lm_weight), ("insertion_bonus", insertion_bonus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{_FN}: {name} must be a finite number, got {value!r}")
    if lm_weight < 0:
        raise ValueError(f"{_FN}: lm_weight = {lm_weight} must be >= 0")
    delimiters = {}
    for name, value, kind in (("lm", lm, NgramLM), ("lexicon", lexicon, Lexicon),
                              ("hotwords", hotwords if isinstance(hotwords, Hotwords) else None, Hotwords)):
        if value is None:
            continue
        if not isinstance(value, kind):
            raise ValueError(f"{_FN}: {name} must be a ctcx.{kind.__name__}, got {type(value).__name__}")
        if len(value.tokens) != C or value.blank != blank:
            raise ValueError(f"{_FN}: {name} was made for {len(value.tokens)} classes with blank {value.blank}; "
                             f"log_probs has C = {C} and blank = {blank}")
        if value.word_delimiter is not None:
            delimiters[name] = value.word_delimiter
    if len(set(delimiters.values())) > 1:
        raise ValueError(f"{_FN}: the word delimiters disagree: {delimiters}")
    delimiter = next(iter(delimiters.values()), None)
    if hotwords is not None and not isinstance(hotwords, Hotwords):
        if not isinstance(hotwords, Mapping):
            raise ValueError(f"{_FN}: hotwords must be a ctcx.Hotwords or a {{word: bonus}} mapping, "
                             f"got {type(hotwords).__name__}")
        tokens = (lm or lexicon).tokens if (lm or lexicon) is not None else None
        if tokens is None:
            raise ValueError(f"{_FN}: a hotwords mapping needs an lm or lexicon to spell its words with; "
                             f"pass a ctcx.Hotwords instead")
        hotwords = Hotwords(hotwords, tokens, delimiter, blank=blank)
    lm_tables, lm_info = lm.tensors(lp.device) if lm is not None else ([], [])
    max_gain = (max(float(insertion_bonus), 0.0) + (float(lm_weight) * lm.max_log_prob if lm is not None else 0.0)
                + (hotwords.max_gain if hotwords is not None else 0.0))
    return (lm_tables, lm_info, lexicon.tensors(lp.device) if lexicon is not None else [],
            hotwords.tensors(lp.device) if hotwords is not None else [], -1 if delimiter is None else delimiter,
            max_gain)


def decode_strings(tokens: torch.Tensor, lengths: torch.Tensor,
                   charset: Union[str, Sequence[str]], blank: int = 0) -> List:
    """Turn decoded class indices into strings.

    Args:
        tokens: (..., T) int class indices, e.g. ``beam_search(...).tokens``
            (N, K, T); entries past each length are ignored.
        lengths: (...) number of valid tokens of each row, e.g.
            ``beam_search(...).lengths``.
        charset: the symbols of the non-blank classes in class order, the
            blank left out: class c is ``charset[c]`` below the blank and
            ``charset[c - 1]`` above it (with blank 0, class c is
            ``charset[c - 1]``, the captcha trainer's convention). A string or
            a sequence of strings (joined without separator).
        blank: the blank's class index.

    Returns:
        Nested lists of strings with the leading shape of ``tokens``: an
        (N, K, T) input gives N lists of K strings. Missing hypotheses
        (length 0) give "" (their score is -inf).

    Raises:
        ValueError: if the shapes disagree, or a token is the blank or has no
            symbol in charset.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() < 1:
        raise ValueError(f"ctcx.decode_strings: tokens must be a (..., T) tensor, got {type(tokens).__name__}")
    lengths = torch.as_tensor(lengths)
    if tuple(lengths.shape) != tuple(tokens.shape[:-1]):
        raise ValueError(f"ctcx.decode_strings: lengths must have shape {tuple(tokens.shape[:-1])}, "
                         f"got {tuple(lengths.shape)}")
    symbols = list(charset)

    def one(row: List[int], n: int) -> str:
        out = []
        for c in row[:n]:
            i = c if c < blank else c - 1
            if c == blank or not 0 <= i < len(symbols):
                raise ValueError(f"ctcx.decode_strings: token {c} has no symbol (blank = {blank}, "
                                 f"{len(symbols)} symbols)")
            out.append(symbols[i])
        return "".join(out)

    def walk(rows, ns):
        if isinstance(ns, int):
            return one(rows, ns)
        return [walk(r, n) for r, n in zip(rows, ns)]

    return walk(tokens.tolist(), lengths.tolist())
