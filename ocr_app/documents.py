"""A finished job's result as a page of layout elements, so that every result can be exported
as Markdown and HTML with the dots.ocr renderer, whichever backend read it; and one page as the job
page's layout view shows it (`page_document`: its elements, boxes in the page image's pixels, and
its rendered HTML)."""

from __future__ import annotations

from django.urls import reverse

from core import jobstate, readpage
from core.dots import render
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



def _page_read(job: Job, number: int) -> ParsedPage | None:
    """The page as it was parsed, or None while it has no result."""
    if job.page_count <= 1 and job.state != jobstate.SUCCEEDED:
        return None
    return parsed_page_number(job, number)



def page_document(job: Job, number: int) -> dict:
    row = job.pages.filter(number=number).first()
    page = _page_read(job, number)
    if page is not None and page.original_size:
        size = page.original_size
    elif row is not None and row.width and row.height:
        size = (row.width, row.height)
    else:
        size = ((job.result or {}).get("image_size") or (job.width, job.height))

    def picture(_page_number, element):
        return reverse("page-picture", args=[job.pk, number, element.index])

    body = {
        "job": job.pk,
        "page": number,
        "pages": job.page_count,
        "state": row.state if row is not None else job.state,
        "image_url": reverse("page-image", args=[job.pk, number]),
        "width": int(size[0]),
        "height": int(size[1]),
        "mode": job.mode,
        "elements": [],
        "html": "",
        "text": "",
        "warnings": [],
        "svg_url": None,
    }
    if page is not None:
        body.update(
            elements=[e.to_dict() for e in page.elements],
            html=render.page_html(page, pictures=picture, page_number=number),
            text=page.text,
            warnings=list(page.warnings),
        )
        if page.svg is not None:
            # Shown only through <img>: an SVG in an image never runs script (core/dots/svg.py).
            body["svg_url"] = reverse("api-job-result", args=[job.pk]) + f"?format=svg&page={number}"
    return body
