"""Any backend's answer for one page as a ParsedPage, the one shape results are stored, shown
and exported in (pure: no Django).

A dots model's answer is parsed for the job's task (`core.dots.tasks.parse`). rapidocr, the CPU
text engine (the backend that does not run dots.ocr, core/backends.py), finds text lines, not
layout: for the layout tasks (web pages too) each line becomes a Text element with the box around
it, for scene text each line keeps its four corners as its outline, for `text` the page is its
plain text. It cannot draw SVG or answer questions (core/dots/tasks.py `rapidocr`).
"""

from __future__ import annotations

from collections.abc import Sequence

from core import backends
from core.dots import tasks
from core.dots.parse import Element, ParsedPage, normalize_text
from core.dots.prompts import GROUNDING, LAYOUT_ALL, LAYOUT_ONLY, MODES, SCENE_SPOTTING, TEXT_ONLY, WEB_PARSING
from core.loopguard import REPEATING, TIME_LIMIT, Stopped
from core.results import OcrResult, TextLine


def line_box(line: TextLine | dict) -> tuple[int, int, int, int]:
    points = line.box if isinstance(line, TextLine) else line["box"]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (int(min(xs)), int(min(ys)), int(round(max(xs))), int(round(max(ys))))


def from_lines(
    lines: Sequence[TextLine | dict],
    text: str,
    mode: str,
    original_size: Sequence[int] | None,
    region: Sequence[int] | None = None,
) -> ParsedPage:
    """rapidocr's lines as a page: Text elements in the layout tasks, plain text for `text`."""
    size = (int(original_size[0]), int(original_size[1])) if original_size else None
    if mode == GROUNDING:
        # The region's text as one element with the region's box, as dots.ocr's grounding answer.
        text = normalize_text(text)
        elements = [Element("Text", tuple(int(v) for v in region), text, 0)] if text and region else []
        return ParsedPage(elements=elements, text=text, mode=GROUNDING, original_size=size, sent_size=size)
    if mode in (LAYOUT_ALL, LAYOUT_ONLY, WEB_PARSING, SCENE_SPOTTING):
        elements = []
        for index, line in enumerate(lines):
            words = line.text if isinstance(line, TextLine) else line["text"]
            element = Element("Text", line_box(line), words, index)
            if mode == SCENE_SPOTTING:
                points = line.box if isinstance(line, TextLine) else line["box"]
                element.polygon = tuple((int(round(p[0])), int(round(p[1]))) for p in points[:4])
            elements.append(element)
        return ParsedPage(elements=elements, text=text, mode=mode, original_size=size, sent_size=size)
    text = normalize_text(text)
    elements = [Element("Text", None, text, 0)] if text else []
    return ParsedPage(
        elements=elements, text=text, mode=mode if mode in MODES else TEXT_ONLY, original_size=size, sent_size=size
    )


def parsed_page(result: OcrResult, backend: str, mode: str, original_size: Sequence[int]) -> ParsedPage:
    """The page a backend's answer stands for; boxes in the pixels of the page image."""
    if not backends.get(backend).runs_dots:  # the CPU text engine: lines, not dots.ocr's answer
        region = (result.details or {}).get("bbox_sent")
        page = from_lines(result.lines, result.text, mode, original_size, region)
        if stopped_early(result) is not None:
            page.warnings.insert(0, stopped_early(result).message)
        return page
    details = result.details or {}
    sent = details.get("image_size_sent") or original_size
    stopped = stopped_early(result)
    page = tasks.parse(
        result.raw or result.text,
        mode,
        sent_size=sent,
        original_size=original_size,
        grounding_box=details.get("bbox_sent"),
        # A page stopped by the loop guard ends mid-answer, as one cut at the token limit.
        hit_token_limit=bool(details.get("hit_token_limit") or details.get("truncated") or stopped),
    )
    if stopped is not None:
        page.warnings.insert(0, stopped.message)
    return page


def stopped_early(result: OcrResult) -> Stopped | None:
    """The loop guard's stop recorded by the backend (core/loopguard.py), if the page was stopped."""
    data = (result.details or {}).get("stopped")
    if not isinstance(data, dict) or data.get("reason") not in (REPEATING, TIME_LIMIT):
        return None
    return Stopped(data["reason"], int(data.get("tokens") or 0), data.get("period"), data.get("seconds"))
