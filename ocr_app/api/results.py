"""A job's result in each format, for the whole document or one page (`page`, 1-based).

`txt` (plain text), `md` and `md_nohf` (Markdown by the dots.ocr renderer, with and without page
headers and footers), `html` (rendered by the same renderer: text escaped, tables sanitized),
`layout` (every element with its category and box in original-image pixels) and `json`
(everything: text, the engine's answer, file facts, timings, GPU memory — the same document as
the job page's download), `pdf` (a searchable PDF: the pages with an invisible text layer).
Markdown and HTML carry each Picture element cropped from the page image, as a
data: URI. A format is added by adding an entry to FORMATS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import PurePath

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from core.dots import render
from core.dots.parse import ParsedPage
from core.dots.prompts import IMAGE_TO_SVG
from ocr_app import documents, pictures, searchablepdf, serving
from ocr_app.events import job_payload
from ocr_app.models import Job, Page


def download_name(job: Job, suffix: str, page: int | None = None) -> str:
    part = f"-page{page}" if page is not None else ""
    return f"{PurePath(job.original_name).stem or 'job'}-{job.pk}{part}{suffix}"


def result_document(job: Job, page: int | None = None) -> dict:
    body = {
        "job": job_payload(job),
        "file": {
            "name": job.original_name,
            "format": job.image_format,
            "width": job.width,
            "height": job.height,
            "sha256": job.sha256,
            "size_bytes": job.size_bytes,
            "pages": job.page_count,
        },
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "gpu": {"peak_bytes": job.peak_gpu_bytes, "free_at_start_bytes": job.gpu_free_at_start_bytes},
        "text": job.text,
        "result": job.result,
    }
    if page is not None:
        row = job.pages.get(number=page)
        body.update(page=page, text=row.text, result=row.result, message=row.message)
    return body


def _pages(job: Job, page: int | None) -> list[ParsedPage]:
    pages = documents.parsed_pages(job)
    if page is None:
        return pages
    return [p for p in pages if p.page_number == page]


def _answer(body: str, content_type: str, job: Job, suffix: str, page: int | None) -> HttpResponse:
    # Shown inline where the browser can (text, JSON, the HTML page), always sandboxed: it is
    # the model's output.
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(False, download_name(job, suffix, page))
    return serving.user_content(response)


def as_txt(job: Job, page: int | None = None) -> HttpResponse:
    text = job.text if page is None else job.pages.get(number=page).text
    return _answer(text, "text/plain; charset=utf-8", job, ".txt", page)


def as_json(job: Job, page: int | None = None) -> HttpResponse:
    body = json.dumps(result_document(job, page), ensure_ascii=False, indent=2)
    return _answer(body, "application/json", job, ".json", page)


def _markdown(job: Job, page: int | None, include_headers_footers: bool) -> str:
    pages = _pages(job, page)
    # data: URIs keep the file whole: a download is one file, with no crops beside it to lose.
    return render.to_markdown(pages, include_headers_footers, pictures.picture_data_uris(job, pages))


def as_markdown(job: Job, page: int | None = None) -> HttpResponse:
    return _answer(_markdown(job, page, True), "text/markdown; charset=utf-8", job, ".md", page)


def as_markdown_nohf(job: Job, page: int | None = None) -> HttpResponse:
    return _answer(_markdown(job, page, False), "text/markdown; charset=utf-8", job, "-nohf.md", page)


def as_html(job: Job, page: int | None = None) -> HttpResponse:
    title = job.original_name if page is None else f"{job.original_name}, page {page}"
    pages = _pages(job, page)
    body = render.to_html(pages, pictures=pictures.picture_data_uris(job, pages), title=title)
    return _answer(body, "text/html; charset=utf-8", job, ".html", page)


def as_pdf(job: Job, page: int | None = None) -> HttpResponse:
    """The searchable PDF (ocr_app/searchablepdf.py), streamed."""
    from rest_framework import status

    from ocr_app.api.errors import ApiError  # here: the job page's views import this module first

    try:
        response = searchablepdf.response(job, page, download_name(job, ".pdf", page))
    except searchablepdf.SourceGone as gone:
        raise ApiError(str(gone), status.HTTP_410_GONE, "pruned", state=job.state) from None
    return serving.user_content(response)


def as_layout(job: Job, page: int | None = None) -> HttpResponse:
    body = render.to_layout_json(_pages(job, page))
    return _answer(body, "application/json", job, "-layout.json", page)


class NoSvg(Exception):
    """The job (or page) has no SVG drawing."""


def as_svg(job: Job, page: int | None = None) -> HttpResponse:
    """The page's drawing (task image_to_svg), sanitized when it was read (core/dots/svg.py); served
    with the user-content headers and meant for <img>, never inlined."""
    pages = _pages(job, page if page is not None else 1)
    drawing = pages[0].svg if pages else None
    if drawing is None:
        raise NoSvg(
            f"Job {job.pk} has no SVG drawing{'' if page is None else f' on page {page}'}: only the "
            "task image_to_svg makes one."
        )
    return _answer(drawing, "image/svg+xml", job, ".svg", page)


FORMATS: dict[str, Callable[[Job, int | None], HttpResponse]] = {
    "txt": as_txt,
    "md": as_markdown,
    "md_nohf": as_markdown_nohf,
    "html": as_html,
    "json": as_json,
    "layout": as_layout,
    "pdf": as_pdf,
    "svg": as_svg,
}
DEFAULT_FORMAT = "json"
# What the job page offers to download, in this order.
DOWNLOADS = [
    ("md", "Markdown"),
    ("md_nohf", "Markdown without page headers and footers"),
    ("html", "HTML"),
    ("txt", "Plain text"),
    ("layout", "Layout JSON (boxes in image pixels)"),
    ("json", "Everything (JSON)"),
    ("pdf", "Searchable PDF"),
]
SVG_DOWNLOAD = ("svg", "SVG drawing")


def downloads_for(job: Job) -> list[tuple[str, str]]:
    """What the job page offers: the SVG too for the SVG task."""
    return [SVG_DOWNLOAD, *DOWNLOADS] if job.mode == IMAGE_TO_SVG else DOWNLOADS


def page_state(job: Job, number: int) -> str | None:
    """The state of page `number`, or None when the job has no such page."""
    return Page.objects.filter(job=job, number=number).values_list("state", flat=True).first()
