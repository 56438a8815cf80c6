"""Multi-page documents: a PDF, or a multi-frame TIFF. One job reads them a page at a time, and
every page is rendered to an image the same way whatever the format (pure: no Django).

An upload is a document when it is a PDF, or an image of a paged format (core/frames.py) with
more than one frame; anything else is one image, whose upload is its only page.
"""

from __future__ import annotations

from PIL import Image

from core import frames, pdf

PDF = "PDF"


class PageRefused(ValueError):
    """A page that cannot be rendered; str() is a sentence to show the user."""


def is_document(image_format: str, page_count: int) -> bool:
    return image_format == PDF or (image_format in frames.PAGED_FORMATS and page_count > 1)


def render_page(
    image_format: str, data: bytes, index: int, name: str | None = None, preview: bool = False
) -> tuple[Image.Image, int | None]:
    """Page `index` (0-based) as an RGB image and the dpi it was rendered at (None for an image's
    frame, which has pixels of its own); `preview`: a PDF page at the lowest dpi, for a quick look.
    Raises PageRefused, or IndexError for no such page."""
    try:
        if image_format == PDF:
            return pdf.render_page(data, index, dpi=pdf.MIN_DPI if preview else pdf.DEFAULT_DPI, name=name)
        return frames.render_frame(data, index, name or "The image"), None
    except (pdf.PdfRefused, frames.FramesRefused) as exc:
        raise PageRefused(str(exc)) from None


def render_each(image_format: str, data: bytes | None, numbers: list[int], name: str):
    """(number, (image, dpi) or the PageRefused) for each page number (1-based) in turn: what the
    worker renders ahead of the backend on a CPU thread (core/prefetch.py)."""
    if data is None:
        return
    for number in numbers:
        try:
            yield number, render_page(image_format, data, number - 1, name=name)
        except PageRefused as exc:
            yield number, exc
