"""Readers shipped with ctcx, loaded by name and checked by sha256.

``general`` is a CRNN pretrained on the general style mix
(``--style general``, :mod:`ctcx.captcha.synth`): it reads captchas of styles
it never saw, and is the starting point for fine-tuning on a small labelled
folder (``--init-from general``). Its recipe and accuracy are in README.md.

Wherever a checkpoint path is taken (``eval -c``, ``predict -c``,
``export -c``, ``--init-from``, :func:`~ctcx.captcha.checkpoint.load_checkpoint`),
a registered name that is not an existing file names the shipped file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Tuple

__all__ = ["PRETRAINED", "pretrained_path", "resolve_checkpoint", "pretrained"]

_FOLDER = Path(__file__).resolve().parent / "weights"

PRETRAINED: Dict[str, Dict[str, str]] = {
    # 2026-12-08, second version: the `small` conv widths with the conv head, 62 classes (0-9a-zA-Z),
    # 4-6 characters, RGB input 160x48, 10000 steps of 64 on the general mix (32 fresh images a step),
    # 62 min on a 2-core CPU; made by tools/ship_pretrained.py from the README's pretraining command
    "general": {"file": "general.pt", "sha256": "db646374d8a1cc4b7b6df1051ebb78c84b60438eb32c72b2d6d86df2108ab059"},
}
"""name -> {"file": file name in ctcx/captcha/weights, "sha256": of the file}."""


def pretrained_path(name: str) -> Path:
    """The shipped checkpoint ``name``, after checking its sha256.

    Raises:
        ValueError: if ``name`` is not registered (the message lists the names).
        FileNotFoundError: if the file is missing from the installation.
        RuntimeError: if the file's sha256 differs from the registered one
            (a damaged or replaced file).
    """
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained reader named {name!r}; shipped: {sorted(PRETRAINED) or 'none'}")
    entry = PRETRAINED[name]
    path = _FOLDER / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained reader {name!r}: {path} is missing from this installation")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise RuntimeError(f"pretrained reader {name!r}: {path} has sha256 {digest}, expected "
                           f"{entry['sha256']} (a damaged or replaced file; reinstall ctcx)")
    return path


def resolve_checkpoint(path: os.PathLike | str) -> Tuple[Path, bool]:
    """``(file, shipped)``: an existing file as given, else a registered name's shipped file.

    Raises:
        as :func:`pretrained_path` for a registered name.
    """
    given = Path(path)
    if given.exists() or str(path) not in PRETRAINED:
        return given, False
    return pretrained_path(str(path)), True


def pretrained(name: str = "general", device: str = "cpu"):
    """Load the shipped reader ``name``: (model in eval mode, TrainConfig, raw checkpoint dict).

    Raises:
        as :func:`pretrained_path`.
    """
    from .checkpoint import load_checkpoint

    return load_checkpoint(pretrained_path(name), device)
