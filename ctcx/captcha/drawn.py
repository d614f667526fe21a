"""Captchas drawn on the fly with the ``captcha`` library, reproducibly.

Sample ``index`` of a stream is a pure function of ``(seed, stream, index)``:
its label, and also its image. captcha 0.7.1 draws every random choice of an
image from the :mod:`secrets` module, which cannot be seeded; while drawing
we point the ``secrets`` name inside ``captcha.image`` at a seeded
:class:`random.Random` that offers the three functions it uses. Reproducible
images are what make ``--resume`` continue a killed run exactly and let a
worker process draw any sample in any order.
"""
from __future__ import annotations

import random
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
from torch.utils.data import Dataset

from .images import augment as augment_image
from .images import preprocess

__all__ = ["DrawSpec", "draw_captcha", "DrawnCaptchas", "parse_oversample", "char_weights"]


class _SeededSecrets:
    """Stands in for the ``secrets`` module inside ``captcha.image``; not for cryptography."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def randbelow(self, n: int) -> int:
        return self.rng.randrange(n)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def choice(self, seq):
        return self.rng.choice(seq)


_SHIM = _SeededSecrets()


@dataclass(frozen=True)
class DrawSpec:
    """What to draw: labels of ``min_length``..``max_length`` characters of ``charset``.

    ``size`` is (width, height) in pixels of the drawn image; ``fonts`` and
    ``font_sizes`` go to ``captcha.image.ImageCaptcha`` (empty = its defaults).
    ``weights``: how often each character of ``charset`` is drawn, relative
    to the others (empty = all equally often, the stream drawn before the field
    existed, bit for bit); see :func:`char_weights`. ``style``: ``"captcha"``
    (the library at ``size``) or ``"general"`` (:func:`ctcx.captcha.synth.draw_general`:
    many styles and sizes; ``size`` and ``font_sizes`` are then unused, ``fonts``
    empty = :func:`~ctcx.captcha.synth.font_files`).
    """

    charset: str
    min_length: int
    max_length: int
    size: Tuple[int, int] = (160, 60)
    fonts: Tuple[str, ...] = field(default_factory=tuple)
    font_sizes: Tuple[int, ...] = field(default_factory=tuple)
    weights: Tuple[float, ...] = field(default_factory=tuple)
    style: str = "captcha"


def parse_oversample(text: str) -> Dict[str, float]:
    """``"0O:3,1I:2"`` -> ``{"0": 3.0, "O": 3.0, "1": 2.0, "I": 2.0}``: groups of
    characters drawn ``factor`` times as often as the others.

    Raises:
        ValueError: for a group without ``:``, no characters, a factor that is
            not a number in (0, 100], or a character in two groups.
    """
    out: Dict[str, float] = {}
    for group in filter(None, (g.strip() for g in text.split(","))):
        chars, sep, factor = group.rpartition(":")
        try:
            value = float(factor)
        except ValueError:
            value = float("nan")
        if not sep or not chars or not 0 < value <= 100:
            raise ValueError(f"oversample: {group!r} must be CHARACTERS:FACTOR with a factor in (0, 100], "
                             f"for example '0O:3'")
        for c in chars:
            if c in out:
                raise ValueError(f"oversample: {c!r} is in two groups of {text!r}")
            out[c] = value
    return out


def char_weights(charset: str, oversample: str) -> Tuple[float, ...]:
    """Per-character draw weights of ``charset`` for :class:`DrawSpec` (empty = uniform).

    A group of :func:`parse_oversample` counts only when all its characters
    are in ``charset`` (the default ``"0O:3"`` does nothing for digits alone,
    where raising ``0`` would only skew the prior).
    """
    weights = {}
    for group in filter(None, (g.strip() for g in oversample.split(","))):
        chars = parse_oversample(group)
        if all(c in charset for c in chars):
            weights.update(chars)
    if not weights or all(v == 1 for v in weights.values()):
        return ()
    return tuple(weights.get(c, 1.0) for c in charset)


@lru_cache(maxsize=512)  # one entry per (size, fonts, sizes): the general mix uses a few hundred
def library_drawer(size: Tuple[int, int], fonts: Tuple[str, ...] = (), font_sizes: Tuple[int, ...] = ()):
    """The ``captcha.image.ImageCaptcha`` drawing at ``size`` with ``fonts`` and
    ``font_sizes`` (empty = the library's), its randomness pointed at the seeded
    stand-in (set ``_SHIM.rng`` before drawing)."""
    import captcha.image  # imported here: worker processes need it, importers of ctcx may not

    captcha.image.secrets = _SHIM  # see the module docstring
    return captcha.image.ImageCaptcha(width=size[0], height=size[1], fonts=list(fonts) or None,
                                      font_sizes=tuple(font_sizes) or None)


def _drawer(spec: DrawSpec):
    return library_drawer(spec.size, spec.fonts, spec.font_sizes)  # what the drawer depends on


def draw_captcha(spec: DrawSpec, seed: int, stream: str, index: int):
    """Draw sample ``index`` of ``stream``; the same arguments always give the same image.

    Returns:
        (PIL image of ``spec.size``, its label).
    """
    rng = random.Random(f"{seed}/{stream}/{index}")
    length = rng.randint(spec.min_length, spec.max_length)
    if spec.weights:
        label = "".join(rng.choices(spec.charset, spec.weights, k=length))
    else:
        label = "".join(rng.choice(spec.charset) for _ in range(length))
    if spec.style == "general":
        from .synth import draw_general, font_files

        fonts = spec.fonts or font_files("".join(sorted(set(spec.charset))))
        return draw_general(label, rng, fonts), label
    drawer = _drawer(spec)
    _SHIM.rng = rng
    return drawer.generate_image(label), label


class DrawnCaptchas(Dataset):
    """Map-style dataset: item ``i`` is drawn sample ``i`` of a stream, preprocessed.

    Items are ``(uint8 array (C, H, W), label)``; see :func:`draw_captcha` and
    :func:`~ctcx.captcha.images.preprocess`. With ``augment``, the image is
    distorted by :func:`~ctcx.captcha.images.augment` (also reproducibly).
    The length is nominal (2**62): samplers pick the indices.
    """

    def __init__(self, spec: DrawSpec, seed: int, stream: str, height: int, channels: int = 1,
                 width: int = 0, augment: bool = False, width_scale: float = 1.0, crop: bool = False) -> None:
        self.spec, self.seed, self.stream = spec, seed, stream
        self.height, self.channels, self.width, self.augment = height, channels, width, augment
        self.width_scale, self.crop = width_scale, crop

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, index: int) -> Tuple[np.ndarray, str]:
        image, label = draw_captcha(self.spec, self.seed, self.stream, int(index))
        if self.augment:
            image = augment_image(image, random.Random(f"{self.seed}/{self.stream}/{index}/augment"))
        return preprocess(image, self.height, self.channels, self.width, self.width_scale, self.crop), label
