"""Many captcha styles from one stream: ctcx's own text renderer, and the mix
that general pretraining draws from.

A reader meant for captchas it has never seen should have seen many fonts,
layouts and kinds of clutter, not one generator's. :func:`render` draws a
label in a style sampled afresh for every image from the space below;
:func:`draw_general` mixes it with the ``captcha`` library drawn with random
fonts and sizes. Every random choice comes from the ``random.Random`` passed
in, so an image is a pure function of its seed (resumable runs, workers in
any order).

The style space of :func:`render` (probabilities per image):

- canvas: height 36-80 px, width such that each character gets 0.5-1.0
  of the height (clipped to 96-320 px), so 160x60-like and other sizes;
- background: flat (40%), a two-colour gradient (25%), blurred colour noise
  (20%) or stripes / a grid (15%); light with dark text, or dark with light
  text (20%);
- text: one font per image (80%) or per character, from :func:`font_files`;
  size 55-90% of the height; one colour (60%) or one per character, at least
  90 of luminance away from the background; plain, bold (stroke 1-2 px),
  thin outline (10%);
- each character: horizontal scale 0.7-1.3, rotation up to 0, 10, 20 or 30
  degrees, vertical offset up to 15% of the height, spacing 0.8-1.15 of its
  width (negative gaps overlap, as many captchas do); the text is squeezed to
  fit the canvas, else placed at a random position;
- clutter: 0-2 lines, arcs or sine curves under the text (1-4 px) and 0-3
  over it (1-3 px), in the text's colour half the time; 0-300 dots, 0-12
  circles;
- the whole image: a sine warp (30%) or a perspective warp (25%), blur (30%),
  Gaussian noise (30%), JPEG artefacts (20%), grey (20%).

Fonts (:func:`font_files`): every TrueType/OpenType font of the system's font
folders, matplotlib's bundled fonts, the ``captcha`` library's DroidSansMono
and Pillow's built-in one, minus fonts that cannot draw the charset as
letters (symbol fonts). Which fonts exist depends on the machine; the stream
is reproducible on one machine.
"""
from __future__ import annotations

import io
import math
import os
import random
import sys
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["font_files", "render", "draw_general", "PILLOW_DEFAULT_FONT"]

PILLOW_DEFAULT_FONT = "<pillow-default>"
"""Stands for Pillow's built-in scalable font (``ImageFont.load_default(size)``) in font lists."""

# fonts that map letters to symbols (TeX math extension and symbol encodings)
_SYMBOL_FONTS = {"cmex10", "cmsy10"}
_PROBE = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _font_dirs() -> List[Path]:
    dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts",
            Path.home() / ".local/share/fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts")]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts")
    try:
        import matplotlib

        dirs.append(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:
        pass
    try:
        import captcha

        dirs.append(Path(captcha.__file__).parent / "data")
    except ImportError:
        pass
    return dirs


def _glyphs(font, chars: str) -> List[bytes]:
    out = []
    for c in chars:
        canvas = Image.new("L", (48, 48))
        try:
            ImageDraw.Draw(canvas).text((6, 6), c, font=font, fill=255)
        except (ValueError, OSError):
            return []
        out.append(canvas.tobytes())
    return out


def _usable(path: str, chars: str) -> bool:
    """Whether the font draws every character of ``chars`` with a glyph of its own."""
    if Path(path).stem in _SYMBOL_FONTS:
        return False
    try:
        font = _load(path, 28)
    except OSError:
        return False
    glyphs = _glyphs(font, chars + "\ue000")  # a private-use code point: the font's "missing" box
    if not glyphs:
        return False
    missing = glyphs[-1]
    glyphs = glyphs[:-1]
    return all(any(g) and g != missing for g in glyphs) and len(set(glyphs)) == len(glyphs)


@lru_cache(maxsize=None)
def font_files(chars: str = _PROBE) -> Tuple[str, ...]:
    """Fonts that can draw ``chars``: paths (sorted, one per file name) and
    :data:`PILLOW_DEFAULT_FONT`. See the module docstring for where they come from."""
    seen = {}
    for folder in _font_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in (".ttf", ".otf") and path.name not in seen:
                seen[path.name] = str(path)
    fonts = [p for _, p in sorted(seen.items()) if _usable(p, chars)]
    if _usable(PILLOW_DEFAULT_FONT, chars):
        fonts.append(PILLOW_DEFAULT_FONT)
    return tuple(fonts)


@lru_cache(maxsize=4096)
def _load(path: str, size: int):
    if path == PILLOW_DEFAULT_FONT:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def _luma(color: Sequence[int]) -> float:
    return 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]


def _color(rng: random.Random, light: bool) -> Tuple[int, int, int]:
    lo, hi = (150, 255) if light else (0, 110)
    while True:
        c = tuple(rng.randint(0, 255) for _ in range(3))
        if lo <= _luma(c) <= hi:
            return c


def _ink(rng: random.Random, background: Sequence[int]) -> Tuple[int, int, int]:
    """A colour at least 90 of luminance away from ``background``."""
    dark = _luma(background) >= 128
    while True:
        c = tuple(rng.randint(0, 255) for _ in range(3))
        if abs(_luma(c) - _luma(background)) >= 90 and (_luma(c) < _luma(background)) == dark:
            return c


def _background(rng: random.Random, size: Tuple[int, int], base, np_rng) -> Image.Image:
    w, h = size
    kind = rng.random()
    if kind < 0.40:
        return Image.new("RGB", size, base)
    if kind < 0.65:
        other = _color(rng, _luma(base) >= 128)
        t = np.linspace(0, 1, w if rng.random() < 0.7 else h, dtype=np.float32)
        ramp = (1 - t)[:, None] * np.array(base, np.float32) + t[:, None] * np.array(other, np.float32)
        if len(t) == w:
            pixels = np.broadcast_to(ramp[None], (h, w, 3))
        else:
            pixels = np.broadcast_to(ramp[:, None], (h, w, 3))
        return Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8))
    if kind < 0.85:
        noise = np_rng.normal(0, rng.uniform(15, 45), (max(1, h // 4), max(1, w // 4), 3))
        small = np.clip(np.array(base, np.float32) + noise, 0, 255).astype(np.uint8)
        return Image.fromarray(small).resize(size, Image.BILINEAR).filter(ImageFilter.GaussianBlur(1))
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    other = tuple(int(0.75 * a + 0.25 * b) for a, b in zip(base, _ink(rng, base)))
    step = rng.randint(4, 12)
    for x in range(rng.randint(0, step), w, step):
        draw.line([(x, 0), (x + rng.randint(-h, h) // 3, h)], fill=other)
    if rng.random() < 0.5:
        for y in range(rng.randint(0, step), h, step):
            draw.line([(0, y), (w, y)], fill=other)
    return image


def _glyph(rng: random.Random, char: str, font, color, outline: bool, stroke: int,
           max_rotation: float, height: int) -> Image.Image:
    """One character on a transparent layer: drawn, scaled, sheared and rotated."""
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    pad = 2 + stroke
    layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if outline:
        draw.text((pad - left, pad - top), char, font=font, fill=(0, 0, 0, 0), stroke_width=max(1, stroke),
                  stroke_fill=color + (255,))
    else:
        draw.text((pad - left, pad - top), char, font=font, fill=color + (255,), stroke_width=stroke,
                  stroke_fill=color + (255,))
    w, h = layer.size
    layer = layer.resize((max(1, int(w * rng.uniform(0.7, 1.3))), h), Image.BILINEAR)
    if rng.random() < 0.3:
        shear = rng.uniform(-0.3, 0.3)
        w, h = layer.size
        extra = int(abs(shear) * h) + 1
        layer = layer.transform((w + extra, h), Image.AFFINE,
                                (1, shear, -extra if shear > 0 else 0, 0, 1, 0), Image.BILINEAR)
    if max_rotation:
        layer = layer.rotate(rng.uniform(-max_rotation, max_rotation), Image.BILINEAR, expand=True)
    box = layer.getbbox()
    layer = layer.crop(box) if box else layer
    if layer.height > height:
        layer = layer.resize((max(1, layer.width * height // layer.height), height), Image.BILINEAR)
    return layer


def _curve(rng: random.Random, draw: ImageDraw.ImageDraw, size, color, max_width: int = 4) -> None:
    w, h = size
    width = rng.randint(1, max_width)
    kind = rng.random()
    if kind < 0.4:
        draw.line([(rng.uniform(0, 0.3) * w, rng.uniform(0, h)), (rng.uniform(0.7, 1) * w, rng.uniform(0, h))],
                  fill=color, width=width)
    elif kind < 0.7:
        x0, y0 = rng.uniform(-0.3, 0.3) * w, rng.uniform(-0.5, 0.5) * h
        draw.arc([x0, y0, x0 + rng.uniform(0.6, 1.4) * w, y0 + rng.uniform(0.6, 2.0) * h],
                 rng.uniform(0, 360), rng.uniform(0, 360), fill=color, width=width)
    else:
        amplitude, period, phase, centre = rng.uniform(2, h / 4), rng.uniform(0.3, 1.5) * w, rng.uniform(0, 6.3), \
            rng.uniform(0.25, 0.75) * h
        points = [(x, centre + amplitude * math.sin(2 * math.pi * x / period + phase)) for x in range(0, w + 4, 4)]
        draw.line(points, fill=color, width=width)


def _sine_warp(image: Image.Image, rng: random.Random) -> Image.Image:
    pixels = np.asarray(image)
    h, w = pixels.shape[:2]
    amplitude, period, phase = rng.uniform(1, max(1.5, h / 12)), rng.uniform(0.4, 2) * w, rng.uniform(0, 6.3)
    shift = np.round(amplitude * np.sin(2 * np.pi * np.arange(w) / period + phase)).astype(int)
    rows = np.clip(np.arange(h)[:, None] - shift[None, :], 0, h - 1)
    return Image.fromarray(pixels[rows, np.arange(w)[None, :]])


def _perspective(image: Image.Image, rng: random.Random) -> Image.Image:
    w, h = image.size
    dx, dy = 0.08 * w, 0.12 * h
    quad = [rng.uniform(-dx, dx), rng.uniform(-dy, dy), rng.uniform(-dx, dx), h + rng.uniform(-dy, dy),
            w + rng.uniform(-dx, dx), h + rng.uniform(-dy, dy), w + rng.uniform(-dx, dx), rng.uniform(-dy, dy)]
    return image.transform((w, h), Image.QUAD, quad, Image.BILINEAR, fillcolor=image.getpixel((0, 0)))


def render(label: str, rng: random.Random, fonts: Optional[Sequence[str]] = None) -> Image.Image:
    """Draw ``label`` in a style sampled from the module's style space.

    Args:
        label: the characters to draw (any the fonts have).
        rng: every random choice comes from it (same state, same image).
        fonts: font paths or :data:`PILLOW_DEFAULT_FONT` (default: :func:`font_files`).

    Returns:
        an RGB PIL image, 96-320 px wide and 36-80 px high.

    Raises:
        ValueError: if ``label`` is empty or there are no fonts.
    """
    if not label:
        raise ValueError("render: label must not be empty")
    fonts = list(fonts if fonts is not None else font_files())
    if not fonts:
        raise ValueError("render: no fonts to draw with (font_files() found none)")
    np_rng = np.random.default_rng(rng.getrandbits(64))
    height = rng.randint(36, 80)
    width = int(min(320, max(96, height * len(label) * rng.uniform(0.5, 1.0) + rng.uniform(0.1, 0.6) * height)))
    size = (width, height)
    dark_background = rng.random() < 0.2
    base = _color(rng, light=not dark_background)
    image = _background(rng, size, base, np_rng)
    ink = _ink(rng, base)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.choice((0, 0, 1, 2))):  # clutter under the text
        _curve(rng, draw, size, ink if rng.random() < 0.5 else _ink(rng, base))

    one_font = rng.random() < 0.8
    font_path = rng.choice(fonts)
    font_size = max(10, int(height * rng.uniform(0.55, 0.9)))
    one_color = rng.random() < 0.6
    outline = rng.random() < 0.1
    stroke = rng.choice((0, 0, 0, 1, 2))
    max_rotation = rng.choice((0, 10, 20, 30))
    glyphs = []
    for char in label:
        path = font_path if one_font else rng.choice(fonts)
        color = ink if one_color else _ink(rng, base)
        glyphs.append(_glyph(rng, char, _load(path, font_size), color, outline, stroke, max_rotation, height))
    spacing = [rng.uniform(0.8, 1.15) for _ in glyphs]
    text_width = int(sum(g.width * s for g, s in zip(glyphs[:-1], spacing)) + glyphs[-1].width) + 1
    text = Image.new("RGBA", (max(1, text_width), height), (0, 0, 0, 0))
    x = 0.0
    for glyph, space in zip(glyphs, spacing):
        slack = height - glyph.height
        y = int(slack / 2 + rng.uniform(-0.15, 0.15) * height)
        y = min(max(0, y), max(0, slack))
        text.alpha_composite(glyph, (int(x), y))
        x += glyph.width * space
    room = width - 4
    if text.width > room:
        text = text.resize((room, height), Image.BILINEAR)
    left = rng.randint(2, max(2, width - text.width - 2))
    image.paste(text, (left, 0), text)

    draw = ImageDraw.Draw(image)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):  # clutter over the text, thinner
        _curve(rng, draw, size, ink if rng.random() < 0.5 else _ink(rng, base), max_width=3)
    for _ in range(rng.choice((0, 0, rng.randint(10, 300)))):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.choice((0, 0, 1))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=ink if rng.random() < 0.5 else _ink(rng, base))
    for _ in range(rng.choice((0, 0, rng.randint(1, 12)))):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(2, max(3, height // 5))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=_ink(rng, base), width=rng.randint(1, 2))

    if rng.random() < 0.3:
        image = _sine_warp(image, rng)
    elif rng.random() < 0.35:
        image = _perspective(image, rng)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.3:
        pixels = np.asarray(image, np.float32) + np_rng.normal(0, rng.uniform(3, 20), (height, width, 1))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.2:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(20, 70))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if rng.random() < 0.2:
        image = image.convert("L").convert("RGB")
    return image


# canvas sizes the captcha library draws at in the general mix (width, height)
_LIBRARY_SIZES = ((160, 60), (120, 40), (140, 50), (180, 60), (200, 70), (220, 80), (260, 80), (300, 90))


def draw_general(label: str, rng: random.Random, fonts: Optional[Sequence[str]] = None) -> Image.Image:
    """One image of the general mix: :func:`render` (60%) or the ``captcha``
    library (40%) at a random size from 120x40 to 300x90 with a random font
    of ``fonts`` (TrueType files only) at sizes around 80% of the height.

    Raises:
        ValueError: as :func:`render`.
    """
    fonts = list(fonts if fonts is not None else font_files())
    files = [f for f in fonts if f != PILLOW_DEFAULT_FONT]
    if rng.random() < 0.6 or not files:
        return render(label, rng, fonts)
    from .drawn import _SHIM, library_drawer  # the seeded stand-in for the secrets module

    size = rng.choice(_LIBRARY_SIZES)
    length_fit = min(1.0, 4.6 / max(4, len(label)) * size[0] / (2.6 * size[1]))
    base = int(size[1] * 0.75 * max(0.6, length_fit))
    drawer = library_drawer(size, (rng.choice(files),), (base - 4, base, base + 4))
    _SHIM.rng = rng
    return drawer.generate_image(label).convert("RGB")
