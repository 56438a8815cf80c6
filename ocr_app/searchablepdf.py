"""A job's searchable PDF (`format=pdf`): its pages with an invisible text layer on each recognized
line or element (core/searchable.py writes it).

A PDF job keeps its original pages; any other job's pages are its images. Boxes come from what the
page holds: the layout tasks' elements, the text engine's or the text layer's lines, else the
page's text over the whole page (dots.ocr's text task gives no boxes). The file is written to a
temporary file on disk and streamed from there: the original is read as needed and page images
are opened one at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

from django.http import FileResponse
from PIL import Image

from core import documents, searchable
from core.dots.parse import ParsedPage
from core.dots.prompts import LAYOUT_ALL, LAYOUT_ONLY
from core.dots.tables import table_to_text
from ocr_app import pageimages, retention
from ocr_app.models import Job, Page


class SourceGone(LookupError):
    """The file the PDF is made from was removed by the retention settings; str() says when."""


def page_text(page: Page) -> searchable.PageText | None:
    """A succeeded page's text and boxes, in its image's pixels; None for a page without text."""
    if page.state != Page.SUCCEEDED or not page.result:
        return None
    result = page.result
    size = result.get("image_size") or [page.width or 1, page.height or 1]
    width, height = int(size[0]), int(size[1])
    parsed = ParsedPage.from_dict(result.get("page") or {})
    boxes: list[searchable.TextBox] = []
    loose: list[str] = []
    if parsed.mode in (LAYOUT_ALL, LAYOUT_ONLY) and parsed.elements:
        for element in parsed.elements:
            if element.category == "Picture":
                continue
            text = table_to_text(element.text) if element.category == "Table" else element.text
            if not text.strip():
                continue
            if element.bbox is None:
                loose.append(text)
            else:
                boxes.append(searchable.TextBox(text, tuple(element.bbox)))
    elif result.get("lines"):
        for line in result["lines"]:
            points = line.get("box") or []
            if points and (line.get("text") or "").strip():
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                boxes.append(searchable.TextBox(line["text"], (min(xs), min(ys), max(xs), max(ys))))
    elif page.text.strip():
        loose.append(page.text)
    if loose:  # no box of their own: laid over the whole page
        boxes.append(searchable.TextBox("\n".join(loose), (0, 0, width, height)))
    return searchable.PageText((width, height), boxes) if boxes else None


def response(job: Job, number: int | None, filename: str) -> FileResponse:
    """The searchable PDF of the whole job, or of page `number`, as a streamed download. Raises
    SourceGone when the file it is made from was removed."""
    pages = list(job.pages.order_by("number"))
    if number is not None:
        pages = [p for p in pages if p.number == number]
    out = tempfile.TemporaryFile()  # on disk: FileResponse streams it and closes it
    try:
        if job.image_format == documents.PDF:
            gone = retention.removed_message(job, retention.ORIGINAL)
            if gone or not job.upload:
                raise SourceGone(gone or "The uploaded PDF is no longer stored.")
            with job.upload.open("rb") as source:
                texts = [page_text(p) for p in pages]
                searchable.searchable_from_pdf(source, texts, out, only=number)
        else:
            searchable.searchable_from_images(_images(job, pages), out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return FileResponse(out, as_attachment=True, filename=filename, content_type="application/pdf")


def _images(job: Job, pages: list[Page]) -> Iterator[tuple[Image.Image, int | None, searchable.PageText | None]]:
    data: bytes | None = None
    for page in pages:
        try:
            image = pageimages.open_page_image(job, page.number)
            dpi = page.dpi
        except (pageimages.PageImageMissing, OSError, ValueError):
            # Not rendered (a failed page) or removed: drawn again from the upload.
            gone = retention.removed_message(job, retention.ORIGINAL)
            if gone or not job.upload:
                raise SourceGone(gone or "The uploaded file is no longer stored.") from None
            if data is None:
                with job.upload.open("rb") as fh:
                    data = fh.read()
            if job.is_document:
                image, dpi = documents.render_page(job.image_format, data, page.number - 1, job.original_name)
            else:
                raise SourceGone("The uploaded image cannot be read any more.") from None
        yield image, dpi, page_text(page)
        image.close()
