"""Best-path (greedy) CTC decoding, batched in C++ and CUDA.

Prefix beam search lives in :mod:`ctcx.beam_search`; both share the argument
checks below.
"""
from __future__ import annotations

import functools
from typing import List, Sequence, Tuple, Union

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import ops

__all__ = ["greedy_decode"]

Lengths = Union[torch.Tensor, Sequence[int], None]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@functools.lru_cache(maxsize=16)
def _all_frames(N: int, T: int) -> torch.Tensor:
    """(N,) int64 CPU lengths, all T, shared between eager calls (the ops only
    read them). Traced calls and CUDA make their own: a tensor made during
    graph capture holds its values only after replay."""
    return torch.full((N,), T, dtype=torch.long)


def _integer_lengths(fn: str, name: str, value, N: int) -> torch.Tensor:
    """``value`` (a tensor, list or tuple of N integers) as an (N,) integer tensor
    on its own device (lists on the CPU); ValueError naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor):
        lengths = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        lengths = torch.tensor(list(value), dtype=torch.long)
    else:
        raise ValueError(f"{fn}: {name} must be a tensor, list or tuple of N = {N} integers, "
                         f"got {type(value).__name__}")
    if (lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool
            or lengths.numel() != N):
        raise ValueError(f"{fn}: {name} must hold N = {N} integers, got {lengths}")
    return lengths.reshape(N)


def _decode_inputs(fn: str, log_probs: torch.Tensor, input_lengths: Lengths, blank: int,
                   batch_first: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate the arguments every decoder shares; return the ops' canonical form.

    Returns log_probs as (T, N, C) with unit class stride (a view when
    possible) and input_lengths as an (N,) int64 tensor on its device.
    Raises ValueError naming the bad argument.
    """
    shape = "(N, T, C)" if batch_first else "(T, N, C)"
    if (not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3
            or log_probs.dtype not in _FLOAT_DTYPES):
        raise ValueError(f"{fn}: log_probs must be a floating {shape} tensor (float16, bfloat16, "
                         f"float32 or float64), got "
                         f"{getattr(log_probs, 'shape', type(log_probs).__name__)}"
                         f"{' of ' + str(log_probs.dtype) if isinstance(log_probs, torch.Tensor) else ''}")
    if log_probs.is_cuda and not ops.cuda_available():
        raise RuntimeError(
            f"{fn}: got CUDA tensors, but ctcx was built without its CUDA kernels; rebuild it "
            "with a CUDA build of torch and the CUDA toolkit (`pip install --no-build-isolation .`)")
    if batch_first:
        log_probs = log_probs.transpose(0, 1)
    T, N, C = log_probs.shape
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < C:
        raise ValueError(f"{fn}: blank = {blank!r} must be an int in [0, C) = [0, {C})")
    if log_probs.stride(2) != 1:
        log_probs = log_probs.contiguous()

    if input_lengths is None:
        if (log_probs.device.type == "cpu" and not torch.compiler.is_compiling()
                and _get_current_dispatch_mode() is None):
            return log_probs, _all_frames(N, T)
        return log_probs, torch.full((N,), T, dtype=torch.long, device=log_probs.device)
    lengths = _integer_lengths(fn, "input_lengths", input_lengths, N)
    # Values need the data (one host sync for CUDA lengths): skipped while
    # torch.compile or a tracing mode runs. The CPU op checks them again in
    # C++; the CUDA kernels clamp them.
    if N and not torch.compiler.is_compiling() and _get_current_dispatch_mode() is None:
        if bool(((lengths < 0) | (lengths > T)).any()):
            raise ValueError(f"{fn}: input_lengths must lie in [0, T = {T}], got {lengths.tolist()}")
    return log_probs, lengths.to(device=log_probs.device, dtype=torch.long)


def greedy_decode(log_probs: torch.Tensor, input_lengths: Lengths = None, blank: int = 0, *,
                  batch_first: bool = False) -> List[List[int]]:
    """Best-path CTC decoding (Graves et al. 2006, section 3.2).

    Takes the most probable class of every frame, merges consecutive repeats,
    then drops blanks (frames "a a - a" decode to [a, a]). Runs as one batched
    C++ op on the CPU (parallel over the batch) or CUDA kernels on the GPU.

    Args:
        log_probs: (T, N, C) scores per frame, or (N, T, C) with
            ``batch_first=True`` (log-probabilities, probabilities or logits:
            only the argmax matters); float16, bfloat16, float32 or float64,
            CPU or CUDA. Ties go to the smaller class index, NaN beats
            everything (as ``torch.argmax``).
        input_lengths: (N,) number of valid frames per sample (tensor, list or
            tuple, each in [0, T]); None means all T frames.
        blank: index of the blank class, in [0, C).
        batch_first: whether log_probs is (N, T, C).

    Returns:
        N lists of class indices (Python ints), one per sample.

    Raises:
        ValueError: if log_probs is not a 3-D tensor of a supported floating
            dtype, blank is out of range, or input_lengths has the wrong size
            or out-of-range values.
    """
    lp, lengths = _decode_inputs("ctcx.greedy_decode", log_probs, input_lengths, blank, batch_first)
    tokens, counts = torch.ops.ctcx.ctc_greedy_decode(lp, lengths, blank)
    return [row[:n] for row, n in zip(tokens.tolist(), counts.tolist())]
