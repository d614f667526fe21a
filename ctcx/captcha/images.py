"""The one image pipeline shared by training, evaluation, prediction and ONNX export.

1. :func:`preprocess`: convert to grayscale ("L") or RGB, resize to the model's
   height with bilinear resampling and to the width that keeps the aspect
   ratio times ``width_scale`` (rounded to a multiple of 4, one CTC frame per
   4 columns), unless a fixed width is asked for. Result: uint8 (C, H, W),
   255 = white paper.
2. :func:`pad_batch`: images of different widths go into one batch padded on
   the right with white.
3. :func:`to_model_input`: ``1 - pixel / 255`` ("ink"), so padding and the
   conv stack's zero padding both look like blank paper.

:func:`augment` is the optional training-time distortion (small affine, blur,
noise), drawn from a caller-supplied :class:`random.Random` when an image is
drawn or read. :func:`jitter` is the cheap per-batch one the trainer can apply
to every training batch (``--jitter``, off by default): a fresh random affine
map per image and step.
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter

__all__ = ["WIDTH_MULTIPLE", "COLOR_MODES", "output_width", "preprocess", "augment", "jitter", "pad_batch",
           "to_model_input"]

WIDTH_MULTIPLE = 4
"""Input widths are multiples of this: the CRNN turns every 4 columns into one CTC frame."""

COLOR_MODES = {1: "L", 3: "RGB"}
"""PIL mode per number of input channels."""


def output_width(size: Tuple[int, int], height: int, width: int = 0, width_scale: float = 1.0) -> int:
    """Width in pixels that :func:`preprocess` gives an image of ``size`` = (w, h).

    ``width`` > 0 forces that width; 0 keeps the aspect ratio times
    ``width_scale`` (1.25 stretches 160x60 captchas scaled to height 48 back
    to their 160 columns), rounded to the nearest multiple of
    :data:`WIDTH_MULTIPLE` (at least one frame).
    """
    if width:
        return width
    w, h = size
    return max(WIDTH_MULTIPLE, round(w * height / h * width_scale / WIDTH_MULTIPLE) * WIDTH_MULTIPLE)


MARGIN_TOLERANCE = 24
"""A pixel belongs to a margin when no channel differs from the margin's colour by more than this."""
MARGIN_INK = 0.02
"""A row or column is part of the picture when more than this fraction of its pixels is not margin."""


def crop_margins(image: Image.Image, pad: int = 0) -> Image.Image:
    """``image`` without the plain margins around the picture (see :func:`margin_box`)."""
    box = margin_box(image, pad)
    return image if box is None else image.crop(box)


def margin_box(image: Image.Image, pad: int = 0) -> Optional[Tuple[int, int, int, int]]:
    """The box (left, top, right, bottom) of ``image`` inside its plain margins, or None.

    The margins' colour is the per-channel median of the outermost ring of
    pixels; rows and columns in which at most :data:`MARGIN_INK` of the
    pixels differ from it (by more than :data:`MARGIN_TOLERANCE` in some
    channel) are cut from each side, keeping ``pad`` of them. For captchas
    drawn in a band of a larger canvas (e.g. ``multicolorcaptcha``'s 256x144
    with the characters in the middle third), which a fixed input height
    would otherwise shrink. None (keep the image) when there is no plain
    margin or the picture would be under 8 pixels either way.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    h, w = pixels.shape[:2]
    if h < 3 or w < 3:
        return None
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    colour = np.median(ring, axis=0)
    ink = (np.abs(pixels - colour) > MARGIN_TOLERANCE).any(axis=2)
    rows = np.flatnonzero(ink.mean(axis=1) > MARGIN_INK)
    cols = np.flatnonzero(ink.mean(axis=0) > MARGIN_INK)
    if len(rows) == 0 or len(cols) == 0 or rows[-1] + 1 - rows[0] < 8 or cols[-1] + 1 - cols[0] < 8:
        return None
    top, bottom = max(0, rows[0] - pad), min(h, rows[-1] + 1 + pad)
    left, right = max(0, cols[0] - pad), min(w, cols[-1] + 1 + pad)
    if (top, bottom, left, right) == (0, h, 0, w):
        return None
    return int(left), int(top), int(right), int(bottom)


def preprocess(image: Image.Image, height: int, channels: int = 1, width: int = 0,
               width_scale: float = 1.0, crop: bool = False) -> np.ndarray:
    """Convert and resize ``image`` for the model.

    Args:
        height: output height, pixels.
        channels: 1 (grayscale) or 3 (RGB).
        width: output width in pixels, or 0 to keep the aspect ratio times
            ``width_scale`` (see :func:`output_width`).
        width_scale: horizontal stretch relative to the aspect ratio (used when ``width`` is 0).
        crop: cut plain margins first (:func:`crop_margins`).

    Returns:
        uint8 array (channels, height, width'), 255 = white.
    """
    if crop:
        image = crop_margins(image)
    converted = image.convert(COLOR_MODES[channels])
    size = (output_width(image.size, height, width, width_scale), height)
    resized = converted.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(resized)
    return array[None] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A mild random distortion suited to captchas, drawn from ``rng``.

    Always a small affine map (rotation within +-3 degrees, shear within
    +-0.15, scale 0.93-1.07, shift within +-3% of the size, white fill); a
    Gaussian blur of radius 0.3-1.0 with probability 0.3; Gaussian pixel
    noise (sigma 3-12 grey levels) with probability 0.3.
    """
    image = image.convert("RGB")
    w, h = image.size
    angle = np.deg2rad(rng.uniform(-3, 3))
    shear = rng.uniform(-0.15, 0.15)
    scale = rng.uniform(0.93, 1.07)
    dx, dy = rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.03, 0.03) * h
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = w / 2, h / 2
    # PIL wants the inverse map (output pixel -> input pixel), about the centre
    a, b = cos, sin + shear
    d, e = -sin, cos
    coeffs = (a, b, cx - a * (cx + dx) - b * (cy + dy), d, e, cy - d * (cx + dx) - e * (cy + dy))
    image = image.transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR,
                            fillcolor=(255, 255, 255))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.3:
        noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(3, 12), (h, w, 1))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
    return image


def pad_batch(images: Sequence[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack uint8 (C, H, W_i) images into (N, C, H, max W_i), padding on the right with white.

    Returns:
        images: uint8 (N, C, H, W); widths: int64 (N,), each image's own width.

    Raises:
        ValueError: if the images differ in channels or height, or there are none.
    """
    if not images:
        raise ValueError("pad_batch: no images")
    c, h = images[0].shape[:2]
    if any(im.shape[:2] != (c, h) for im in images):
        shapes = sorted({tuple(im.shape[:2]) for im in images})
        raise ValueError(f"pad_batch: images differ in (channels, height): {shapes}")
    widths = [im.shape[2] for im in images]
    out = np.full((len(images), c, h, max(widths)), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        out[i, :, :, :im.shape[2]] = im
    return torch.from_numpy(out), torch.tensor(widths, dtype=torch.long)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W), 255 = white, -> the model's float32 ink in [0, 1] (0 = white)."""
    return (1.0 - images.float() / 255.0).contiguous(memory_format=torch.channels_last)


def jitter(ink: torch.Tensor, widths: torch.Tensor, generator: torch.Generator,
           strength: float = 1.0) -> torch.Tensor:
    """A random affine map per image of a batch of model inputs, drawn from ``generator``.

    Each image ``i`` is mapped about the centre of its own ``widths[i]``
    columns: rotation within +-3 degrees, horizontal shear (slant) within
    +-0.15, horizontal and vertical scale within a factor exp(+-0.08), shift
    within +-3% of its width and +-6% of the height, every range times
    ``strength``. Bilinear sampling; what comes from outside the image is blank
    paper (ink 0), like the padding. It costs about a millisecond for a batch
    of 64 captchas of 32x84, so it runs in the training process on every step.

    Args:
        ink: float (N, C, H, W) from :func:`to_model_input` (0 = white).
        widths: int (N,), each image's own width in pixels (<= W).
        generator: the CPU generator the maps are drawn from (N x 6 uniforms).
        strength: scales every range; 0 returns ``ink`` unchanged.

    Returns:
        float (N, C, H, W) on ``ink``'s device, channels-last.

    Raises:
        ValueError: if ``ink`` is not 4-d, ``widths`` does not hold N widths,
            or ``strength`` is negative.
    """
    if ink.dim() != 4 or widths.shape != (ink.shape[0],):
        raise ValueError(f"jitter: need ink (N, C, H, W) and widths (N,), got {tuple(ink.shape)} and "
                         f"{tuple(widths.shape)}")
    if not strength >= 0:
        raise ValueError(f"jitter: strength must be >= 0, got {strength!r}")
    if strength == 0:
        return ink
    n, _, h, w = ink.shape
    u = (torch.rand((n, 6), generator=generator, dtype=torch.float64) * 2 - 1) * strength
    angle, shear = u[:, 0] * math.radians(3.0), u[:, 1] * 0.15
    scale_x, scale_y = torch.exp(u[:, 2] * 0.08), torch.exp(u[:, 3] * 0.08)
    widths = widths.to(torch.float64)
    shift_x, shift_y = u[:, 4] * 0.03 * widths, u[:, 5] * 0.06 * h
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output pixel p -> source pixel c + A (p - c) - shift, A = rotation x shear x scale^-1
    a11, a12 = cos / scale_x, (cos * shear - sin) / scale_y
    a21, a22 = sin / scale_x, (sin * shear + cos) / scale_y
    cx, cy = widths / 2, h / 2
    dx = (torch.arange(w, dtype=torch.float64) + 0.5)[None, None, :] - cx[:, None, None]  # (N, 1, W)
    dy = (torch.arange(h, dtype=torch.float64) + 0.5)[None, :, None] - cy  # (1, H, 1)
    col = lambda t: t[:, None, None]
    src_x = col(a11) * dx + col(a12) * dy + col(cx - shift_x)
    src_y = col(a21) * dx + col(a22) * dy + cy - col(shift_y)
    # grid_sample's coordinates (align_corners=False): -1 and 1 are the outer edges of the edge pixels
    grid = torch.stack((2 * src_x / w - 1, 2 * src_y / h - 1), dim=-1).to(ink.dtype).to(ink.device)
    out = torch.nn.functional.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)
