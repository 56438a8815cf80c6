"""Picture elements cropped from their page image as PNG: embedded in the Markdown and HTML
downloads as data: URIs, and served one at a time for the job page.

The boxes are in the pixels of the image the engine read: a PDF page as the worker rendered it
(the Page row's image), an image job's upload turned as its EXIF says (as the worker turns it).
A page whose image is missing or unreadable gets no crops; its text still exports.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence

from PIL import Image

from core.dots import render
from core.dots.parse import ParsedPage
from ocr_app import documents, pageimages
from ocr_app.models import Job

log = logging.getLogger(__name__)

# Longer side of a crop, in pixels: a full-page photo at 300 dpi would make a download of many MB.
MAX_SIDE = 1600
DATA_URI_PREFIX = "data:image/png;base64,"


def open_rgb(job: Job, number: int) -> Image.Image | None:
    """Page `number`'s image as RGB, in the pixels the boxes are in; None when it is missing or
    cannot be read (its text still exports)."""
    try:
        with pageimages.open_page_image(job, number) as image:
            return image.convert("RGB")
    except pageimages.PageImageMissing:
        return None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("job %s page %s: no page image for pictures (%s)", job.pk, number, exc)
        return None


def _png(crop: Image.Image) -> bytes:
    if max(crop.size) > MAX_SIDE:
        crop.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    crop.save(out, "PNG")
    return out.getvalue()


def page_pngs(job: Job, page: ParsedPage, only: int | None = None) -> dict[int, bytes]:
    """{element index: PNG} of the page's Picture elements (or of element `only`)."""
    wanted = [
        e for e in page.elements if e.category == "Picture" and e.bbox is not None and (only is None or e.index == only)
    ]
    if not wanted:
        return {}  # most pages have no picture: their image is not opened
    image = open_rgb(job, page.page_number or 1)
    if image is None:
        return {}
    with image:
        return {index: _png(crop) for index, crop in render.crop_pictures(image, wanted).items()}


def picture_data_uris(job: Job, pages: Sequence[ParsedPage]) -> dict[tuple[int, int], str]:
    """{(page number, element index): data:image/png URI}, the `pictures` mapping of render."""
    uris = {}
    for i, page in enumerate(pages, start=1):
        number = page.page_number or i  # numbered as render numbers them
        for index, png in page_pngs(job, page).items():
            uris[(number, index)] = DATA_URI_PREFIX + base64.b64encode(png).decode("ascii")
    return uris


def picture_png(job: Job, number: int, index: int) -> bytes | None:
    """The PNG of Picture element `index` on page `number`, or None when there is no such picture."""
    page = documents.parsed_page_number(job, number)
    if page is None:
        return None
    return page_pngs(job, page, only=index).get(index)
