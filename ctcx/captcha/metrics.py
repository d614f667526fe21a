"""Scores for predicted strings against reference labels."""
from __future__ import annotations

from typing import Sequence

__all__ = ["edit_distance", "exact_match", "character_error_rate"]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: fewest insertions, deletions and substitutions turning ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no references to score against")


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction in [0, 1] of predictions equal to their reference.

    Raises:
        ValueError: if the lengths differ or there are no references.
    """
    _check(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def character_error_rate(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Total edit distance divided by total reference length (0 = perfect; can exceed 1).

    Raises:
        ValueError: if the lengths differ, there are no references, or all are empty.
    """
    _check(predictions, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("all references are empty")
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / total
