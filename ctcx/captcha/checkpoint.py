"""Checkpoints: self-describing, complete enough to resume a run exactly, written atomically.

A checkpoint is a dict of builtins and tensors only, read back with
``torch.load(weights_only=True)`` (no arbitrary unpickling):

- ``format``; ``config`` (:meth:`TrainConfig.to_dict`) and ``charset``;
- ``state_dict``: the model weights to use (CPU tensors): the moving
  average of the weights when the run keeps one (``config["ema"]`` > 0), else
  the trained weights. Evaluation, prediction, export and ``--init-from``
  read this;
- ``train_state_dict`` and ``ema_steps`` (only with a moving average): the
  trained weights themselves and the number of averaged steps, for resuming;
- ``step``, ``complete`` (False while training goes on);
- ``optimizer``, ``scheduler``, ``scaler``: their ``state_dict()``;
- ``rng``: torch CPU/CUDA and Python ``random`` states of every process, and
  the state of its jitter generator;
- ``streams``: each process's data stream state (positions consumed and pool
  generator, see :class:`~ctcx.captcha.stream.BatchStream`);
- ``metrics`` (last evaluation) and ``history`` (the logged curves);
- ``init``: where the run's first weights came from with ``--init-from``
  (path, sha256 of the file, its step and charset, the characters carried
  over and the new ones), None for a fresh start;
- ``calibration`` (only in a finished run with a validation set, or after
  the ``calibrate`` command): ``temperature`` (the T that confidences use, see
  :mod:`~ctcx.captcha.calibration`), ``fitted_on`` (images), ``ece_before`` and
  ``ece_after`` (at T = 1 and at T, on those images). A checkpoint without
  it is not calibrated: its confidences use T = 1.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import torch

from .config import TrainConfig
from .model import CRNN, build_model

__all__ = ["CHECKPOINT_FORMAT", "atomic_write", "save_checkpoint", "read_checkpoint", "update_checkpoint",
           "load_checkpoint"]

CHECKPOINT_FORMAT = "ctcx.captcha.crnn/2"


def atomic_write(path: os.PathLike | str, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``.

    Readers never see half a file, and a failed write leaves any existing
    ``path`` untouched; the temp file is flushed to disk before the rename,
    and temp files of ``path`` left by killed processes are removed. The
    temp file is created like any file (the umask applies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        _fsync(tmp)  # the bytes reach the disk before the name does (power loss, not only a kill)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)
    return path


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a directory on a platform that cannot open one
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_orphans(path: Path) -> None:
    """Delete temp files of ``path`` left by processes that no longer run
    (a run killed while saving, e.g. by SIGKILL, cannot clean up after itself).
    POSIX only: elsewhere os.kill cannot ask whether a process runs."""
    if os.name != "posix":
        return
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        pid = orphan.name[len(path.name) + 2:-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            orphan.unlink(missing_ok=True)
        except OSError:  # alive under another user, or no way to tell: leave it
            pass


def save_checkpoint(path: os.PathLike | str, contents: Dict[str, Any]) -> Path:
    """Write ``contents`` (see the module docstring) atomically, adding ``format``."""
    return atomic_write(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **contents}, tmp))


def read_checkpoint(path: os.PathLike | str) -> Dict[str, Any]:
    """The raw checkpoint dict, loaded safely onto the CPU.

    ``path`` may also be the name of a reader shipped with ctcx (``"general"``,
    :mod:`~ctcx.captcha.pretrained`) when no file of that name exists.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a ctcx captcha checkpoint.
        RuntimeError: if a shipped reader's file fails its sha256 check.
    """
    from .pretrained import resolve_checkpoint

    path, _ = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types, with pages of advice
        raise ValueError(f"{path} is not a ctcx captcha checkpoint: torch.load(weights_only=True) "
                         f"failed with {type(err).__name__}") from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a ctcx captcha checkpoint (format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    missing = sorted({"state_dict", "charset", "config", "step"} - set(checkpoint))
    if missing:
        raise ValueError(f"{path} lacks the entries {missing}")
    if checkpoint["charset"] != checkpoint["config"].get("charset"):
        raise ValueError(f"{path}: charset {checkpoint['charset']!r} disagrees with its config")
    calibration = checkpoint.get("calibration")
    if calibration is not None:
        temperature = calibration.get("temperature") if isinstance(calibration, dict) else None
        if not isinstance(temperature, float) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"{path}: its calibration {calibration!r} has no temperature > 0")
    return checkpoint


def update_checkpoint(path: os.PathLike | str, entries: Dict[str, Any]) -> Path:
    """Add or replace ``entries`` in the checkpoint at ``path``, rewriting it atomically.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_checkpoint`; ValueError
            also for the name of a shipped reader (copy its file first).
    """
    from .pretrained import resolve_checkpoint

    if resolve_checkpoint(path)[1]:
        raise ValueError(f"{path!s} is a reader shipped with ctcx, not a file to change: copy it "
                         f"(from ctcx.captcha.pretrained import pretrained_path; pretrained_path({str(path)!r})) and change the copy")
    checkpoint = read_checkpoint(path)
    checkpoint.update(entries)
    return save_checkpoint(path, checkpoint)


def load_checkpoint(path: os.PathLike | str, device: str | torch.device = "cpu"
                    ) -> Tuple[CRNN, TrainConfig, Dict[str, Any]]:
    """Rebuild the model a checkpoint describes.

    Returns:
        (model in eval mode on ``device``, its TrainConfig, the raw checkpoint dict).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a ctcx captcha checkpoint, or its
            weights do not fit its config.
    """
    checkpoint = read_checkpoint(path)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the model its config describes: {err}") from err
    return model.to(device).eval(), config, checkpoint
