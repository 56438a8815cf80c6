"""Searchable PDFs: each page as it was (the original PDF page, or the image as a PDF page) with an
invisible text layer laid on every recognized line or element, so any viewer can search and select
the text. Pure: pikepdf, no Django.

Why pikepdf: it is qpdf's Python binding, kept up by the OCRmyPDF project; it edits the original
PDF's pages in place (their content, fonts and annotations stay exactly as they were, nothing is
re-rendered) and qpdf writes the output by streaming objects from the source file, so a large
document is never held whole in memory. Image pages are added one at a time, compressed.

The text layer follows what OCR engines write (Tesseract's and OCRmyPDF's "glyphless font"): a
Type0 font with Identity-H encoding, so each character code is its Unicode code point, with a
ToUnicode map saying so, one width for every glyph, and text render mode 3 (neither filled nor
stroked: invisible). Right-to-left lines are written in visual order, as PDFs hold them. Each
line's text is stretched (Tz) to its box's width and sized to its height (see _line_ops), so
selecting a word selects it where it stands on the page.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import pikepdf
from pikepdf import Array, Dictionary, Name
from PIL import Image

GLYPH_WIDTH = 500  # every glyph's advance, in thousandths of the font size
FONT_KEY = "OcrText"  # the font's name in each page's resources


@dataclass
class TextBox:
    text: str  # one or more lines (\n): the box is shared among them, top to bottom
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the page image's pixels


@dataclass
class PageText:
    image_size: tuple[int, int]  # (width, height) of the page image the boxes are in
    boxes: list[TextBox] = field(default_factory=list)


def searchable_from_pdf(
    source: BinaryIO, pages: Iterable[PageText | None], out: BinaryIO, only: int | None = None
) -> None:
    """The PDF read from `source` (a file, read as needed) with each page's text laid on it; `pages`
    in page order, None for a page without text. `only`: keep that page (1-based) alone, and `pages`
    holds its text only. Written to `out`."""
    with pikepdf.open(source) as document:
        font = _font(document)
        targets = list(document.pages) if only is None else [document.pages[only - 1]]
        for page, text in zip(targets, pages, strict=False):
            if text is None or not text.boxes:
                continue
            to_page = _pdf_page_transform(page, text.image_size)
            _add_text(document, page, text, to_page, font)
        if only is not None:
            for index in reversed(range(len(document.pages))):
                if index != only - 1:
                    del document.pages[index]
        document.save(out, linearize=False, object_stream_mode=pikepdf.ObjectStreamMode.generate)


def searchable_from_images(pages: Iterator[tuple[Image.Image, int | None, PageText | None]], out: BinaryIO) -> None:
    """A PDF of the images, one page each, with their text laid on; `pages` yields (image, dpi or
    None, text) one at a time, so only the compressed pages are held until written."""
    document = pikepdf.new()
    font = _font(document)
    for image, dpi, text in pages:
        scale = 72 / (dpi or _image_dpi(image))
        width_pt, height_pt = image.width * scale, image.height * scale
        xobject = _image_xobject(document, image)
        content = f"q {width_pt:.4f} 0 0 {height_pt:.4f} 0 0 cm /Im0 Do Q\n".encode()
        page = pikepdf.Page(
            Dictionary(
                Type=Name.Page,
                MediaBox=Array([0, 0, width_pt, height_pt]),
                Resources=Dictionary(XObject=Dictionary(Im0=xobject)),
                Contents=pikepdf.Stream(document, content),
            )
        )
        document.pages.append(page)
        page = document.pages[-1]
        if text is not None and text.boxes:

            def to_page(x: float, y: float, h=height_pt, s=scale) -> tuple[float, float]:
                return x * s, h - y * s

            _add_text(document, page, text, to_page, font)
    document.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)


# -- the text layer --------------------------------------------------------------------------


def _add_text(document: pikepdf.Pdf, page: pikepdf.Page, text: PageText, to_page, font) -> None:
    ops = ["q", "BT", "3 Tr"]
    for item in text.boxes:
        lines = [line for line in (part.strip() for part in item.text.splitlines()) if line]
        if not lines:
            continue
        x1, y1, x2, y2 = item.box
        if x2 <= x1 or y2 <= y1:
            continue
        step = (y2 - y1) / len(lines)
        for row, line in enumerate(lines):
            top, bottom = y1 + row * step, y1 + (row + 1) * step
            ops.append(_line_ops(line, (x1, top, x2, bottom), to_page))
    ops += ["ET", "Q"]
    resources = page.obj.get(Name.Resources)
    if resources is None:
        page.obj.Resources = resources = Dictionary()
    fonts = resources.get(Name.Font)
    if fonts is None:
        resources.Font = fonts = Dictionary()
    fonts[Name("/" + FONT_KEY)] = font
    # The page's own content may leave its graphics state changed: wrap it first (q … Q).
    page.contents_coalesce()
    page.contents_add(pikepdf.Stream(document, b"q\n"), prepend=True)
    page.contents_add(pikepdf.Stream(document, b"\nQ\n" + "\n".join(ops).encode() + b"\n"), prepend=False)


def _line_ops(line: str, box: tuple[float, float, float, float], to_page) -> str:
    """One line of invisible text over `box` (pixels). The font is not embedded, so readers measure
    glyphs with a stand-in font whose descenders reach ~0.25 em below the baseline and whose glyphs
    overhang their advance a little: the text is sized to 0.8 of the box's height with its baseline
    a fifth of the height up, and stretched to a little less than its width, so that every glyph
    stays inside the box."""
    x1, y1, x2, y2 = box
    glyphs = [ch for ch in _visual(line) if ord(ch) <= 0xFFFF]
    if not glyphs:
        return ""
    origin = to_page(x1, y2)
    right = to_page(x2, y2)
    top = to_page(x1, y1)
    width = _distance(origin, right)
    height = _distance(origin, top)
    if width <= 0 or height <= 0:
        return ""
    ux, uy = (right[0] - origin[0]) / width, (right[1] - origin[1]) / width
    vx, vy = (top[0] - origin[0]) / height, (top[1] - origin[1]) / height
    size = 0.8 * height
    lift = 0.2 * height
    base_x, base_y = origin[0] + vx * lift, origin[1] + vy * lift
    used = width * len(glyphs) / (len(glyphs) + 0.3)  # room for the last glyph's overhang
    stretch = 100 * used / (len(glyphs) * GLYPH_WIDTH / 1000 * size)
    codes = "".join(f"{ord(ch):04X}" for ch in glyphs)
    return (
        f"{ux:.5f} {uy:.5f} {vx:.5f} {vy:.5f} {base_x:.3f} {base_y:.3f} Tm "
        f"/{FONT_KEY} {size:.3f} Tf {stretch:.3f} Tz <{codes}> Tj"
    )


def _visual(line: str) -> str:
    """Right-to-left text in visual order, as PDFs hold it (glyphs left to right as they stand);
    readers (PDFium too) put it back in reading order."""
    if not any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in line):
        return line
    from bidi import get_display

    return get_display(line)


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return ((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2) ** 0.5


def _pdf_page_transform(page: pikepdf.Page, image_size: tuple[int, int]):
    """Pixels of the page as rendered (crop box, /Rotate applied, top-left origin) to PDF user space."""
    x0, y0, x1, y1 = (float(v) for v in page.cropbox)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    rotate = int(page.obj.get(Name.Rotate, 0)) % 360
    shown_width = (x1 - x0) if rotate in (0, 180) else (y1 - y0)
    scale = shown_width / max(image_size[0], 1)

    def convert(px: float, py: float) -> tuple[float, float]:
        dx, dy = px * scale, py * scale
        if rotate == 90:
            return x0 + dy, y0 + dx
        if rotate == 180:
            return x1 - dx, y0 + dy
        if rotate == 270:
            return x1 - dy, y1 - dx
        return x0 + dx, y1 - dy

    return convert


def _font(document: pikepdf.Pdf) -> pikepdf.Object:
    descriptor = Dictionary(
        Type=Name.FontDescriptor,
        FontName=Name("/GlyphLessFont"),
        Flags=4,  # symbolic
        FontBBox=Array([0, 0, GLYPH_WIDTH, 1000]),
        ItalicAngle=0,
        Ascent=1000,
        Descent=0,
        CapHeight=1000,
        StemV=80,
    )
    cid_font = Dictionary(
        Type=Name.Font,
        Subtype=Name.CIDFontType2,
        BaseFont=Name("/GlyphLessFont"),
        CIDSystemInfo=Dictionary(Registry=pikepdf.String("Adobe"), Ordering=pikepdf.String("Identity"), Supplement=0),
        FontDescriptor=document.make_indirect(descriptor),
        DW=GLYPH_WIDTH,
        CIDToGIDMap=Name.Identity,
    )
    return document.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type0,
            BaseFont=Name("/GlyphLessFont"),
            Encoding=Name("/Identity-H"),
            DescendantFonts=Array([document.make_indirect(cid_font)]),
            ToUnicode=pikepdf.Stream(document, _identity_cmap()),
        )
    )


def _identity_cmap() -> bytes:
    """Every two-byte code is the Unicode code point of the same number (U+0000 to U+FFFF)."""
    ranges = [f"<{high:02X}00> <{high:02X}FF> <{high:02X}00>" for high in range(256) if not 0xD8 <= high <= 0xDF]
    blocks = []
    for start in range(0, len(ranges), 100):
        chunk = ranges[start : start + 100]
        blocks.append(f"{len(chunk)} beginbfrange\n" + "\n".join(chunk) + "\nendbfrange")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        + "\n".join(blocks)
        + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode()


# -- images ----------------------------------------------------------------------------------


def _image_dpi(image: Image.Image) -> float:
    dpi = image.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        value = 0.0
    return value if 36 <= value <= 2400 else 200.0  # no (or an absurd) resolution: as a PDF page is rendered


def _image_xobject(document: pikepdf.Pdf, image: Image.Image) -> pikepdf.Stream:
    """The image, lossless (Flate), grey or RGB."""
    mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    pixels = image.convert(mode)
    return pikepdf.Stream(
        document,
        zlib.compress(pixels.tobytes(), 6),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=pixels.width,
        Height=pixels.height,
        ColorSpace=Name.DeviceGray if mode == "L" else Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=Name.FlateDecode,
    )
