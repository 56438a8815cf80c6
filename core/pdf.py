"""PDF uploads: check them, then render their pages to images for OCR (pypdfium2, no Django).

Rendering follows dots.ocr: pages are rasterised at 200 dpi on a white background. dots.ocr drops
straight to 72 dpi when a side of the 200-dpi image would pass 4500 pixels; here the dpi is lowered
only as far as needed to keep the image within a pixel budget (DEFAULT_MAX_PIXELS), never below a
floor (MIN_DPI). A page too large even at the floor is refused rather than rendered into gigabytes.

Sizes are in PDF points (1/72 inch) as PDFium reports them: the page's /Rotate is already applied
(a portrait page rotated by 90° is landscape) and rendering honours it too. PDFium ignores the
rarely used /UserUnit, and so does this module.

Thread safety: PDFium is not thread-safe, not even across different documents, so every call
into it here holds one process-wide lock. Each function opens its own document, so calls from
several threads (e.g. upload checks in the web process) are safe, only serialised. For parallel
rendering use processes (Celery worker processes each have their own PDFium).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

DEFAULT_DPI = 200  # dots.ocr renders PDF pages at 200 dpi
MIN_DPI = 72  # the floor when lowering the dpi of a large page (dots.ocr's own fallback)
# dots.ocr never gives the model more than 11,289,600 pixels (3360²); what is rendered above that
# only sharpens the page view and Picture crops. 1.5× that keeps pages up to A2 at 200 dpi and
# bounds one page image at ~48 MiB of RGB, where a 200-dpi A0 poster would be ~186 MiB.
DEFAULT_MAX_PIXELS = 16_934_400

# Only whitespace may come before the header (PDF whitespace includes NUL).
_PDF_HEADER = b"%PDF-"
_LEADING_WHITESPACE = b" \t\r\n\f\x00"
_HEADER_WINDOW = 1024

_WHITE = (255, 255, 255, 255)
_LOCK = threading.RLock()

# PdfRefused.reason values, for callers that react to the kind of problem.
EMPTY = "empty"
NOT_PDF = "not_pdf"
TOO_BIG = "too_big"
BROKEN = "broken"
ENCRYPTED = "encrypted"
NO_PAGES = "no_pages"
TOO_MANY_PAGES = "too_many_pages"
PAGE_TOO_LARGE = "page_too_large"
IMAGE_TOO_LARGE = "image_too_large"


class PdfRefused(ValueError):
    """A PDF (or one of its pages) that cannot be used; str() is a sentence to show the user.

    ``reason`` is one of the constants above; ``page_index`` is the 0-based page at fault, or None
    when the whole document is refused.
    """

    def __init__(self, message: str, reason: str, page_index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.page_index = page_index


@dataclass(frozen=True)
class PdfInfo:
    page_count: int
    page_sizes_pt: list[tuple[float, float]]  # (width, height) per page, rotation applied
    sha256: str  # of the file's bytes
    size_bytes: int
    # Encrypted yet readable: an owner password (permissions) only. PDFs that need a password are refused.
    encrypted: bool


# -- checks ----------------------------------------------------------------------------------


def looks_like_pdf(data: bytes) -> bool:
    """True when the bytes begin with the PDF header, after optional whitespace."""
    return bytes(data[:_HEADER_WINDOW]).lstrip(_LEADING_WHITESPACE).startswith(_PDF_HEADER)


def inspect_pdf(
    data: bytes, name: str, max_pages: int, max_bytes: int, max_image_pixels: int | None = None
) -> PdfInfo:
    """Check an uploaded PDF and describe it, or raise PdfRefused with a sentence naming the file.

    Every page is loaded once, so a document whose page tree is damaged is refused here rather
    than halfway through a job. So is a page too large to render even at MIN_DPI, and a page that
    holds an image of more than `max_image_pixels` pixels (a decompression bomb inside a PDF:
    PDFium would decode it whole to draw the page); image sizes are read from the image's
    dictionary, nothing is decoded.
    """
    label = _label(name)
    data = bytes(data)
    size = len(data)
    if size == 0:
        raise PdfRefused(f"{label} is empty (0 bytes).", EMPTY)
    if not looks_like_pdf(data):
        raise PdfRefused(
            f"{label} is not a PDF file: its content does not begin with the %PDF- header. "
            "Upload the PDF itself, or an image.",
            NOT_PDF,
        )
    if size > max_bytes:
        raise PdfRefused(
            f"{label} is {_human_bytes(size)}, over the {_human_bytes(max_bytes)} limit for PDFs.", TOO_BIG
        )
    digest = hashlib.sha256(data).hexdigest()

    with _LOCK:
        pdf = _open(data, label)
        try:
            count = len(pdf)
            if count > max_pages:
                raise PdfRefused(
                    f"{label} has {count} pages; the limit is {max_pages} "
                    f"page{'s' if max_pages != 1 else ''} per PDF. Split it into smaller files.",
                    TOO_MANY_PAGES,
                )
            encrypted = pdfium_c.FPDF_GetSecurityHandlerRevision(pdf) != -1
            sizes = []
            for index in range(count):
                page = _load_page(pdf, index, count, label)
                try:
                    width, height = page.get_size()
                    if not (width > 0 and height > 0):
                        raise _page_broken(label, index, count)
                    if fit_dpi(width, height) is None:
                        raise _page_too_large(label, index, count, width, height, DEFAULT_DPI, DEFAULT_MAX_PIXELS)
                    if max_image_pixels is not None:
                        _check_images(page, label, index, count, max_image_pixels)
                finally:
                    page.close()
                sizes.append((width, height))
        except pdfium.PdfiumError as exc:
            raise _broken(label, exc) from exc
        finally:
            pdf.close()
    return PdfInfo(page_count=count, page_sizes_pt=sizes, sha256=digest, size_bytes=size, encrypted=encrypted)


def page_count(data: bytes, name: str | None = None) -> int:
    """Number of pages; PdfRefused when the document cannot be opened or has none."""
    data = bytes(data)
    with _LOCK:
        pdf = _open(data, _label(name))
        try:
            return len(pdf)
        finally:
            pdf.close()


# -- rendering -------------------------------------------------------------------------------


def fit_dpi(
    width_pt: float,
    height_pt: float,
    dpi: int = DEFAULT_DPI,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_dpi: int = MIN_DPI,
) -> int | None:
    """The dpi a page of this size is rendered at: ``dpi``, or the highest lower whole dpi whose
    image stays within ``max_pixels``, not below ``min_dpi`` (None when even that is too large).

    The image size is computed as pypdfium2 does (each side rounded up), so the promise holds.
    """
    _check_settings(dpi, max_pixels, min_dpi)
    if not (width_pt > 0 and height_pt > 0):
        raise ValueError(f"a page of {width_pt} × {height_pt} pt has no area")
    if _pixels(width_pt, height_pt, dpi) <= max_pixels:
        return dpi
    floor = min(dpi, min_dpi)
    candidate = min(dpi - 1, int(72 * math.sqrt(max_pixels / (width_pt * height_pt))))
    while candidate >= floor and _pixels(width_pt, height_pt, candidate) > max_pixels:
        candidate -= 1
    return candidate if candidate >= floor else None


def render_page(
    data: bytes,
    index: int,
    dpi: int = DEFAULT_DPI,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    min_dpi: int = MIN_DPI,
    name: str | None = None,
) -> tuple[Image.Image, int]:
    """Render page ``index`` (0-based) to an RGB image; returns (image, dpi actually used).

    The dpi is lowered for pages that would exceed ``max_pixels`` (see fit_dpi). Raises
    PdfRefused for a document or page that cannot be rendered, IndexError for a page that
    does not exist.
    """
    _check_settings(dpi, max_pixels, min_dpi)
    label = _label(name)
    data = bytes(data)
    with _LOCK:
        pdf = _open(data, label)
        try:
            count = len(pdf)
            if not 0 <= index < count:
                raise IndexError(f"page index {index} is out of range for a PDF of {count} pages")
            return _render(pdf, index, count, label, dpi, max_pixels, min_dpi)
        finally:
            pdf.close()


def iter_pages(
    data: bytes,
    dpi: int = DEFAULT_DPI,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    min_dpi: int = MIN_DPI,
    name: str | None = None,
    start: int = 0,
) -> Iterator[tuple[int, Image.Image, int]]:
    """Yield (index, RGB image, dpi used) for each page from ``start`` on, opening the document once.

    A page that cannot be rendered raises PdfRefused with its ``page_index`` and ends the
    iteration; carry on from the next page with ``start=exc.page_index + 1``. The lock is held
    only while PDFium works, never while the caller handles a yielded page.
    """
    _check_settings(dpi, max_pixels, min_dpi)
    label = _label(name)
    data = bytes(data)  # stays referenced by this frame: PDFium reads from it until closed
    with _LOCK:
        pdf = _open(data, label)
        count = len(pdf)
    try:
        for index in range(max(0, start), count):
            with _LOCK:
                image, used_dpi = _render(pdf, index, count, label, dpi, max_pixels, min_dpi)
            yield index, image, used_dpi
    finally:
        with _LOCK:
            pdf.close()


# -- internals -------------------------------------------------------------------------------


def _open(data: bytes, label: str) -> pdfium.PdfDocument:
    """Open ``data`` (which the caller keeps referenced until close) or raise PdfRefused.

    The document is loaded through the raw API because pypdfium2's constructor reports a
    document with no pages using PDFium's last error code, which may be left over from an
    earlier failure (e.g. "incorrect password"), and it leaves that document open. Here the
    error code is read only right after a failed load.
    """
    raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if not raw:
        code = pdfium_c.FPDF_GetLastError()
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise PdfRefused(
                f"{label} is password-protected. Save it again without a password (for example with "
                "your PDF reader's \u201cprint to PDF\u201d or its security settings) and upload that copy.",
                ENCRYPTED,
            )
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise PdfRefused(
                f"{label} is encrypted with a security scheme that cannot be opened. Save it again "
                "without a password or encryption and upload that copy.",
                ENCRYPTED,
            )
        raise PdfRefused(
            f"{label} is damaged and cannot be read ({_pdfium_reason(code)}). "
            "Try saving or exporting it as a PDF again.",
            BROKEN,
        )
    pdf = pdfium.PdfDocument(raw)
    try:
        pdf.init_forms()  # so that filled-in form fields are drawn; must precede loading pages
        if len(pdf) < 1:
            raise PdfRefused(f"{label} has no pages.", NO_PAGES)
    except PdfRefused:
        pdf.close()
        raise
    except pdfium.PdfiumError as exc:
        pdf.close()
        raise _broken(label, exc) from exc
    return pdf


def _load_page(pdf: pdfium.PdfDocument, index: int, count: int, label: str) -> pdfium.PdfPage:
    try:
        return pdf[index]
    except pdfium.PdfiumError as exc:
        raise _page_broken(label, index, count) from exc


def _render(
    pdf: pdfium.PdfDocument, index: int, count: int, label: str, dpi: int, max_pixels: int, min_dpi: int
) -> tuple[Image.Image, int]:
    page = _load_page(pdf, index, count, label)
    try:
        width, height = page.get_size()
        if not (width > 0 and height > 0):
            raise _page_broken(label, index, count)
        used_dpi = fit_dpi(width, height, dpi, max_pixels, min_dpi)
        if used_dpi is None:
            raise _page_too_large(label, index, count, width, height, dpi, max_pixels, min_dpi)
        # White paper under the page (PDF pages are transparent); no alpha channel.
        # 3-byte BGR: PIL's conversion to RGB copies the pixels out of PDFium's buffer, which
        # bitmap.close() frees (4-byte formats would be shared with the image instead).
        bitmap = page.render(
            scale=used_dpi / 72,
            fill_color=_WHITE,
            may_draw_forms=True,
            force_bitmap_format=pdfium_c.FPDFBitmap_BGR,
        )
        try:
            image = bitmap.to_pil()
            if image.mode != "RGB":
                image = image.convert("RGB")
        finally:
            bitmap.close()
        return image, used_dpi
    except pdfium.PdfiumError as exc:
        raise _page_broken(label, index, count) from exc
    finally:
        page.close()


def _page_too_large(
    label: str, index: int, count: int, width: float, height: float, dpi: int, max_pixels: int, min_dpi: int = MIN_DPI
) -> PdfRefused:
    floor = min(dpi, min_dpi)
    return PdfRefused(
        f"{label} cannot be rendered: page {index + 1} of {count} is too large "
        f"({width / 72:.0f} × {height / 72:.0f} inches): even at {floor} dpi it would be "
        f"{_pixels(width, height, floor) / 1e6:.0f} megapixels, over the "
        f"{max_pixels / 1e6:.1f} megapixel limit.",
        PAGE_TOO_LARGE,
        page_index=index,
    )


def _check_images(page: pdfium.PdfPage, label: str, index: int, count: int, max_pixels: int) -> None:
    for image in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,)):
        try:
            width, height = image.get_px_size()
        except pdfium.PdfiumError:
            raise _page_broken(label, index, count) from None
        if width * height > max_pixels:
            raise PdfRefused(
                f"{label}: page {index + 1} of {count} holds an image of {width}×{height} = "
                f"{width * height:,} pixels, over the limit of {max_pixels:,}.",
                IMAGE_TOO_LARGE,
                page_index=index,
            )


def _pixels(width_pt: float, height_pt: float, dpi: int) -> int:
    scale = dpi / 72
    return math.ceil(width_pt * scale) * math.ceil(height_pt * scale)


def _check_settings(dpi: int, max_pixels: int, min_dpi: int) -> None:
    if dpi < 1 or min_dpi < 1 or max_pixels < 1:
        raise ValueError(f"dpi ({dpi}), min_dpi ({min_dpi}) and max_pixels ({max_pixels}) must be positive")


def _broken(label: str, exc: pdfium.PdfiumError) -> PdfRefused:
    return PdfRefused(f"{label} is damaged and cannot be read. Try saving or exporting it as a PDF again.", BROKEN)


def _page_broken(label: str, index: int, count: int) -> PdfRefused:
    return PdfRefused(
        f"{label} is damaged: page {index + 1} of {count} cannot be read. Try saving or exporting it as a PDF again.",
        BROKEN,
        page_index=index,
    )


def _pdfium_reason(code: int) -> str:
    reasons = {
        pdfium_c.FPDF_ERR_FILE: "the file could not be read",
        pdfium_c.FPDF_ERR_FORMAT: "its structure is not valid PDF",
        pdfium_c.FPDF_ERR_PAGE: "a page is missing or damaged",
    }
    return reasons.get(code, "unknown error")


def _label(name: str | None) -> str:
    """The file's own name in quotes (browsers on Windows may send a whole path), or "The PDF"."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base:
        return "The PDF"
    if len(base) > 80:
        base = base[:77] + "..."
    return f"\u201c{base}\u201d"


def _human_bytes(size: int) -> str:
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            text = f"{size / factor:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{size} bytes"
