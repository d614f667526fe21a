"""The one object that describes a captcha training run.

:class:`TrainConfig` holds everything a run depends on: the charset, the
drawing and preprocessing sizes, the model shape, the optimisation schedule
and where the checkpoint goes. The command line maps its flags onto it and
every checkpoint stores it as a plain dict, so a checkpoint alone is enough to
rebuild the model and preprocess images exactly as in training.
"""
from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from typing import Any, Dict, Tuple

__all__ = ["CHARSET_36", "TrainConfig"]

CHARSET_36 = string.digits + string.ascii_uppercase
"""``0-9A-Z``: the 36 characters of the captcha-36x4 set."""

_DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Settings of one captcha training run (defaults: the CPU recipe of ``train_captcha.py``).

    Class indices: 0 is the CTC blank, ``charset[i]`` is class ``i + 1``.

    Raises:
        ValueError: from ``__post_init__`` when a value is out of range (the
            message names the field and the value).
    """

    # what is drawn (captcha.image.ImageCaptcha)
    charset: str = CHARSET_36
    label_length: int = 4
    image_width: int = 160
    image_height: int = 60
    # preprocessing shared by training and evaluation: grayscale, resized to this (pixels)
    input_height: int = 32
    input_width: int = 96
    # model: conv stack widths, bidirectional GRU hidden size (per direction)
    conv_channels: Tuple[int, ...] = (16, 48, 96, 128)
    rnn_hidden: int = 96
    # optimisation: AdamW with a one-cycle learning-rate schedule
    steps: int = 5500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    # data: a pool of drawn images that worker processes keep refreshing
    pool_size: int = 40000
    fresh_per_step: int = 4
    workers: int = 2
    eval_size: int = 2000
    eval_every: int = 1000
    seed: int = 0
    # where and how
    device: str = "auto"
    threads: int = 0
    checkpoint: str = "runs/captcha/crnn.pt"

    def __post_init__(self) -> None:
        self.conv_channels = tuple(self.conv_channels)
        if not self.charset or len(set(self.charset)) != len(self.charset):
            raise ValueError(f"charset must be non-empty without repeats, got {self.charset!r}")
        positive = ("label_length", "image_width", "image_height", "input_height", "input_width",
                    "rnn_hidden", "steps", "batch_size", "pool_size", "workers")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("fresh_per_step", "eval_size", "eval_every", "threads", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if len(self.conv_channels) != 4 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                               for c in self.conv_channels):
            raise ValueError(f"conv_channels must be four positive ints, got {self.conv_channels!r}")
        if self.input_height % 16:
            raise ValueError(f"input_height must be a multiple of 16 (the conv stack halves it "
                             f"four times), got {self.input_height}")
        if self.input_width % 4:
            raise ValueError(f"input_width must be a multiple of 4 (the conv stack halves it "
                             f"twice), got {self.input_width}")
        if self.input_width // 4 < 2 * self.label_length:
            raise ValueError(f"input_width = {self.input_width} gives {self.input_width // 4} "
                             f"frames, too few for labels of {self.label_length} characters "
                             f"(CTC needs up to 2 * length frames); use at least "
                             f"{8 * self.label_length}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr!r}, "
                             f"weight_decay={self.weight_decay!r}")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {self.device!r}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of builtins (tuples as lists), loadable with ``torch.load(weights_only=True)``."""
        out = dataclasses.asdict(self)
        out["conv_channels"] = list(self.conv_channels)
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; fields missing from ``values`` keep their defaults.

        Raises:
            ValueError: if ``values`` has keys that are not fields (for
                example a checkpoint written by a newer ctcx), or bad values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(names)}")
        return cls(**values)

    @property
    def num_classes(self) -> int:
        """Model outputs per frame: the blank plus one per charset character."""
        return len(self.charset) + 1

