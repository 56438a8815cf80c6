"""Boxes between the image sent to dots.ocr and the page image a user sees.

The model reads a resized copy of the page (`resize.fit_for_model`: both sides multiples of 28)
and answers with boxes [x1, y1, x2, y2] in the pixels of that copy. A box goes back to the
original image by the x and y factors `sx = original width / sent width` and
`sy = original height / sent height` (what `fit_for_model` returns); a box a user draws on the
page image goes the other way for grounding (dots.ocr's `pre_process_bboxes` does the same).

Sizes are (width, height), as PIL gives them. x2 and y2 are the right and bottom edges, so a box
inside a W×H image has 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H. Integer boxes are rounded to
the nearest pixel, halves up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from core.dots.resize import MAX_PIXELS, MIN_PIXELS, smart_resize

Box = tuple[int, int, int, int]
FloatBox = tuple[float, float, float, float]
Size = tuple[int, int]


def valid_size(size: object) -> bool:
    """Whether `size` is a (width, height) pair of positive whole numbers."""
    try:
        w, h = size  # type: ignore[misc]
    except (TypeError, ValueError):
        return False
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (w, h))


def sent_size(original_size: Size, max_pixels: int = MAX_PIXELS, min_pixels: int = MIN_PIXELS) -> Size:
    """(width, height) of the image the model is sent for a page of `original_size`."""
    w, h = original_size
    rh, rw = smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)
    return rw, rh


def scale_factors(sent: Size, original: Size) -> tuple[float, float]:
    """(sx, sy): original pixels per sent pixel, as `fit_for_model` returns them."""
    if not (valid_size(sent) and valid_size(original)):
        raise ValueError(f"sizes must be (width, height) in whole pixels, got {sent!r} and {original!r}")
    return original[0] / sent[0], original[1] / sent[1]


def _round(v: float) -> int:
    return math.floor(v + 0.5)


def scale_box(box: Sequence[float], fx: float, fy: float) -> FloatBox:
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1 * fx, y1 * fy, x2 * fx, y2 * fy


def sent_to_original(box: Sequence[float], sx: float, sy: float) -> FloatBox:
    """A box the model gave (sent pixels) in original pixels, unrounded and unclamped."""
    return scale_box(box, sx, sy)


def original_to_sent(box: Sequence[float], sx: float, sy: float) -> FloatBox:
    """A box on the original image in sent pixels, unrounded and unclamped."""
    return scale_box(box, 1.0 / sx, 1.0 / sy)


@dataclass
class FixedBox:
    """A box made fit for an image, and what had to be done to it."""

    box: Box | None  # None: it lay wholly outside the image
    swapped: bool = False  # x1 > x2 or y1 > y2 came in
    clamped: bool = False  # it reached outside the image (by more than the tolerance)
    outside: bool = False  # no part of it was inside the image
    widened: bool = False  # it had no width or height and was given one pixel


def fix_box(box: Sequence[float], size: Size, tolerance: float = 0.0) -> FixedBox:
    """`box` as whole pixels inside an image of `size`: corners put in order, clamped to the image,
    and at least one pixel wide and high. `clamped` is only set when the box went past the edge by
    more than `tolerance` pixels (the model's own rounding puts boxes a pixel past the edge)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    out = FixedBox(box=None)
    if x1 > x2:
        x1, x2 = x2, x1
        out.swapped = True
    if y1 > y2:
        y1, y2 = y2, y1
        out.swapped = True
    if not valid_size(size):
        out.box = (_round(x1), _round(y1), _round(x2), _round(y2))
        return out
    w, h = size
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        out.outside = True
        return out
    if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        out.clamped = True
    ix1 = min(max(_round(x1), 0), w)
    iy1 = min(max(_round(y1), 0), h)
    ix2 = min(max(_round(x2), 0), w)
    iy2 = min(max(_round(y2), 0), h)
    if ix2 <= ix1:
        out.widened = True
        ix1, ix2 = (ix1, ix1 + 1) if ix1 < w else (w - 1, w)
    if iy2 <= iy1:
        out.widened = True
        iy1, iy2 = (iy1, iy1 + 1) if iy1 < h else (h - 1, h)
    out.box = (ix1, iy1, ix2, iy2)
    return out


def clamp_box(box: Sequence[float], size: Size) -> Box | None:
    """`box` in whole pixels inside `size`, or None when it lies wholly outside."""
    return fix_box(box, size).box


def to_original(box: Sequence[float], sent: Size, original: Size) -> Box | None:
    """A box the model gave, in whole pixels of the original image (None: wholly outside it)."""
    sx, sy = scale_factors(sent, original)
    return fix_box(sent_to_original(box, sx, sy), original).box


def to_sent(box: Sequence[float], original: Size, sent: Size) -> Box | None:
    """A box on the original image (a region a user drew for grounding), in whole pixels of the
    image sent to the model (None: wholly outside it)."""
    sx, sy = scale_factors(sent, original)
    return fix_box(original_to_sent(box, sx, sy), sent).box
