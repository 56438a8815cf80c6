"""A PDF page's own text (its text layer), read with PDFium's text page (pypdfium2, no Django).

Born-digital PDFs hold their exact text; reading it takes milliseconds and no GPU. Each page is
classified at upload:

- ``text``: a usable text layer and little else (images cover under a quarter of the page);
- ``mixed``: a usable text layer and large images, whose text only OCR can read;
- ``image``: no usable text (a scan, or a text layer of garbage: unmapped glyphs, private-use or
  control characters, replacement characters).

How a job uses it (the upload option, default from OCRDASH_PDF_TEXT_LAYER):

- ``auto``: ``text`` pages are read from the text layer for the text task; the layout tasks are
  OCR'd (their boxes and categories only the model gives);
- ``ocr``: every page is OCR'd;
- ``text-layer``: every page with a usable text layer (``text`` or ``mixed``) is read from it.

Right-to-left text: PDFs usually draw Arabic or Hebrew glyphs in visual order (left to right as
they stand on the page). A line holding right-to-left characters is put in visual order by its
glyphs' positions and turned into logical (reading) order with the Unicode bidi algorithm
(python-bidi), so the result reads as the rapidocr engine's does. Arabic presentation forms (shaped
glyphs) are folded to their letters (NFKC).
"""

from __future__ import annotations

import ctypes
import unicodedata
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from core import pdf
from core.results import OcrResult, TextLine

AUTO, OCR, TEXT_LAYER = "auto", "ocr", "text-layer"
CHOICES = (AUTO, OCR, TEXT_LAYER)
TEXT, MIXED, IMAGE = "text", "mixed", "image"

# A text layer is usable when at least this share of its visible characters are real text (letters,
# digits, punctuation, symbols of an assigned, public code point)...
MIN_GOOD_SHARE = 0.9
# ...and at least this share are letters or digits (a layer of stray symbols is not text).
MIN_WORD_SHARE = 0.5
# Images covering at least this share of the page make a page with text "mixed".
MIXED_IMAGE_SHARE = 0.25

_RTL = {"R", "AL"}


@dataclass(frozen=True)
class Line:
    text: str  # in logical order
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the pixels of the page rendered at image_size


def reads_text_layer(choice: str, kind: str, text_task: bool) -> bool:
    """Whether a page of this kind is read from its text layer under `choice` (AUTO, OCR, TEXT_LAYER)."""
    if choice == TEXT_LAYER:
        return kind in (TEXT, MIXED)
    if choice == AUTO:
        return kind == TEXT and text_task
    return False


def usable_text(text: str) -> bool:
    """True for real text; False for nothing, or a garbage layer (see MIN_GOOD_SHARE)."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return False
    good = words = 0
    for ch in visible:
        category = unicodedata.category(ch)
        if ch == "\ufffd" or category in ("Co", "Cn", "Cs", "Cc", "Cf"):
            continue
        good += 1
        if category[0] in "LN":
            words += 1
    return good / len(visible) >= MIN_GOOD_SHARE and words / len(visible) >= MIN_WORD_SHARE


def classify_pages(data: bytes, name: str | None = None) -> list[str]:
    """Each page's kind (TEXT, MIXED, IMAGE), in order; PdfRefused as core.pdf for a bad document."""
    data = bytes(data)
    kinds = []
    with pdf.LOCK:
        document = pdf.open_document(data, name)
        try:
            for index in range(len(document)):
                page = document[index]
                try:
                    kinds.append(_classify(page))
                finally:
                    page.close()
        except pdfium.PdfiumError:
            kinds.extend([IMAGE] * (len(document) - len(kinds)))  # the page checks refuse it; OCR otherwise
        finally:
            document.close()
    return kinds


def read_lines(data: bytes, index: int, image_size: tuple[int, int], name: str | None = None) -> list[Line]:
    """Page `index`'s text layer as lines in reading order, with boxes in the pixels of the page
    rendered at `image_size` (its /Rotate applied, as core.pdf renders it)."""
    data = bytes(data)
    with pdf.LOCK:
        document = pdf.open_document(data, name)
        try:
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    return _lines(page, textpage, image_size)
                finally:
                    textpage.close()
            finally:
                page.close()
        finally:
            document.close()


# -- internals -------------------------------------------------------------------------------


def _classify(page: pdfium.PdfPage) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
    if not usable_text(text):
        return IMAGE
    width, height = page.get_size()
    area = max(width * height, 1.0)
    covered = 0.0
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,)):
        left, bottom, right, top = obj.get_bounds()
        covered += max(0.0, right - left) * max(0.0, top - bottom)
    return MIXED if covered / area >= MIXED_IMAGE_SHARE else TEXT


def _lines(page: pdfium.PdfPage, textpage: pdfium.PdfTextPage, image_size: tuple[int, int]) -> list[Line]:
    raw = textpage.raw
    to_pixels = _page_to_pixels(page, image_size)
    lines: list[Line] = []
    current: list[tuple[str, tuple[float, float, float, float] | None]] = []

    def flush() -> None:
        line = _line(current, to_pixels)
        if line is not None:
            lines.append(line)
        current.clear()

    rect = pdfium_c.FS_RECTF()
    for i in range(textpage.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(raw, i)
        ch = chr(code) if 0 < code < 0x110000 else ""
        if ch in ("\r", "\n"):
            flush()
            continue
        if not ch or (unicodedata.category(ch) in ("Cc", "Cf") and not ch.isspace()):
            continue
        # Loose boxes: the glyph's advance and the font's height, so neighbours touch (tight boxes
        # leave gaps between glyphs that read as spaces). A generated space has none.
        box = None
        if pdfium_c.FPDFText_GetLooseCharBox(raw, i, rect) and rect.right > rect.left:
            box = (rect.left, min(rect.bottom, rect.top), rect.right, max(rect.bottom, rect.top))
        current.append((ch, box))
    flush()
    return lines


def _line(chars, to_pixels) -> Line | None:
    boxes = [box for ch, box in chars if box is not None and not ch.isspace()]
    if not boxes:
        return None
    if any(unicodedata.bidirectional(ch) in _RTL for ch, _box in chars):
        text = _logical(chars)
    else:
        text = "".join(ch for ch, _box in chars)
    text = " ".join(_fold_presentation_forms(text).split())
    if not text:
        return None
    corners = [to_pixels(x, y) for x1, y1, x2, y2 in boxes for x, y in ((x1, y1), (x2, y2))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return Line(text=text, box=(min(xs), min(ys), max(xs), max(ys)))


def _logical(chars) -> str:
    """A line's characters in reading order: glyphs sorted left to right by position (visual
    order, whatever order the file drew them in), a space where a gap is, then the bidi algorithm."""
    from bidi import get_display

    glyphs = sorted(((box, ch) for ch, box in chars if box is not None), key=lambda g: (g[0][0] + g[0][2]) / 2)
    heights = sorted(box[3] - box[1] for box, _ch in glyphs)
    gap = 0.25 * heights[len(heights) // 2] if heights else 0.0
    visual = []
    previous_right = None
    for box, ch in glyphs:
        if previous_right is not None and box[0] - previous_right > gap:
            visual.append(" ")
        visual.append(ch)
        previous_right = box[2]
    # For text already in visual order the algorithm's reordering gives the logical order back.
    return get_display("".join(visual), base_dir="R")


def _fold_presentation_forms(text: str) -> str:
    return "".join(
        unicodedata.normalize("NFKC", ch) if 0xFB50 <= ord(ch) <= 0xFDFF or 0xFE70 <= ord(ch) <= 0xFEFF else ch
        for ch in text
    )


def _page_to_pixels(page: pdfium.PdfPage, image_size: tuple[int, int]):
    """Page space (points) to the rendered image's pixels, /Rotate and the crop box's origin applied."""
    width, height = image_size
    dx, dy = ctypes.c_int(), ctypes.c_int()

    def convert(x: float, y: float) -> tuple[int, int]:
        # rotate 0: as in rendering, PDFium applies the page's own /Rotate; the argument adds to it.
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, dx, dy)
        return (min(max(dx.value, 0), width), min(max(dy.value, 0), height))

    return convert


def as_result(lines: list[Line]) -> OcrResult:
    """The lines as an engine's answer (the shape rapidocr gives: lines with four-corner boxes)."""
    return OcrResult(
        text="\n".join(line.text for line in lines),
        lines=[
            TextLine(text=line.text, box=[[x1, y1], [x2, y1], [x2, y2], [x1, y2]], score=1.0)
            for line in lines
            for x1, y1, x2, y2 in [line.box]
        ],
        details={"source": TEXT_LAYER},
    )
