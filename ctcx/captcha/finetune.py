"""Fine-tuning: start a run from a trained checkpoint's weights (``--init-from``).

Every weight of the source model is copied except the classifier's rows,
which are carried over by character: the blank's row, and the row of every
character the two charsets share, go to that character's new row; characters
the source never had keep their fresh initialisation. Image size, label
length, data (drawn or a folder) and every optimisation setting may differ;
the architecture (conv widths, GRU size and layers, input channels and
height) must be the same. The optimizer and the schedule start fresh: it is
a new run, and its checkpoint records where its weights came from.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict

from .checkpoint import read_checkpoint
from .config import TrainConfig
from .model import CRNN
from .pretrained import resolve_checkpoint

__all__ = ["ARCHITECTURE", "init_from_checkpoint"]

# What the weights' shapes depend on, the classifier's rows aside.
ARCHITECTURE = ("conv_channels", "rnn_hidden", "rnn_layers", "head", "pool_first", "channels", "input_height")
_CLASSIFIER = ("classifier.weight", "classifier.bias")


def init_from_checkpoint(model: CRNN, config: TrainConfig, path: str | Path) -> Dict[str, Any]:
    """Load ``path``'s weights into ``model`` (built from ``config``), remapping
    the classifier by character.

    Returns:
        the provenance the run's checkpoint records: ``path``, ``sha256`` of
        the file, its ``step`` and ``charset``, and the ``carried`` and
        ``new`` characters of this run's charset.

    ``path`` may name a reader shipped with ctcx (``"general"``, :mod:`~ctcx.captcha.pretrained`).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if it is not a ctcx captcha checkpoint, or its model's
            architecture differs from ``config``'s (the message names each
            differing setting and both values).
    """
    path, _ = resolve_checkpoint(path)  # a file, or the name of a shipped reader ("general")
    saved = read_checkpoint(path)
    source = TrainConfig.from_dict(saved["config"])
    differ = [f"{name} {getattr(source, name)!r} (this run: {getattr(config, name)!r})"
              for name in ARCHITECTURE if getattr(source, name) != getattr(config, name)]
    if differ:
        raise ValueError(f"--init-from {path}: its model differs from this run's in " + ", ".join(differ)
                         + "; fine-tuning needs the same architecture (set these to match it)")
    weights = saved["state_dict"]
    state = model.state_dict()
    for name, value in weights.items():
        if name in _CLASSIFIER:
            continue
        if name not in state or state[name].shape != value.shape:
            raise ValueError(f"--init-from {path}: weight {name} of shape {tuple(value.shape)} does not fit "
                             f"this run's model")
        state[name] = value
    row_of = {ch: i + 1 for i, ch in enumerate(source.charset)}
    carried = [ch for ch in config.charset if ch in row_of]
    for name in _CLASSIFIER:
        rows = state[name].clone()
        rows[0] = weights[name][0]  # the blank
        for i, ch in enumerate(config.charset):
            if ch in row_of:
                rows[i + 1] = weights[name][row_of[ch]]
        state[name] = rows
    model.load_state_dict(state)
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "step": saved["step"], "charset": source.charset, "carried": "".join(carried),
            "new": "".join(ch for ch in config.charset if ch not in row_of)}
