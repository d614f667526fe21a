"""Where each character of a reading sits: its columns drawn over the image.

:func:`~ctcx.captcha.evaluate.predict` aligns every reading to the model's
frames (:func:`ctcx.forced_align`) and gives each character the columns of
its span (one CTC frame is 4 input columns). A CTC model emits a character
on one or two frames near its middle (a "spike"), so a span marks where a
character is, not how wide it is; :func:`char_cells` widens the spans into
cells that tile the text: each character gets the columns nearer to its
span than to its neighbours'. :func:`draw_spans` draws both over the
original image with Pillow (a box per cell, a bar over the span, the
character under it, one colour per position), for ``predict --draw DIR``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from PIL import Image, ImageDraw

__all__ = ["char_cells", "draw_spans", "SPAN_COLOURS"]

SPAN_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (128, 128, 0))
"""Box colours by character position (repeating)."""


def char_cells(columns: Sequence[Tuple[int, int]], width: int) -> List[Tuple[int, int]]:
    """Cells ``[start, end)`` that tile the text around the characters' spans.

    Between two neighbouring characters the boundary is the midpoint of their
    spans' centres; the first cell reaches as far left of its centre as its
    right boundary lies right of it (and the last mirrored), clipped to
    ``[0, width)``; a single character gets the whole width.

    Args:
        columns: per character, its span's columns ``[start, end)``, in order.
        width: the image's width in the same pixels.
    """
    if not columns:
        return []
    if len(columns) == 1:
        return [(0, width)]
    centres = [(a + b) / 2 for a, b in columns]
    inner = [round((x + y) / 2) for x, y in zip(centres, centres[1:])]
    first = max(0, round(2 * centres[0] - inner[0]))
    last = min(width, round(2 * centres[-1] - inner[-1]))
    bounds = [min(first, inner[0])] + inner + [max(last, inner[-1])]
    return list(zip(bounds, bounds[1:]))


def draw_spans(image: Image.Image, text: str, columns: Sequence[Tuple[int, int]]) -> Image.Image:
    """A copy of ``image`` (RGB, with a strip for the characters below it):
    per character a box over its cell (:func:`char_cells`), a bar over its
    span's columns, and the character under both.

    Args:
        image: the original image (any mode; drawn on as RGB).
        text: the reading.
        columns: per character, its columns ``[start, end)`` in ``image``'s
            own pixels (``predict``'s ``char_columns`` scaled to the image),
            or empty when the reading was not located.

    Raises:
        ValueError: if ``columns`` is neither empty nor one pair per character.
    """
    if columns and len(columns) != len(text):
        raise ValueError(f"draw_spans: {len(columns)} spans for the {len(text)} characters of {text!r}")
    w, h = image.size
    strip = max(12, h // 3)
    out = Image.new("RGB", (w, h + strip), "white")
    out.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    for k, (char, (start, end), (left, right)) in enumerate(zip(text, columns, char_cells(columns, w))):
        colour = SPAN_COLOURS[k % len(SPAN_COLOURS)]
        draw.rectangle((left, 0, max(left, right - 1), h - 1), outline=colour, width=1)
        draw.rectangle((start, 0, max(start, end - 1), max(2, h // 12)), fill=colour)
        draw.text(((start + end) / 2, h + strip / 2), char, fill=colour, anchor="mm")
    if not columns:
        draw.text((2, h + strip / 2), f"{text} (not located)", fill="black", anchor="lm")
    return out
