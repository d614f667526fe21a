"""Short, obviously-correct reference implementations used by the tests.

Slow on purpose: plain Python loops over the textbook recursions, in float64.
"""
from __future__ import annotations

import itertools
import math
from typing import List, Sequence

import torch

NEG_INF = float("-inf")


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(v - m) for v in values))


def ctc_nll_reference(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0) -> float:
    """-log p(target | x) by the forward (alpha) recursion of Graves et al. 2006, eq. 5-8.

    log_probs: (T, C) log-probabilities of one sample (only its valid frames).
    """
    lp = log_probs.double().tolist()
    ext = [blank]
    for c in target:
        ext += [int(c), blank]
    S, T = len(ext), len(lp)
    if T == 0:
        return 0.0 if not target else math.inf
    alpha = [NEG_INF] * S
    alpha[0] = lp[0][ext[0]]
    if S > 1:
        alpha[1] = lp[0][ext[1]]
    for t in range(1, T):
        new = []
        for s in range(S):
            terms = [alpha[s]]
            if s >= 1:
                terms.append(alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new.append(_logsumexp(terms) + lp[t][ext[s]])
        alpha = new
    return -_logsumexp(alpha[-2:] if S > 1 else alpha[-1:])


def ctc_loss_reference(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Sequence[int],
                       target_lengths: Sequence[int], blank: int = 0) -> torch.Tensor:
    """Per-sample CTC losses (N,) in float64 for (T, N, C) log_probs and padded (N, S) targets."""
    return torch.tensor([
        ctc_nll_reference(log_probs[: int(input_lengths[n]), n], targets[n, : int(target_lengths[n])].tolist(), blank)
        for n in range(log_probs.shape[1])
    ], dtype=torch.float64)


def collapse(path: Sequence[int], blank: int = 0) -> List[int]:
    """The CTC many-to-one map B: merge repeated symbols, then remove blanks."""
    return [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]


def ctc_nll_brute_force(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0) -> float:
    """-log p(target | x) by enumerating all C**T alignments (tiny T and C only)."""
    lp = log_probs.double().tolist()
    T, C = len(lp), (len(lp[0]) if lp else 0)
    target = [int(c) for c in target]
    scores = [sum(lp[t][c] for t, c in enumerate(path))
              for path in itertools.product(range(C), repeat=T) if collapse(path, blank) == target]
    if T == 0:
        return 0.0 if not target else math.inf
    return -_logsumexp(scores) if scores else math.inf
