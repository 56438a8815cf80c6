"""A finished job's result as a page of layout elements, so that every result can be exported
as Markdown and HTML with the dots.ocr renderer, whichever backend read it."""

from __future__ import annotations

from core import readpage
from core.dots.parse import ParsedPage, parse_output
from core.dots.prompts import TEXT_ONLY
from ocr_app.models import Job, Page


def parsed_pages(job: Job) -> list[ParsedPage]:
    """The document's pages that were read, in order: from the Page rows of a job with several
    pages, or the job's own result."""
    if job.page_count > 1:
        pages = []
        for row in job.pages.filter(state=Page.SUCCEEDED).order_by("number"):
            pages.append(_page_of_row(row))
        return pages
    return [parsed_page(job)]


def parsed_page_number(job: Job, number: int) -> ParsedPage | None:
    """Page `number` as `parsed_pages` gives it, or None when that page was not read."""
    if job.page_count > 1:
        row = job.pages.filter(number=number, state=Page.SUCCEEDED).first()
        return _page_of_row(row) if row else None
    return parsed_page(job) if number == 1 else None


def _page_of_row(row: Page) -> ParsedPage:
    page = ParsedPage.from_dict((row.result or {}).get("page") or {"text": row.text})
    page.page_number = row.number
    return page


def parsed_page(job: Job) -> ParsedPage:
    result = job.result or {}
    if result.get("page"):
        # Stored by the worker since task modes: the page as it was parsed when the job ran.
        page = ParsedPage.from_dict(result["page"])
        page.page_number = 1
        return page
    # Jobs from before: all were read as plain text.
    size = tuple(result.get("image_size") or (job.width, job.height))
    lines = result.get("lines") or []
    if lines:
        # rapidocr: one Text element per recognized line, its box around the line's corners.
        page = readpage.from_lines(lines, job.text, "layout_all", size)
        page.mode = TEXT_ONLY
        page.page_number = 1
        return page
    details = result.get("details") or {}
    sent = tuple(details.get("image_size_sent") or size)
    page = parse_output(result.get("raw") or job.text, TEXT_ONLY, sent_size=sent, original_size=size)
    page.page_number = 1
    return page
