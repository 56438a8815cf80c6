"""dots.mocr's scene-text answer (task scene_spotting) as page elements.

The model answers "Detect and recognize the text in the image." with one text instance after
another, each a quadrilateral and its text:

    (x1, y1), (x2, y2), (x3, y3), (x4, y4) text

in the pixels of the image it was sent (upstream: rednote-hilab/dots.mocr at 23f3e5612fb8,
dots_mocr/utils/layout_utils.py `parse_scene_text_output` reads the text up to the next corner,
`post_process_scene_text` scales the corners back to the original image). Ours reads the same
shape and is forgiving in the same ways as the layout parser: an instance without four corners is
left out, corners are clamped to the image, an instance repeated again and again is kept once, a
phrase looping inside a text is cut, and an answer cut at the token limit keeps every instance,
the last marked incomplete. Never raises; no instance at all falls back to the answer's text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from core.dots import boxes
from core.dots.parse import REPEATED_TEXT_LIMIT, Element, ParsedPage, cut_loops, normalize_text
from core.dots.prompts import SCENE_SPOTTING

_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_POINT = rf"\({_NUM},{_NUM}\)"
_QUAD = re.compile(rf"{_POINT}\s*,?\s*{_POINT}\s*,?\s*{_POINT}\s*,?\s*{_POINT}")
_POINT_START = re.compile(rf"\({_NUM},{_NUM}\)")

Point = tuple[int, int]


def _instances(raw: str) -> tuple[list[tuple[list[float], str]], int]:
    """(corners as 8 numbers, text) for each quadrilateral found, and how many stray corner groups
    (fewer than four points) were left out."""
    found: list[tuple[list[float], str]] = []
    matches = list(_QUAD.finditer(raw))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(raw)
        text = raw[match.end() : end]
        # Stray corners (an instance cut to fewer than four points) end the text where they begin.
        stray = _POINT_START.search(text)
        if stray:
            text = text[: stray.start()]
        found.append(([float(v) for v in match.groups()], text))
    covered = sum(len(_POINT_START.findall(m.group(0))) for m in matches)
    stray_points = len(_POINT_START.findall(raw)) - covered
    return found, stray_points


def _to_original(numbers: Sequence[float], sx: float, sy: float, size: tuple[int, int] | None) -> tuple[Point, ...]:
    points = []
    for i in range(0, 8, 2):
        x, y = numbers[i] * sx, numbers[i + 1] * sy
        if size:
            x, y = min(max(x, 0.0), float(size[0])), min(max(y, 0.0), float(size[1]))
        points.append((int(round(x)), int(round(y))))
    return tuple(points)


def parse_scene(
    raw: str,
    sent_size: Sequence[int] | None = None,
    original_size: Sequence[int] | None = None,
    *,
    hit_token_limit: bool = False,
) -> ParsedPage:
    sent = tuple(int(v) for v in sent_size) if sent_size else None
    original = tuple(int(v) for v in original_size) if original_size else None
    page = ParsedPage(mode=SCENE_SPOTTING, sent_size=sent, original_size=original, truncated=bool(hit_token_limit))
    raw = raw if isinstance(raw, str) else ""
    try:
        sx, sy = boxes.scale_factors(sent, original) if sent and original else (1.0, 1.0)
    except ValueError:
        sx, sy = 1.0, 1.0
    found, stray = _instances(raw)
    seen: set = set()
    per_text: Counter = Counter()
    warnings: list[str] = []
    for numbers, text in found:
        text, cuts = cut_loops(normalize_text(text))
        page.loops_cut += cuts
        if not text:
            continue
        polygon = _to_original(numbers, sx, sy, original)
        key = (text, polygon)
        if key in seen or per_text[text] >= REPEATED_TEXT_LIMIT:
            page.repeated_dropped += 1
            continue
        seen.add(key)
        per_text[text] += 1
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        fixed = boxes.fix_box((min(xs), min(ys), max(xs), max(ys)), original) if original else None
        box = fixed.box if fixed else (min(xs), min(ys), max(xs), max(ys))
        page.elements.append(Element("Text", box, text, len(page.elements), polygon=polygon))
    if found and page.elements and hit_token_limit:
        page.elements[-1].complete = False
    if not page.elements:
        text, cuts = cut_loops(normalize_text(raw))
        page.loops_cut += cuts
        if text:
            page.plain_text_fallback = True
            page.elements = [Element("Text", None, text, 0)]
            warnings.append("The model answered without text positions, so this image has its text but no outlines.")
    page.text = "\n".join(e.text for e in page.elements)
    if stray:
        warnings.append(f"{stray} corner point{'s' if stray != 1 else ''} outside a complete outline were left out.")
    if page.repeated_dropped:
        many = "s were" if page.repeated_dropped != 1 else " was"
        warnings.append(f"{page.repeated_dropped} repeated text instance{many} dropped (the model repeated itself).")
    if page.loops_cut:
        warnings.append("A phrase the model repeated over and over was cut short.")
    if hit_token_limit:
        warnings.append("The model stopped at its output limit, so the end of this image's text may be missing.")
    page.warnings = warnings
    return page


def as_lines(page: ParsedPage) -> str:
    """The page in the model's own format (each instance on a line), in the pixels of `sent_size`:
    what a client of the OpenAI-compatible endpoint parses."""
    sent, original = page.sent_size, page.original_size
    try:
        sx, sy = boxes.scale_factors(sent, original) if sent and original else (1.0, 1.0)
    except ValueError:
        sx, sy = 1.0, 1.0
    lines = []
    for element in page.elements:
        if element.polygon is None:
            continue
        corners = ", ".join(f"({int(round(x / sx))}, {int(round(y / sy))})" for x, y in element.polygon)
        lines.append(f"{corners} {element.text}")
    return "\n".join(lines)
