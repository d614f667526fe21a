"""Which autocast a run uses: ``--amp`` modes, and the CPU probe behind ``--amp auto``.

On a GPU ``auto`` is bf16 where the GPU has it. On a CPU bf16 pays only where
the CPU has fast bf16 instructions (AVX512-BF16, AMX) and the oneDNN kernels
use them, which cannot be told reliably from flags, so ``auto`` times a few
training steps of the run's own model both ways (:func:`probe_cpu_bf16`)
and takes bf16 only when it is clearly faster. The choice is written into the
run's config, so a resumed run keeps it whatever machine it resumes on.
"""
from __future__ import annotations

import copy
import time
from typing import Optional, Tuple

import torch

import ctcx

__all__ = ["AMP_SPEEDUP", "amp_dtype", "probe_cpu_bf16", "bf16_pays"]

AMP_SPEEDUP = 1.25
"""bf16 must run a training step at least this many times faster than float32 for ``auto`` to take it."""


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of a resolved ``amp`` mode on ``device`` (None = full float32).

    ``"auto"`` here is bf16 on a GPU that supports it and off on a CPU; the
    trainer resolves ``auto`` on a CPU by :func:`probe_cpu_bf16` first.
    """
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def bf16_pays(float32_seconds: float, bf16_seconds: float, speedup: float = AMP_SPEEDUP) -> bool:
    """True when a bf16 step took at most ``1 / speedup`` of a float32 step."""
    return bf16_seconds * speedup <= float32_seconds


def probe_cpu_bf16(model: torch.nn.Module, example: torch.Tensor, target_length: int,
                   repeats: int = 4) -> Tuple[float, float]:
    """Seconds of one forward + backward step of ``model`` in float32 and under bf16 autocast, on the CPU.

    Each is the fastest of ``repeats`` steps after one warm-up step, the two
    kinds interleaved so that a passing load hits both alike. A copy of
    ``model`` runs (in train mode), so the model itself, its batch-norm
    statistics included, and the global random state are left as they were.

    Args:
        model: the CRNN, on the CPU.
        example: float (N, C, H, W) model input.
        target_length: label length of the dummy targets (at most T / 2).
    """
    times = {None: float("inf"), torch.bfloat16: float("inf")}
    model = copy.deepcopy(model).train()
    with torch.random.fork_rng(devices=[]):
        n = example.shape[0]
        targets = torch.ones((n, target_length), dtype=torch.long)
        lengths = torch.full((n,), target_length, dtype=torch.long)
        for attempt in range(repeats + 1):
            for dtype in times:
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = model(example)
                frames = torch.full((n,), logits.shape[0], dtype=torch.long)
                loss = ctcx.ctc_loss_with_logits(logits, targets, frames, lengths, blank=0, zero_infinity=True)
                loss.backward()
                if attempt:
                    times[dtype] = min(times[dtype], time.perf_counter() - started)
    return times[None], times[torch.bfloat16]
