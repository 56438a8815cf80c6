"""Reading one region of a page: a grounding job on that page's image.

The box comes from the job page (drawn on the page image) or the API, in the pixels of the page
image the layout view shows: an image job's own image, or a document's page as the worker rendered it.
The new job reads that image (dots.ocr's grounding prompt; rapidocr reads the cropped region) and
belongs to whoever asked; the source job is left as it is.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath

from django.conf import settings
from PIL import Image

from core.dots.prompts import GROUNDING
from ocr_app import pageimages
from ocr_app.delivery import require_broker
from ocr_app.models import Job
from ocr_app.queueing import create_job
from ocr_app.validation import UploadRefused, check_upload

# A box thinner than this holds no readable glyph.
MIN_SIDE = 4


class RegionError(ValueError):
    """The box or the page cannot be read; the message says why."""


def parse_box(value) -> list[float]:
    """[x1, y1, x2, y2] from a list or a string ("[10, 20, 300, 80]" or "10,20,300,80")."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [part for part in text.split(",") if part.strip()]
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise RegionError("The region must be four numbers: [x1, y1, x2, y2] in the page's pixels.")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise RegionError("The region must be four numbers: [x1, y1, x2, y2] in the page's pixels.") from None
    if not all(math.isfinite(v) for v in numbers):
        raise RegionError("The region's numbers must be finite.")
    return numbers


def clamp_box(box: list[float], width: int, height: int) -> list[int]:
    """The box inside a width × height page, corners in order, whole pixels."""
    x1, y1, x2, y2 = box
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    left, right = max(0, math.floor(x1)), min(width, math.ceil(x2))
    top, bottom = max(0, math.floor(y1)), min(height, math.ceil(y2))
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise RegionError(
            f"The region must cover at least {MIN_SIDE}×{MIN_SIDE} pixels of the {width}×{height} page."
        )
    return [left, top, right, bottom]


def page_file(job: Job, number: int) -> tuple[str, bytes]:
    """(file name, bytes) of the image the page's boxes are in."""
    if not 1 <= number <= max(job.page_count, 1):
        raise RegionError(f"Page {number} does not exist: the file has {job.page_count} page(s).")
    field = pageimages.page_image_field(job, number)
    if field is None:
        raise RegionError(f"Page {number} has not been rendered yet: wait until the worker has read it.")
    with field.open("rb") as fh:
        data = fh.read()
    if not job.is_document:
        return job.original_name, data
    return f"{PurePath(job.original_name).stem or 'page'}-page{number}.png", data


def create_region_job(source: Job, number: int, box, owner) -> Job:
    """A queued (or, with the same file, box and settings as an earlier one, reused) grounding job.
    Raises RegionError, delivery.BrokerUnavailable or files.DiskFull."""
    wanted = parse_box(box)
    name, data = page_file(source, number)
    try:
        checked = check_upload(
            name, data, settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS, settings.MAX_PDF_PAGES
        )
    except UploadRefused as exc:
        raise RegionError(f"The page image cannot be read again: {exc}") from None
    # The box is in the pixels of the page as shown and read: turned as its EXIF says.
    try:
        with pageimages.open_page_image(source, number) as shown:
            size = shown.size
    except (pageimages.PageImageMissing, OSError, ValueError, Image.DecompressionBombError):
        raise RegionError(f"The image of page {number} cannot be read.") from None
    region = clamp_box(wanted, *size)
    require_broker()
    try:
        return create_job(owner, name, data, checked, source.language, mode=GROUNDING, region=region)
    except UploadRefused as exc:
        raise RegionError(f"The page image cannot be read again: {exc}") from None
