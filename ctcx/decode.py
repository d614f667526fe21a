"""CTC decoding.

Best-path (greedy) decoding today; batched prefix beam search (Hannun et al.
2014) in C++/CUDA joins this module in a later release.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import torch

__all__ = ["greedy_decode"]


def greedy_decode(log_probs: torch.Tensor, input_lengths: Union[torch.Tensor, Sequence[int], None] = None,
                  blank: int = 0) -> List[List[int]]:
    """Best-path CTC decoding (Graves et al. 2006, section 3.2).

    Takes the most probable class of every frame, merges consecutive repeats,
    then drops blanks (frames "a a - a" decode to [a, a]).

    Args:
        log_probs: (T, N, C) scores per frame (log-probabilities, probabilities
            or logits: only the argmax matters), any floating dtype and device.
        input_lengths: (N,) number of valid frames per sample (tensor, list or
            tuple, each in [0, T]); None means all T frames.
        blank: index of the blank class, in [0, C).

    Returns:
        N lists of class indices (Python ints), one per sample.

    Raises:
        ValueError: if log_probs is not 3-D floating point, blank is out of
            range, or input_lengths has the wrong size or out-of-range values.
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3 or not log_probs.is_floating_point():
        raise ValueError("ctcx.greedy_decode: log_probs must be a floating (T, N, C) tensor, got "
                         f"{getattr(log_probs, 'shape', type(log_probs).__name__)}")
    T, N, C = log_probs.shape
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < C:
        raise ValueError(f"ctcx.greedy_decode: blank = {blank!r} must be an int in [0, C) = [0, {C})")
    if input_lengths is None:
        lengths = torch.full((N,), T, dtype=torch.long)
    else:
        lengths = torch.as_tensor(input_lengths).reshape(-1).cpu()
        if lengths.dtype.is_floating_point or lengths.numel() != N:
            raise ValueError(f"ctcx.greedy_decode: input_lengths must hold N = {N} integers, got {lengths}")
        if N and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(f"ctcx.greedy_decode: input_lengths must lie in [0, T = {T}], got {lengths.tolist()}")
    best = log_probs.argmax(-1).t().cpu()  # (N, T)
    # keep frame t when it is not blank and differs from frame t-1
    keep = best != blank
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    return [best[n][keep[n]].tolist() for n in range(N)]
