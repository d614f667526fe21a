"""The one object that describes a captcha training run.

:class:`TrainConfig` holds everything a run depends on: where the data comes
from (drawn captchas or a folder), preprocessing, the model, the
optimisation, evaluation and where outputs go. The command line maps its
flags onto it and every checkpoint stores it as a plain dict, so a checkpoint
alone is enough to rebuild the model, preprocess images exactly as in
training, and resume the run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .drawn import parse_oversample
from .images import output_width
from .labels import resolve_charset
from .model import HEADS, PRESETS

__all__ = ["AMP_MODES", "SCHEDULES", "DECODERS", "STYLES", "TrainConfig"]

AMP_MODES = ("auto", "off", "bf16", "fp16")
SCHEDULES = ("onecycle", "cosine")
DECODERS = ("greedy", "beam", "constrained")
STYLES = ("captcha", "general")
_DEVICES = ("auto", "cpu", "cuda")
_BEFORE_FIELD = {"width_scale": 1.0, "head": "gru", "pool_first": False, "oversample": "", "crop_margins": False}
"""Values that configs written before a field existed meant (older checkpoints lack the key)."""


def _is_int(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


@dataclass
class TrainConfig:
    """Settings of one captcha training run (defaults: the CPU recipe of ``train_captcha.py``).

    Class indices: 0 is the CTC blank, ``charset[i]`` is class ``i + 1``.

    Data: captchas drawn by ``captcha.image.ImageCaptcha`` unless
    ``data_dir`` names a folder (see :mod:`ctcx.captcha.folder`). ``charset``
    is a preset name (:data:`~ctcx.captcha.labels.CHARSETS`) or the characters
    themselves; empty means ``0-9A-Z`` for drawn data and "inferred from the
    training labels" for a folder. Labels have ``min_length``..``max_length``
    characters (drawn data). ``oversample`` (drawn training data only; the
    validation stream stays uniform) draws groups of characters more often
    than the others: ``"0O:3"``, the default, draws 0 and O three times as
    often, since telling them apart is most of what a model of the default
    captchas gets wrong (:func:`~ctcx.captcha.drawn.char_weights`).
    ``style="general"`` draws every image in a new style instead
    (:mod:`ctcx.captcha.synth`: ctcx's own renderer and the captcha library
    with every font found, at many sizes), for a reader of styles it never
    saw; its images differ in size, so a pool needs a fixed ``input_width``.

    Folders: images that cannot be read are left out and reported
    (``bad_images="skip"``) or stop the run (``"error"``;
    :func:`~ctcx.captcha.folder.readable_items`).

    Model: ``preset`` picks conv widths, the sequence head (``head``: 1-D
    convs or a bidirectional GRU), its width and depth (``rnn_hidden``,
    ``rnn_layers``) and the block order (``pool_first``)
    (:data:`~ctcx.captcha.model.PRESETS`, :class:`~ctcx.captcha.model.CRNN`);
    the fields left None take it.
    ``init_from`` names a checkpoint whose weights start the run instead of
    a fresh initialisation (fine-tuning; see :mod:`ctcx.captcha.finetune`).

    Training: every batch gets random affine maps of strength ``jitter``
    (:func:`~ctcx.captcha.images.jitter`); ``augment`` distorts images when
    they are drawn or read as well. With ``ema`` > 0 an exponential moving
    average of the weights (and batch-norm statistics) with that decay per
    step is what evaluation, the checkpoint's ``state_dict`` and export use.
    ``amp="auto"`` is bf16 on a GPU that has it and, on a CPU, bf16 when a
    probe of a few steps finds it clearly faster
    (:mod:`ctcx.captcha.precision`); the run's checkpoint records the choice.

    Preprocessing: images are scaled to ``input_height``; their width is
    ``input_width`` if set, else the aspect-preserving width times
    ``width_scale`` (1.25: a 160x60 captcha becomes 160x48, keeping its
    horizontal resolution, which is what tells 0 from O).

    Raises:
        ValueError: from ``__post_init__`` when a value is out of range (the
            message names the field and the value).
    """

    # data
    charset: str = ""
    min_length: int = 4
    max_length: int = 4
    oversample: str = "0O:3"  # CHARS:FACTOR groups drawn more often in training (drawn data), "" = uniform
    style: str = "captcha"  # drawn data: "captcha" (the captcha library) or "general" (many styles, ctcx.captcha.synth)
    image_width: int = 160
    image_height: int = 60
    fonts: Tuple[str, ...] = ()
    font_sizes: Tuple[int, ...] = ()
    data_dir: str = ""
    val_dir: str = ""
    val_split: float = 0.1
    bad_images: str = "skip"  # folders: "skip" (and report) images that cannot be read, or "error"
    augment: bool = False
    jitter: float = 0.0  # per-batch random affine maps (ctcx.captcha.images.jitter), 0 = off
    # preprocessing: height fixed; width fixed, or (input_width 0) in proportion times width_scale
    input_height: int = 48
    input_width: int = 0
    width_scale: float = 1.25
    channels: int = 1
    crop_margins: bool = False  # cut plain margins before resizing (ctcx.captcha.images.crop_margins)
    # model
    preset: str = "tiny"
    conv_channels: Optional[Tuple[int, ...]] = None
    rnn_hidden: Optional[int] = None
    rnn_layers: Optional[int] = None
    head: Optional[str] = None  # "conv" or "gru"; None = the preset's
    pool_first: Optional[bool] = None  # None = the preset's
    dropout: float = 0.0
    init_from: str = ""  # a checkpoint whose weights start the run (ctcx.captcha.finetune)
    # optimisation
    steps: int = 4000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"
    warmup: float = 0.15
    clip_grad: float = 5.0
    amp: str = "auto"
    ema: float = 0.999  # decay of the weights' moving average that is evaluated and saved, 0 = off
    # data pipeline: a pool of drawn images refreshed by DataLoader workers (0 = fresh batches)
    pool_size: int = 20000
    fresh_per_step: int = 24
    workers: int = 2
    # evaluation, logging, checkpoints
    eval_size: int = 2000
    eval_every: int = 1000
    save_every: int = 500
    log_every: int = 20
    decoders: Tuple[str, ...] = ("greedy",)
    beam_width: int = 10
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out_dir: str = "runs/captcha"

    def __post_init__(self) -> None:
        self.fonts = tuple(self.fonts)
        self.font_sizes = tuple(self.font_sizes)
        self.decoders = tuple(self.decoders)
        if self.charset or not self.data_dir:
            self.charset = resolve_charset(self.charset or "0-9A-Z")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.conv_channels = tuple(self.conv_channels)
        positive = ("min_length", "max_length", "image_width", "image_height", "input_height",
                    "rnn_hidden", "rnn_layers", "steps", "batch_size", "beam_width", "log_every")
        for name in positive:
            if not _is_int(getattr(self, name), 1):
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("input_width", "pool_size", "fresh_per_step", "workers", "eval_size", "eval_every",
                     "save_every", "threads", "seed"):
            if not _is_int(getattr(self, name), 0):
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) exceeds max_length ({self.max_length})")
        if len(self.conv_channels) != 4 or not all(_is_int(c, 1) for c in self.conv_channels):
            raise ValueError(f"conv_channels must be four positive ints, got {self.conv_channels!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if self.input_height % 16:
            raise ValueError(f"input_height must be a multiple of 16 (the conv stack halves it "
                             f"four times), got {self.input_height}")
        if self.input_width % 4:
            raise ValueError(f"input_width must be 0 (keep the aspect ratio) or a multiple of 4, "
                             f"got {self.input_width}")
        if not (isinstance(self.width_scale, (int, float)) and not isinstance(self.width_scale, bool)
                and 0.25 <= self.width_scale <= 4):
            raise ValueError(f"width_scale must be a horizontal stretch in [0.25, 4] (1 keeps the aspect "
                             f"ratio), got {self.width_scale!r}")
        if not self.data_dir and self.style == "captcha":
            frames = output_width((self.image_width, self.image_height), self.input_height,
                                  self.input_width, self.width_scale) // 4
            if frames < 2 * self.max_length - 1:
                raise ValueError(f"drawn {self.image_width}x{self.image_height} images give {frames} CTC "
                                 f"frames at input height {self.input_height}, too few for labels of "
                                 f"{self.max_length} characters (up to {2 * self.max_length - 1} frames "
                                 f"with repeats): draw wider images or raise input_height")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.style == "general" and not self.data_dir and self.pool_size and not self.input_width:
            raise ValueError("style 'general' draws images of many sizes, and a pool needs one shape: "
                             "set input_width (e.g. 160) or pool_size 0")
        if self.style == "general" and self.input_width and self.input_width // 4 < 2 * self.max_length - 1:
            raise ValueError(f"input_width {self.input_width} gives {self.input_width // 4} CTC frames, too few "
                             f"for labels of {self.max_length} characters (up to {2 * self.max_length - 1} "
                             f"frames with repeats)")
        if not isinstance(self.oversample, str):
            raise ValueError(f"oversample must be a string like '0O:3', got {self.oversample!r}")
        parse_oversample(self.oversample)
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter <= 4):
            raise ValueError(f"jitter must be a strength in [0, 4] (0 = off), got {self.jitter!r}")
        if not isinstance(self.crop_margins, bool):
            raise ValueError(f"crop_margins must be True or False, got {self.crop_margins!r}")
        if not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise ValueError(f"ema must be a decay in [0, 1) (0 = off), got {self.ema!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.clip_grad >= 0 and 0 <= self.dropout < 1
                and 0 <= self.warmup < 1 and 0 < self.val_split < 1):
            raise ValueError(f"need lr > 0, weight_decay >= 0, clip_grad >= 0 (0 = off), 0 <= dropout < 1, "
                             f"0 <= warmup < 1, 0 < val_split < 1; got lr={self.lr!r}, "
                             f"weight_decay={self.weight_decay!r}, clip_grad={self.clip_grad!r}, "
                             f"dropout={self.dropout!r}, warmup={self.warmup!r}, val_split={self.val_split!r}")
        if not isinstance(self.pool_first, bool):
            raise ValueError(f"pool_first must be True or False, got {self.pool_first!r}")
        for name, value, allowed in (("head", self.head, HEADS), ("amp", self.amp, AMP_MODES),
                                     ("bad_images", self.bad_images, ("skip", "error")),
                                     ("schedule", self.schedule, SCHEDULES), ("device", self.device, _DEVICES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        bad = [d for d in self.decoders if d not in DECODERS]
        if bad or not self.decoders:
            raise ValueError(f"decoders must be a non-empty subset of {DECODERS}, got {self.decoders!r}")
        if self.pool_size and self.pool_size < self.batch_size and not self.data_dir:
            raise ValueError(f"pool_size ({self.pool_size}) must be 0 or at least batch_size ({self.batch_size})")
        if self.val_dir and not self.data_dir:
            raise ValueError("val_dir needs data_dir (validation of drawn data is drawn too)")

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of builtins (tuples as lists), loadable with ``torch.load(weights_only=True)``."""
        out = dataclasses.asdict(self)
        for name in ("fonts", "font_sizes", "conv_channels", "decoders"):
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; fields missing from ``values`` keep their defaults, except
        ``width_scale``, which configs written before it existed lack: they meant 1.0.

        Raises:
            ValueError: if ``values`` has keys that are not fields (for
                example a checkpoint written by a newer ctcx), or bad values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(names)}")
        values = {**_BEFORE_FIELD, **values}
        return cls(**values)

    @property
    def preprocessing(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`~ctcx.captcha.images.preprocess` (and the datasets) for this run."""
        return dict(height=self.input_height, channels=self.channels, width=self.input_width,
                    width_scale=self.width_scale, crop=self.crop_margins)

    @property
    def num_classes(self) -> int:
        """Model outputs per frame: the blank plus one per charset character."""
        return len(self.charset) + 1

    @property
    def drawn(self) -> bool:
        """True when training data is drawn on the fly (no ``data_dir``)."""
        return not self.data_dir

