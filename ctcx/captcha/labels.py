"""Labels: charset presets, label <-> class indices, labels read from file names.

Class indices follow one convention everywhere in the trainer: 0 is the CTC
blank and ``charset[i]`` is class ``i + 1``.
"""
from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

__all__ = ["CHARSETS", "resolve_charset", "infer_charset", "encode_label", "decode_label",
           "label_from_filename", "parse_length_range"]

CHARSETS: Dict[str, str] = {
    "digits": string.digits,
    "hex": string.digits + "abcdef",
    "A-Z": string.ascii_uppercase,
    "a-z": string.ascii_lowercase,
    "0-9A-Z": string.digits + string.ascii_uppercase,
    "0-9a-z": string.digits + string.ascii_lowercase,
    "0-9a-zA-Z": string.digits + string.ascii_lowercase + string.ascii_uppercase,
}
"""Charset presets by name; any other string is taken as the characters themselves."""


def resolve_charset(text: str) -> str:
    """A preset name from :data:`CHARSETS`, or the literal characters of ``text``.

    Raises:
        ValueError: if the result is empty or repeats a character.
    """
    charset = CHARSETS.get(text, text)
    if not charset:
        raise ValueError("charset must not be empty")
    repeated = sorted({c for c in charset if charset.count(c) > 1})
    if repeated:
        raise ValueError(f"charset {charset!r} repeats {repeated}; presets: {', '.join(CHARSETS)}")
    return charset


def infer_charset(labels: Iterable[str]) -> str:
    """The sorted set of characters used by ``labels``.

    Raises:
        ValueError: if the labels hold no character at all.
    """
    chars = sorted(set("".join(labels)))
    if not chars:
        raise ValueError("cannot infer a charset: the labels are all empty")
    return "".join(chars)


def encode_label(label: str, charset: str) -> List[int]:
    """Class indices of ``label``: ``charset[i]`` is class ``i + 1`` (0 is the CTC blank).

    Raises:
        ValueError: if ``label`` is empty or holds a character not in ``charset``.
    """
    if not label:
        raise ValueError("empty label")
    unknown = sorted(set(label) - set(charset))
    if unknown:
        raise ValueError(f"label {label!r} has characters {unknown} that are not in the charset {charset!r}")
    return [charset.index(c) + 1 for c in label]


def decode_label(indices: Sequence[int], charset: str) -> str:
    """Inverse of :func:`encode_label` for class indices in ``[1, len(charset)]``."""
    return "".join(charset[i - 1] for i in indices)


def label_from_filename(path: os.PathLike | str) -> str:
    """The label a file name carries: ``LABEL_anything.ext`` -> LABEL, ``LABEL.ext`` -> LABEL.

    The label is the name without its suffix, cut at the last underscore if
    there is one (so a label that itself holds ``_`` needs a labels.tsv).

    Raises:
        ValueError: if that leaves an empty label (``_0001.png``).
    """
    stem = Path(path).stem
    label = stem.rpartition("_")[0] if "_" in stem else stem
    if not label:
        raise ValueError(f"cannot read a label from {Path(path).name!r}: expected LABEL_anything"
                         f"{Path(path).suffix} or LABEL{Path(path).suffix}")
    return label


def parse_length_range(text: str | int) -> tuple:
    """``"4"`` -> (4, 4); ``"4-6"`` -> (4, 6).

    Raises:
        ValueError: if it is not one positive int or ``MIN-MAX`` with 1 <= MIN <= MAX.
    """
    parts = str(text).split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        low, high = 0, -1
    if not 1 <= low <= high:
        raise ValueError(f"length must be N or MIN-MAX with 1 <= MIN <= MAX, got {text!r}")
    return low, high
