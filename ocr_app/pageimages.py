"""The one way to open a page's image: the picture the engine read and the boxes are in.

A PDF page is the Page row's rendering (made by the worker); an image job's one page is its upload,
turned as its EXIF says (camera photos carry their rotation there, and a person sees it turned).
Callers decide what a missing or unreadable image means to them: the worker fails the page, the
picture crops are left out, a region cannot be read.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from ocr_app.models import Job
from ocr_app.validation import PDF


class PageImageMissing(LookupError):
    """The page has no image (yet): a PDF page not rendered, or a page number beyond an image."""


def page_image_field(job: Job, number: int):
    """The stored file of page `number`'s image, or None when there is none (yet)."""
    if job.image_format == PDF:
        row = job.pages.filter(number=number).first()
        field = row.image if row else None
    else:
        field = job.upload if number == 1 else None
    return field or None


def open_page_image(job: Job, number: int) -> Image.Image:
    """Page `number`'s image, loaded and upright, in the mode it was stored in. Raises
    PageImageMissing, or Pillow's and the storage's errors for a file that cannot be read."""
    field = page_image_field(job, number)
    if field is None:
        raise PageImageMissing(f"Page {number} of job {job.pk} has no image.")
    with field.open("rb") as fh:
        image = Image.open(fh)
        image.load()
    return ImageOps.exif_transpose(image)
