"""The fused CTC loss: ``ctcx.ctc_loss`` and ``ctcx.CTCLoss``.

Drop-in replacements for ``torch.nn.functional.ctc_loss`` and
``torch.nn.CTCLoss`` (Graves et al. 2006, "Connectionist Temporal
Classification: Labelling Unsegmented Sequence Data with Recurrent Neural
Networks", ICML). Argument normalisation and the reductions happen here with
ordinary torch ops; the kernels see one canonical form (see csrc/ops.cpp).
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from . import ops  # noqa: F401  (registers torch.ops.ctcx.ctc_loss)
from ._validate import check_device_values
from .ops import _plain_eager

__all__ = ["ctc_loss", "CTCLoss", "ctc_loss_with_logits", "CTCLossWithLogits"]

Lengths = Union[torch.Tensor, Sequence[int], int]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_REDUCTIONS = ("none", "mean", "sum")


def _to_device(fn: str, name: str, t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without blocking the host.

    CPU tensors (and lists, already made tensors) go to a CUDA device through
    pinned host memory with a non-blocking copy, so the call stays sync-free;
    while a CUDA graph is being captured that copy would replay the values of
    the capture, so it is refused. A CUDA tensor on another GPU is an error,
    not a silent copy.
    """
    if t.device == device:
        return t
    if device.type == "cuda" and not torch.compiler.is_compiling():
        if t.device.type == "cuda":
            raise ValueError(f"{fn}: {name} is on {t.device} but the input is on {device}; "
                             "pass them on the same GPU")
        if t.device.type == "cpu":
            if torch.cuda.is_current_stream_capturing():
                raise ValueError(
                    f"{fn}: {name} lives in host memory while a CUDA graph is being captured; pass "
                    f"it as a CUDA tensor on {device} (a captured copy from host memory would "
                    "replay the values of the capture)")
            return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _lengths_tensor(fn: str, name: str, value: Lengths, n: int, batched: bool,
                    device: torch.device) -> torch.Tensor:
    """Return ``value`` as an (n,) int64 tensor on ``device``; raise ValueError if it is not one."""
    if isinstance(value, torch.Tensor):
        if (batched and value.dtype == torch.long and value.dim() == 1 and value.shape[0] == n
                and value.device == device):
            return value  # already the canonical form
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise ValueError(f"{fn}: {name} must hold integers, got dtype {value.dtype}")
        t = value
    elif isinstance(value, int) and not isinstance(value, bool):
        t = torch.tensor([value])
    elif isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        t = torch.tensor(list(value), dtype=torch.long)
    else:
        raise ValueError(
            f"{fn}: {name} must be a tensor, list or tuple of ints, got {type(value).__name__}")
    # As torch.nn.functional.ctc_loss: a batch of one may give its length as a
    # 0-dim tensor (PyTorch's own tests do), unbatched input as () or (1,).
    expected = ((n,), ()) if batched and n == 1 else ((n,),) if batched else ((), (1,))
    if tuple(t.shape) not in expected:
        raise ValueError(
            f"{fn}: {name} must have shape {(n,) if batched else '() or (1,)'} "
            f"(one length per batch element), got {tuple(t.shape)}")
    return _to_device(fn, name, t.reshape(n).to(dtype=torch.long), device)


_REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}  # ctcx::ctc_loss_folded's reduction argument


def _fused_loss(op, x: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                target_lengths: Lengths, blank: int, reduction: str, zero_infinity: bool,
                fn: str, name: str, validate: bool) -> torch.Tensor:
    """Validate and normalise the arguments, run the fused op ``op``, reduce.

    ``fn`` and ``name`` (the function's and the input's names) only shape error messages.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{fn}: {name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.dim() not in (2, 3):
        raise ValueError(
            f"{fn}: {name} must be (T, N, C) or unbatched (T, C), got shape {tuple(x.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(1)
    T, N, C = x.shape
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < C:
        raise ValueError(f"{fn}: blank = {blank!r} must be an int in [0, C) = [0, {C})")

    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"{fn}: targets must be a tensor, got {type(targets).__name__}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise ValueError(f"{fn}: targets must be int32 or int64, got {targets.dtype}")
    if batched:
        if targets.dim() == 2 and targets.shape[0] != N:
            raise ValueError(
                f"{fn}: padded targets must be (N, S) with N = {N}, got shape {tuple(targets.shape)}")
        if targets.dim() not in (1, 2):
            raise ValueError(
                f"{fn}: targets must be (N, S) padded or 1-D concatenated, got shape {tuple(targets.shape)}")
    else:
        if targets.dim() != 1:
            raise ValueError(
                f"{fn}: unbatched targets must be (S,), got shape {tuple(targets.shape)}")
        targets = targets.unsqueeze(0)
    if targets.dtype not in (torch.int32, torch.int64):
        targets = targets.long()
    targets = _to_device(fn, "targets", targets, x.device).contiguous()

    il = _lengths_tensor(fn, "input_lengths", input_lengths, N, batched, x.device)
    tl = _lengths_tensor(fn, "target_lengths", target_lengths, N, batched, x.device)

    if x.stride(2) != 1:
        x = x.contiguous()
    # CUDA: values are checked here (the op never syncs); the CPU op checks them in C++.
    check_device_values(fn, x, targets, il, tl, blank, validate)
    # On the CPU the gradient is computed in the forward pass with the
    # reduction's per-sample weights folded in, and loss.backward() hands it
    # over untouched: for plain eager calls one C++ autograd node does all
    # that and the reduction (csrc/cpu/ctc_loss_folded_cpu.cpp); under
    # torch.compile, tensor subclasses or functorch, ctcx/ops.py's autograd
    # formula checks that the incoming gradient is the weights. On CUDA that
    # check would read device values, so the forward computes the loss only
    # and backward runs the fused op once with the incoming gradient as the
    # weights: one (T, N, C) gradient written once, no host sync, nothing
    # held in between.
    fold = torch.is_grad_enabled() and x.requires_grad and x.device.type == "cpu"
    if fold and _plain_eager(x, targets, il, tl):
        loss = torch.ops.ctcx.ctc_loss_folded.default(
            x, targets, il, tl, blank, bool(zero_infinity), _REDUCTION_CODES[reduction],
            op is torch.ops.ctcx.ctc_loss_with_logits)
        return loss if batched or reduction != "none" else loss.squeeze(0)
    loss_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    # Per-sample weights of the reduction (those of ctc_loss_folded).
    if reduction == "mean":
        weights = (tl.clamp_min(1) * N).to(loss_dtype).reciprocal_()
    else:
        weights = torch.ones(N, dtype=loss_dtype, device=x.device)
    loss, _ = op(x, targets, il, tl, blank, bool(zero_infinity), weights if fold else None)
    if reduction == "none":
        return loss if batched else loss.squeeze(0)
    return torch.dot(loss, weights) if reduction == "mean" else loss.sum()  # as ctc_loss_folded


def ctc_loss(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
             target_lengths: Lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False, *, validate: bool = True) -> torch.Tensor:
    """Connectionist Temporal Classification loss, fused forward and backward.

    Same arguments and results as :func:`torch.nn.functional.ctc_loss`
    (Graves et al. 2006): the negative log-likelihood of each target summed
    over all its alignments to the input frames.

    Args:
        log_probs: (T, N, C) or unbatched (T, C) log-probabilities (e.g. from
            ``log_softmax(-1)``) of C classes over T frames; float16, bfloat16,
            float32 or float64. Any strides; a copy is made only when the class
            dimension is not contiguous.
        targets: int32 or int64 labels, either padded (N, S) with S >= max
            target length, or the N targets concatenated, shape
            (sum(target_lengths),). Unbatched: (S,). Labels must lie in
            [0, C) and differ from ``blank``; padding values are ignored.
        input_lengths: (N,) frames used per sample, 0 <= length <= T; a tensor,
            list or tuple (an int or 0-dim tensor when unbatched).
        target_lengths: (N,) labels per sample, >= 0 (and <= S when padded).
        blank: index of the blank class, 0 <= blank < C.
        reduction: 'none' returns the (N,) losses (a scalar when unbatched);
            'sum' their sum; 'mean' the batch mean of each loss divided by its
            target length (clamped to >= 1), exactly as PyTorch defines it.
        zero_infinity: replace infinite losses (targets no alignment can
            reach) and their gradients with zeros.
        validate: (keyword-only) check the values of labels and lengths. On
            CUDA this costs one host sync; pass False to avoid it. With
            validate=False a CUDA call never synchronizes, whatever the form
            of ``targets`` and the lengths (CPU tensors, lists and tuples are
            copied through pinned memory without blocking), and it can be
            captured in a CUDA graph when ``targets`` and the lengths are
            CUDA tensors (host ones raise ValueError during capture: the
            graph would replay their captured values). Unchecked bad labels
            or lengths then give NaN losses (and NaN gradients), never
            out-of-bounds memory accesses. Under torch.compile CUDA values
            are not checked. CPU inputs are always checked (free there).

    Returns:
        The loss, a float32 tensor for float16/bfloat16 ``log_probs`` and of
        ``log_probs``' dtype otherwise. Its gradient with respect to
        ``log_probs`` is the true one: minus the posterior occupancy of each
        class, non-zero only on the blank and the target's labels, zero on
        frames past ``input_lengths``. (PyTorch returns ``exp(log_probs) -
        posterior``, which agrees only after log_softmax's backward; through
        ``log_softmax`` both give identical gradients for the logits.) An
        infinite loss without ``zero_infinity`` has NaN gradients, as in
        PyTorch.

    Raises:
        ValueError: naming the argument, for a wrong type, dtype or shape;
            ``targets`` or lengths on another GPU than ``log_probs`` (CPU ones
            are moved), or in host memory during CUDA-graph capture; labels
            out of range or equal to ``blank``; lengths out of range;
            concatenated targets whose size differs from sum(target_lengths);
            an unknown ``reduction``.
    """
    return _fused_loss(torch.ops.ctcx.ctc_loss, log_probs, targets, input_lengths, target_lengths,
                       blank, reduction, zero_infinity, "ctcx.ctc_loss", "log_probs", validate)


def ctc_loss_with_logits(logits: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                         target_lengths: Lengths, blank: int = 0, reduction: str = "mean",
                         zero_infinity: bool = False, *, validate: bool = True) -> torch.Tensor:
    """CTC loss from raw logits, with the log-softmax fused in.

    Equal to ``ctcx.ctc_loss(logits.log_softmax(-1), ...)`` (PyTorch precedent:
    ``binary_cross_entropy_with_logits``), but the log-softmax is computed row
    by row inside the kernel and never materialized, and the gradient with
    respect to ``logits`` (softmax minus posterior occupancy) is produced in
    the same pass. Saves the (T, N, C) log-probs tensor and log_softmax's
    forward and backward passes.

    Args:
        logits: (T, N, C) or unbatched (T, C) unnormalized scores; float16,
            bfloat16, float32 or float64; any strides with a contiguous class
            dimension (else one copy is made).
        targets, input_lengths, target_lengths, blank, reduction, zero_infinity,
            validate: as for :func:`ctcx.ctc_loss`.

    Returns:
        The loss, as :func:`ctcx.ctc_loss` returns it. Frames past
        ``input_lengths`` get a zero gradient; an infinite loss without
        ``zero_infinity`` has NaN gradients on its frames.

    Raises:
        ValueError: as :func:`ctcx.ctc_loss`, naming ``logits`` for the input.
    """
    return _fused_loss(torch.ops.ctcx.ctc_loss_with_logits, logits, targets, input_lengths,
                       target_lengths, blank, reduction, zero_infinity, "ctcx.ctc_loss_with_logits",
                       "logits", validate)


class _CTCLossModule(torch.nn.Module):
    """Holds the options shared by the loss modules."""

    _fn = "ctcx.CTCLoss"

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False, *,
                 validate: bool = True):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{self._fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.validate = validate

    def extra_repr(self) -> str:
        return (f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"
                + ("" if self.validate else ", validate=False"))


class CTCLoss(_CTCLossModule):
    """Module form of :func:`ctcx.ctc_loss`; a drop-in for :class:`torch.nn.CTCLoss`.

    Args:
        blank: index of the blank class (default 0).
        reduction: 'none' | 'mean' | 'sum' (default 'mean', PyTorch's definition).
        zero_infinity: zero infinite losses and their gradients (default False).
        validate: (keyword-only) check label and length values; False skips
            the host sync this costs on CUDA (see :func:`ctcx.ctc_loss`).

    ``forward(log_probs, targets, input_lengths, target_lengths)`` takes the
    shapes documented in :func:`ctcx.ctc_loss` and raises the same ValueErrors.
    """

    def forward(self, log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                target_lengths: Lengths) -> torch.Tensor:
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank,
                        self.reduction, self.zero_infinity, validate=self.validate)


class CTCLossWithLogits(_CTCLossModule):
    """Module form of :func:`ctcx.ctc_loss_with_logits`: CTC loss on raw logits, log_softmax fused.

    Args:
        blank: index of the blank class (default 0).
        reduction: 'none' | 'mean' | 'sum' (default 'mean', PyTorch's definition).
        zero_infinity: zero infinite losses and their gradients (default False).
        validate: (keyword-only) check label and length values; False skips
            the host sync this costs on CUDA (see :func:`ctcx.ctc_loss`).

    ``forward(logits, targets, input_lengths, target_lengths)`` takes (T, N, C)
    logits and the shapes documented in :func:`ctcx.ctc_loss`.
    """

    _fn = "ctcx.CTCLossWithLogits"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, input_lengths: Lengths,
                target_lengths: Lengths) -> torch.Tensor:
        return ctc_loss_with_logits(logits, targets, input_lengths, target_lengths, self.blank,
                                    self.reduction, self.zero_infinity, validate=self.validate)
