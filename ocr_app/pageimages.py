"""The one way to open a page's image: the picture the engine read and the boxes are in.

A document's page (a PDF's, a multi-page TIFF's) is the Page row's rendering (made by the worker); an
image job's one page is its upload (an animated GIF's first frame),
turned as its EXIF says (camera photos carry their rotation there, and a person sees it turned).
Callers decide what a missing or unreadable image means to them: the worker fails the page, the
picture crops are left out, a region cannot be read.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from core import imageformats  # noqa: F401  (registers the HEIF plugin before any image is opened)
from ocr_app.models import Job


class PageImageMissing(LookupError):
    """The page has no image (yet): a document's page not rendered, or a page number beyond an image."""


def page_image_field(job: Job, number: int):
    """The stored file of page `number`'s image, or None when there is none (yet)."""
    if job.is_document:
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
        image.load()  # the first frame
    if image.mode in ("P", "PA", "LA", "RGBA") and image.format == "GIF":
        image = image.convert("RGB")  # a palette frame; the engines read RGB
    return ImageOps.exif_transpose(image)


def first_frame_only(job: Job) -> bool:
    """True for an animated GIF: its first frame is read, the others are not."""
    if job.image_format != "GIF" or not job.upload:
        return False
    try:
        with job.upload.open("rb") as fh, Image.open(fh) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError):
        return False
