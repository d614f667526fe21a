"""Value checks of the CTC loss arguments on CUDA, with torch ops and one host sync.

On the CPU the C++ op checks values itself, at no cost. The CUDA op reads no
values on the host, so that it never synchronizes and can be captured in a
CUDA graph; ``ctcx.ctc_loss`` therefore checks CUDA arguments here unless it
is called with ``validate=False``. The kernels are memory-safe either way:
unchecked bad values give NaN losses, never out-of-bounds accesses. Messages
match the C++ checks of csrc/ctc_loss_checks.cpp.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .ops import cuda_available


def _first(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True in the flattened ``mask``, or ``mask.numel()`` if none."""
    flat = mask.reshape(-1)
    idx = torch.arange(flat.numel(), device=flat.device)
    none = torch.full((1,), flat.numel(), device=flat.device, dtype=idx.dtype)
    return torch.cat([torch.where(flat, idx, flat.numel()), none]).amin()


def check_device_values(fn: str, x: torch.Tensor, targets: torch.Tensor, il: torch.Tensor,
                        tl: torch.Tensor, blank: int, validate: bool) -> None:
    """The value checks of CUDA arguments, unless ``validate`` is False.

    No-op for non-CUDA tensors (the CPU op checks in C++) and while
    torch.compile or a tracing mode runs (the checks need the values).
    """
    # is_compiling() first: torch.compile(fullgraph=True) cannot trace the rest.
    if x.device.type != "cuda" or torch.compiler.is_compiling():
        return
    if not cuda_available():
        raise RuntimeError(
            f"{fn}: got CUDA tensors, but ctcx was built without its CUDA kernels; rebuild it "
            "with a CUDA build of torch and the CUDA toolkit (`pip install --no-build-isolation .`)")
    if not validate or _get_current_dispatch_mode() is not None:
        return
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            f"{fn}: checking the values of the arguments needs a host sync, which CUDA graph "
            "capture forbids; pass validate=False (bad labels or lengths then give NaN losses)")
    check_values(fn, x, targets, il, tl, blank)


def check_values(fn: str, x: torch.Tensor, targets: torch.Tensor, il: torch.Tensor,
                 tl: torch.Tensor, blank: int) -> None:
    """Raise ValueError for bad lengths or labels, on any device, with one host sync.

    Arguments in the op's canonical form: ``x`` (T, N, C); ``targets`` (N, S)
    padded or 1-D concatenated; ``il`` and ``tl`` (N,) int64; one device.
    """
    T, N, C = x.shape
    padded = targets.dim() == 2
    S = targets.shape[1] if padded else 0
    bad_length = (il < 0) | (il > T) | (tl < 0)
    if padded:
        bad_length |= tl > S
        in_target = torch.arange(S, device=x.device) < tl.clamp(0, S)[:, None]
    else:
        in_target = torch.ones_like(targets, dtype=torch.bool)
    bad_label = in_target & ((targets < 0) | (targets >= C) | (targets == blank))
    # The one sync: all verdicts at once.
    first_length, total, first_label = torch.stack(
        [_first(bad_length), tl.sum(), _first(bad_label)]).tolist()

    if first_length < N:
        n = first_length
        il_n, tl_n = int(il[n]), int(tl[n])
        if not 0 <= il_n <= T:
            raise ValueError(f"{fn}: input_lengths[{n}] = {il_n} is out of range; "
                             f"expected 0 <= input_length <= T = {T}")
        if tl_n < 0:
            raise ValueError(f"{fn}: target_lengths[{n}] = {tl_n} is negative")
        raise ValueError(f"{fn}: target_lengths[{n}] = {tl_n} exceeds the padded targets' "
                         f"width S = {S}")
    if not padded and total != targets.numel():
        raise ValueError(f"{fn}: concatenated targets have {targets.numel()} labels but "
                         f"sum(target_lengths) = {total}")
    if first_label < targets.numel():
        if padded:
            n, k = divmod(first_label, S)
        else:
            ends = tl.cumsum(0)
            n = int(torch.searchsorted(ends, torch.tensor(first_label, device=ends.device),
                                       right=True))
            k = first_label - (int(ends[n - 1]) if n > 0 else 0)
        c = int(targets.reshape(-1)[first_label])
        raise ValueError(f"{fn}: targets label {c} (sample {n}, position {k}) is invalid; "
                         f"expected 0 <= label < C = {C} and label != blank = {blank}")
