"""Checks an uploaded file before anything is stored or queued.

Pure: takes bytes and limits, returns facts or raises UploadRefused with a
sentence that names the problem. The file's extension and the browser's
content type are ignored; only the bytes decide.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from core import frames, imageformats, pdf, textlayer
from core.documents import PDF

# Pillow format name -> what we call it on pages (core/imageformats.py: those this install reads).
ACCEPTED_FORMATS = imageformats.ACCEPTED
ACCEPTED_EXTENSIONS = imageformats.EXTENSIONS
# Animations: only the first frame is read (the job says so). Other multi-frame images are refused,
# but TIFF, whose frames are pages (core/frames.py).
FIRST_FRAME_FORMATS = {"GIF"}


class UploadRefused(ValueError):
    pass


@dataclass(frozen=True)
class CheckedImage:
    image_format: str
    width: int
    height: int
    sha256: str
    size_bytes: int
    # Pages to read: 1 for an image. For a PDF, width and height are its first page's at the dpi
    # it is rendered at; for a multi-frame TIFF, its first frame's.
    pages: int = 1
    # A PDF's pages as core/textlayer.py classifies them (text, mixed, image); empty otherwise.
    page_kinds: tuple[str, ...] = ()


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _formats_sentence() -> str:
    return f"send {imageformats.NAMES}, or a PDF"


def check_image(name: str, data: bytes, max_bytes: int, max_pixels: int, max_pages: int = 1) -> CheckedImage:
    """An image checked by its bytes; a TIFF of several frames is a document of up to `max_pages`
    pages, each frame checked and decoded."""
    if not data:
        raise UploadRefused(f"{name}: the file is empty.")
    if len(data) > max_bytes:
        raise UploadRefused(
            f"{name}: the file is {human_bytes(len(data))}, over the limit of {human_bytes(max_bytes)}."
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (about 89 million pixels, under our default);
            # our limit, checked below before anything is decoded, is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if fmt not in ACCEPTED_FORMATS:
                    raise UploadRefused(f"{name}: {fmt or 'this'} images are not accepted; {_formats_sentence()}.")
                if width * height > max_pixels:
                    raise _too_big(name, width, height, max_pixels)
                pages = 1
                if fmt in frames.PAGED_FORMATS:
                    # Every frame's header is read (counted up to the limit), then every frame decoded:
                    # a truncated page fails here, not in the worker.
                    pages = frames.count_frames(img, name, max_pages, max_pixels)
                    for index in range(pages):
                        img.seek(index)
                        img.load()
                    img.seek(0)
                elif fmt not in FIRST_FRAME_FORMATS and getattr(img, "is_animated", False):
                    # Only the first frame would be read, silently.
                    raise UploadRefused(
                        f"{name}: the image holds more than one frame (an animation or a burst); ocrdash reads "
                        "one image per file. Send each image as its own file, or the document as a PDF or TIFF."
                    )
                img.load()  # decode every byte: a truncated file fails here, not in the worker
    except UploadRefused:
        raise
    except frames.FramesRefused as refused:
        raise UploadRefused(str(refused)) from None
    except Image.DecompressionBombError:
        # Pillow refuses at twice its own limit, which may be below ours.
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
        raise UploadRefused(
            f"{name}: the image is too large to open safely (over {limit:,} pixels)."
        ) from None
    except UnidentifiedImageError:
        raise UploadRefused(
            f"{name}: this is not an image ocrdash can read; {_formats_sentence()}."
        ) from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError) as exc:
        # Pillow reports truncation and corrupt data as OSError/SyntaxError; a TIFF directory cut
        # short as TypeError ("Missing dimensions") or KeyError.
        raise UploadRefused(f"{name}: the image is damaged or incomplete ({exc}).") from None
    if width < 1 or height < 1:
        raise UploadRefused(f"{name}: the image has no pixels.")
    return CheckedImage(
        image_format=ACCEPTED_FORMATS[fmt],
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        pages=pages,
    )


def check_upload(name: str, data: bytes, max_bytes: int, max_pixels: int, max_pdf_pages: int) -> CheckedImage:
    """An image (check_image; a multi-frame TIFF is a document under the same page limit) or a PDF
    (core.pdf.inspect_pdf: page limit, encryption, damage; each page's text layer classified)."""
    if not pdf.looks_like_pdf(data):
        return check_image(name, data, max_bytes, max_pixels, max_pdf_pages)
    try:
        info = pdf.inspect_pdf(data, name, max_pdf_pages, max_bytes, max_image_pixels=max_pixels)
        kinds = textlayer.classify_pages(data, name)
    except pdf.PdfRefused as refused:
        raise UploadRefused(str(refused)) from None
    width_pt, height_pt = info.page_sizes_pt[0]
    dpi = pdf.fit_dpi(width_pt, height_pt) or pdf.MIN_DPI
    return CheckedImage(
        image_format=PDF,
        width=max(1, round(width_pt * dpi / 72)),
        height=max(1, round(height_pt * dpi / 72)),
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        pages=info.page_count,
        page_kinds=tuple(kinds),
    )


def _too_big(name: str, width: int, height: int, max_pixels: int) -> UploadRefused:
    return UploadRefused(
        f"{name}: the image is {width}×{height} = {width * height:,} pixels, "
        f"over the limit of {max_pixels:,}."
    )


def make_thumbnail(data: bytes, name: str = "", longest_side: int = 240) -> bytes:
    """A small JPEG of the image or the PDF's first page. Raises UploadRefused, naming the file,
    when it cannot be drawn (a PDF whose first page is too large to render, damaged image data)."""
    try:
        return _thumbnail(data, name, longest_side)
    except pdf.PdfRefused as refused:
        raise UploadRefused(str(refused)) from None
    except Image.DecompressionBombError:
        raise UploadRefused(f"{name or 'The file'}: the image is too large to open safely.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadRefused(f"{name or 'The file'}: the image is damaged or incomplete ({exc}).") from None


def _thumbnail(data: bytes, name: str, longest_side: int) -> bytes:
    from PIL import ImageOps

    if pdf.looks_like_pdf(data):
        first, _dpi = pdf.render_page(data, 0, dpi=pdf.MIN_DPI, name=name or None)
        first.thumbnail((longest_side, longest_side))
        out = io.BytesIO()
        first.convert("RGB").save(out, "JPEG", quality=80)
        return out.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        thumb = ImageOps.exif_transpose(img).convert("RGB")
        thumb.thumbnail((longest_side, longest_side))
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=80)
        return out.getvalue()
