"""A finished job's result as a page of layout elements, so that every result can be exported
as Markdown and HTML with the dots.ocr renderer, whichever backend read it."""

from __future__ import annotations

from ocr_app.models import Job
from workers.dots.parse import Element, ParsedPage, parse_output
from workers.dots.prompts import TEXT_ONLY


def parsed_page(job: Job) -> ParsedPage:
    result = job.result or {}
    size = tuple(result.get("image_size") or (job.width, job.height))
    lines = result.get("lines") or []
    if lines:
        # rapidocr: one Text element per recognized line, its box around the line's corners.
        elements = []
        for index, line in enumerate(lines):
            xs = [point[0] for point in line["box"]]
            ys = [point[1] for point in line["box"]]
            box = (int(min(xs)), int(min(ys)), int(round(max(xs))), int(round(max(ys))))
            elements.append(Element("Text", box, line["text"], index))
        return ParsedPage(elements=elements, text=job.text, mode=TEXT_ONLY, original_size=size, page_number=1)
    details = result.get("details") or {}
    sent = tuple(details.get("image_size_sent") or size)
    page = parse_output(result.get("raw") or job.text, TEXT_ONLY, sent_size=sent, original_size=size)
    page.page_number = 1
    return page
