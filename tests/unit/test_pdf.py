"""PDF checks and page rendering, on PDFs built by the tests themselves."""

from __future__ import annotations

import ctypes
import hashlib
import io
import re
import threading
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image, ImageDraw, ImageFont

from core import pdf as pdfmod
from core.pdf import PdfRefused, fit_dpi, inspect_pdf, iter_pages, page_count, render_page
from tests.fixtures.pdfs import handmade_pdf

FONT_PATH = Path(__file__).resolve().parents[1] / "data" / "DejaVuSans.ttf"
SAMPLE = Path("/work/shared/samples/dots-demo.pdf")

A4 = (595.276, 841.89)
A4_LANDSCAPE = (841.89, 595.276)
LETTER = (612.0, 792.0)
A0 = (2383.94, 3370.39)
MARKER = 60  # side of the black square drawn in each page's top-left corner, in points

LIMITS = {"max_pages": 50, "max_bytes": 20_000_000}


# -- building PDFs ---------------------------------------------------------------------------


def build_pdf(pages: list[dict]) -> bytes:
    """Pages with vector text (Helvetica) and a black square in the top-left corner.

    Each page: {"size": (w, h), "lines": [...], "rotate": 0|90|180|270, "marker": True}.
    """
    doc = pdfium.PdfDocument.new()
    for spec in pages:
        width, height = spec["size"]
        page = doc.new_page(width, height)
        if spec.get("marker", True):
            square = pdfium_c.FPDFPageObj_CreateNewRect(0, height - MARKER, MARKER, MARKER)
            pdfium_c.FPDFPageObj_SetFillColor(square, 0, 0, 0, 255)
            pdfium_c.FPDFPath_SetDrawMode(square, pdfium_c.FPDF_FILLMODE_ALTERNATE, False)
            pdfium_c.FPDFPage_InsertObject(page, square)
        for row, line in enumerate(spec.get("lines", [])):
            text = pdfium_c.FPDFPageObj_NewTextObj(doc, b"Helvetica", 36)
            encoded = (line + "\x00").encode("utf-16-le")
            buffer = ctypes.create_string_buffer(encoded, len(encoded))
            assert pdfium_c.FPDFText_SetText(text, ctypes.cast(buffer, pdfium_c.FPDF_WIDESTRING))
            pdfium_c.FPDFPageObj_Transform(text, 1, 0, 0, 1, 72, height - 150 - 60 * row)
            pdfium_c.FPDFPage_InsertObject(page, text)
        page.gen_content()
        if spec.get("rotate"):
            page.set_rotation(spec["rotate"])
        page.close()
    out = io.BytesIO()
    doc.save(out)
    doc.close()
    return out.getvalue()


def encrypt(data: bytes, user_password: str, owner_password: str, algorithm: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
SMALL_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"


@pytest.fixture(scope="module")
def three_sizes() -> bytes:
    return build_pdf(
        [
            {"size": A4, "lines": ["Portrait page"]},
            {"size": A4_LANDSCAPE, "lines": ["Landscape page"]},
            {"size": LETTER, "lines": ["Letter page"]},
        ]
    )


def near(actual: tuple[int, int], expected: tuple[int, int], tolerance: int = 1) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def refusal(call, *args, **kwargs) -> PdfRefused:
    with pytest.raises(PdfRefused) as caught:
        call(*args, **kwargs)
    return caught.value


# -- inspecting ------------------------------------------------------------------------------


def test_inspect_describes_every_page_and_the_file(three_sizes):
    info = inspect_pdf(three_sizes, "mixed.pdf", **LIMITS)
    assert info.page_count == 3
    for (width, height), (want_w, want_h) in zip(info.page_sizes_pt, [A4, A4_LANDSCAPE, LETTER], strict=True):
        assert width == pytest.approx(want_w, abs=0.01)
        assert height == pytest.approx(want_h, abs=0.01)
    assert info.sha256 == hashlib.sha256(three_sizes).hexdigest()
    assert info.size_bytes == len(three_sizes)
    assert info.encrypted is False


def test_page_count_counts_pages(three_sizes):
    assert page_count(three_sizes) == 3


def test_whitespace_before_the_header_is_accepted(three_sizes):
    assert inspect_pdf(b"\r\n  " + three_sizes, "spaced.pdf", **LIMITS).page_count == 3


# -- rendering -------------------------------------------------------------------------------


def test_pages_render_at_200_dpi_by_default(three_sizes):
    expected = [(1654, 2339), (2339, 1654), (1700, 2200)]
    for index, size in enumerate(expected):
        image, dpi = render_page(three_sizes, index)
        assert dpi == 200
        assert image.mode == "RGB"
        assert near(image.size, size), (index, image.size)
        assert image.getpixel((10, 10)) == (0, 0, 0)  # the marker: top-left stays top-left


def test_iter_pages_opens_the_document_once_and_yields_pages_in_order(three_sizes, monkeypatch):
    loads = []
    real_load = pdfium_c.FPDF_LoadMemDocument64

    def counting_load(*args):
        loads.append(1)
        return real_load(*args)

    monkeypatch.setattr(pdfmod.pdfium_c, "FPDF_LoadMemDocument64", counting_load)
    pages = list(iter_pages(three_sizes, dpi=100))
    assert len(loads) == 1
    assert [index for index, _, _ in pages] == [0, 1, 2]
    assert [dpi for _, _, dpi in pages] == [100, 100, 100]
    assert near(pages[1][1].size, (1169, 827))


def test_iter_pages_can_start_later(three_sizes):
    assert [index for index, _, _ in iter_pages(three_sizes, dpi=36, start=2)] == [2]


def test_a_rotated_page_is_measured_and_rendered_as_displayed():
    data = build_pdf([{"size": A4, "rotate": 90}])
    (width, height) = inspect_pdf(data, "rotated.pdf", **LIMITS).page_sizes_pt[0]
    assert (width, height) == (pytest.approx(A4[1], abs=0.01), pytest.approx(A4[0], abs=0.01))
    image, _ = render_page(data, 0)
    assert near(image.size, (2339, 1654))
    # Turned a quarter clockwise, the top-left square ends in the top-right corner.
    assert image.getpixel((image.width - 10, 10)) == (0, 0, 0)
    assert image.getpixel((10, 10)) == (255, 255, 255)


def test_a_transparent_page_renders_on_white_paper():
    image, _ = render_page(build_pdf([{"size": LETTER, "marker": False}]), 0, dpi=50)
    assert image.mode == "RGB"
    assert image.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_a_scanned_page_renders_at_its_scan_size():
    scan = Image.new("L", (1654, 2339), 255)
    ImageDraw.Draw(scan).text((150, 300), "Scanned", font=ImageFont.truetype(str(FONT_PATH), 80), fill=0)
    out = io.BytesIO()
    scan.save(out, "PDF", resolution=200.0)
    image, dpi = render_page(out.getvalue(), 0)
    assert dpi == 200
    assert near(image.size, scan.size)


def test_an_oversized_page_is_rendered_at_a_lower_dpi_within_the_pixel_cap():
    poster = build_pdf([{"size": A0}])
    image, dpi = render_page(poster, 0)
    assert pdfmod.MIN_DPI <= dpi < 200
    assert image.width * image.height <= pdfmod.DEFAULT_MAX_PIXELS
    assert fit_dpi(*A0, dpi=dpi + 1) != dpi + 1  # the highest whole dpi that fits
    assert near(image.size, (round(A0[0] * dpi / 72), round(A0[1] * dpi / 72)))
    assert image.getpixel((5, 5)) == (0, 0, 0)


def test_a_small_pixel_cap_lowers_the_dpi_of_an_ordinary_page(three_sizes):
    image, dpi = render_page(three_sizes, 0, max_pixels=1_000_000)
    assert dpi == 101  # A4 at 101 dpi is 836 × 1181 = 987,316 pixels; at 102 dpi, 844 × 1193 = 1,006,892
    assert image.width * image.height <= 1_000_000


def test_fit_dpi_keeps_lowers_and_stops_at_the_floor():
    assert fit_dpi(*A4) == 200
    assert fit_dpi(*A4, dpi=300, max_pixels=100_000_000) == 300
    assert fit_dpi(*A4, max_pixels=1_000_000) == 101
    assert fit_dpi(*A4, max_pixels=100_000) is None  # below 72 dpi
    assert fit_dpi(*A4, max_pixels=100_000, min_dpi=30) == 32  # 265 × 375 = 99,375; at 33 dpi, 105,378
    assert fit_dpi(*A4, dpi=50, min_dpi=72) == 50  # the floor only limits lowering


def test_a_page_too_large_even_at_the_floor_is_refused_at_inspection_and_never_rendered():
    # 200 × 200 inches, the largest page PDF allows: 207 megapixels at 72 dpi.
    huge = handmade_pdf(
        [
            CATALOG,
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 14400 14400] >>",
        ]
    )
    inspecting = lambda: inspect_pdf(huge, "billboard.pdf", **LIMITS)  # noqa: E731
    rendering = lambda: render_page(huge, 0, name="billboard.pdf")  # noqa: E731
    for check in (inspecting, rendering):
        refused = refusal(check)
        assert refused.reason == pdfmod.PAGE_TOO_LARGE
        assert refused.page_index == 0
        assert "billboard.pdf" in str(refused) and "page 1 of 1 is too large (200 × 200 inches)" in str(refused)


def test_a_page_index_out_of_range_is_an_index_error(three_sizes):
    with pytest.raises(IndexError):
        render_page(three_sizes, 3)


def test_threads_rendering_at_once_get_correct_pages(three_sizes):
    results: dict[int, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(3):
                image, _ = render_page(three_sizes, index % 3, dpi=60)
                results[index] = image.size
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results[0] == results[3] and results[1] == results[4] and results[2] == results[5]
    assert results[0][0] < results[0][1] and results[1][0] > results[1][1]


# -- refusing --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_a_pdf_that_needs_a_password_is_refused_as_password_protected(three_sizes, algorithm):
    if algorithm.startswith("AES"):
        pytest.importorskip("cryptography", reason="pypdf writes AES with the cryptography package")
    locked = encrypt(three_sizes, "secret", "owner-secret", algorithm)
    refused = refusal(inspect_pdf, locked, "locked.pdf", **LIMITS)
    assert refused.reason == pdfmod.ENCRYPTED
    assert "locked.pdf" in str(refused)
    assert "password-protected" in str(refused) and "without a password" in str(refused)
    assert refusal(render_page, locked, 0).reason == pdfmod.ENCRYPTED


def test_a_pdf_with_only_an_owner_password_is_accepted(three_sizes):
    restricted = encrypt(three_sizes, "", "owner-secret", "RC4-128")
    info = inspect_pdf(restricted, "restricted.pdf", **LIMITS)
    assert info.page_count == 3
    assert info.encrypted is True
    image, _ = render_page(restricted, 0)
    assert near(image.size, (1654, 2339))


def test_a_pdf_cut_off_in_the_middle_is_refused_as_broken(three_sizes):
    refused = refusal(inspect_pdf, three_sizes[: len(three_sizes) // 2], "cut.pdf", **LIMITS)
    assert refused.reason == pdfmod.BROKEN
    assert "cut.pdf" in str(refused) and "damaged" in str(refused)


def test_garbage_after_the_header_is_refused_as_broken():
    refused = refusal(inspect_pdf, b"%PDF-1.7\n" + bytes(range(256)) * 40, "garbage.pdf", **LIMITS)
    assert refused.reason == pdfmod.BROKEN


def test_a_page_that_cannot_be_loaded_is_refused_with_its_number():
    missing_page = handmade_pdf([CATALOG, b"<< /Type /Pages /Kids [3 0 R 9 0 R] /Count 2 >>", SMALL_PAGE])
    refused = refusal(inspect_pdf, missing_page, "holes.pdf", **LIMITS)
    assert refused.reason == pdfmod.BROKEN
    assert "page 2 of 2" in str(refused)
    assert render_page(missing_page, 0)[0].size == (556, 556)  # the good page still renders
    assert refusal(render_page, missing_page, 1).page_index == 1


def test_iter_pages_stops_at_a_broken_page_and_can_carry_on_after_it():
    pages = b"<< /Type /Pages /Kids [3 0 R 9 0 R 3 0 R] /Count 3 >>"
    data = handmade_pdf([CATALOG, pages, SMALL_PAGE])
    got = []
    with pytest.raises(PdfRefused) as caught:
        for index, _, _ in iter_pages(data, dpi=36):
            got.append(index)
    assert got == [0] and caught.value.page_index == 1
    assert [index for index, _, _ in iter_pages(data, dpi=36, start=caught.value.page_index + 1)] == [2]


def test_a_text_file_named_pdf_is_refused_as_not_a_pdf():
    refused = refusal(inspect_pdf, b"Dear team,\nplease find the report attached.\n", "report.pdf", **LIMITS)
    assert refused.reason == pdfmod.NOT_PDF
    assert "report.pdf" in str(refused) and "not a PDF" in str(refused)


def test_an_image_named_pdf_is_refused_as_not_a_pdf():
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    assert refusal(inspect_pdf, out.getvalue(), "scan.pdf", **LIMITS).reason == pdfmod.NOT_PDF


def test_an_empty_file_is_refused():
    refused = refusal(inspect_pdf, b"", "nothing.pdf", **LIMITS)
    assert refused.reason == pdfmod.EMPTY and "nothing.pdf" in str(refused)


def test_a_file_over_the_size_limit_is_refused_with_both_sizes(three_sizes):
    refused = refusal(inspect_pdf, three_sizes, "big.pdf", max_pages=50, max_bytes=1000)
    assert refused.reason == pdfmod.TOO_BIG
    assert "big.pdf" in str(refused) and "1 kB limit" in str(refused)


def test_a_pdf_without_pages_is_refused():
    empty = handmade_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"])
    refused = refusal(inspect_pdf, empty, "blank.pdf", **LIMITS)
    assert refused.reason == pdfmod.NO_PAGES and "no pages" in str(refused)


def test_no_pages_is_not_mistaken_for_a_password_after_a_locked_pdf(three_sizes):
    # PDFium's last error is global and stale after a successful load; it must not leak into the verdict.
    refusal(page_count, encrypt(three_sizes, "secret", "o", "RC4-128"))
    empty = handmade_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"])
    assert refusal(page_count, empty).reason == pdfmod.NO_PAGES


def test_too_many_pages_are_refused_with_the_count_and_the_limit():
    data = build_pdf([{"size": (200, 200), "marker": False}] * 7)
    refused = refusal(inspect_pdf, data, "thick.pdf", max_pages=5, max_bytes=10_000_000)
    assert refused.reason == pdfmod.TOO_MANY_PAGES
    assert re.search(r"has 7 pages; the limit is 5 pages", str(refused))


def test_messages_name_the_file_not_the_path_it_came_from():
    refused = refusal(inspect_pdf, b"plain text", "C:\\Users\\ana\\Desktop\\notes.pdf", **LIMITS)
    assert "\u201cnotes.pdf\u201d" in str(refused) and "Users" not in str(refused)


BAD_INPUTS = {
    "text": b"not a pdf at all",
    "header only": b"%PDF-",
    "garbage": b"%PDF-1.4\n" + b"\xff\x00garbage" * 100,
    "missing page": handmade_pdf([CATALOG, b"<< /Type /Pages /Kids [9 0 R] /Count 1 >>"]),
    "no pages": handmade_pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"]),
}


@pytest.mark.parametrize("label", BAD_INPUTS)
def test_no_pdfium_exception_escapes(label):
    data = BAD_INPUTS[label]
    for call in (
        lambda: inspect_pdf(data, "bad.pdf", **LIMITS),
        lambda: render_page(data, 0),
        lambda: list(iter_pages(data)),
    ):
        with pytest.raises(PdfRefused):
            call()
    try:
        page_count(data)  # only counts: a document whose page cannot be loaded still has a count
    except PdfRefused:
        pass


# -- the rendering is fit for OCR; the real sample -------------------------------------------


def test_rapidocr_reads_the_words_back_from_a_rendered_page():
    from workers.backends.rapidocr_backend import RapidOcrBackend

    data = build_pdf([{"size": A4, "lines": ["Quick brown foxes", "jump over lazy dogs"], "marker": False}])
    image, dpi = render_page(data, 0)
    assert dpi == 200
    band = image.crop((0, 300, image.width, 700))  # the two lines, to keep the OCR quick
    backend = RapidOcrBackend()
    backend.load({"language": "multi"})
    try:
        result = backend.ocr(band, "text", lambda: False)
    finally:
        backend.unload()
    words = set(re.findall(r"\w+", result.text.lower()))
    assert {"quick", "brown", "foxes", "jump", "over", "lazy", "dogs"} <= words


@pytest.mark.skipif(not SAMPLE.is_file(), reason=f"{SAMPLE} is not on this machine")
def test_the_dots_demo_pdf_opens_and_renders():
    data = SAMPLE.read_bytes()
    info = inspect_pdf(data, SAMPLE.name, **LIMITS)
    assert info.page_count == 2
    assert info.encrypted is False
    image, dpi = render_page(data, 0)
    assert dpi == 200
    assert near(image.size, (2339, 3308))  # A3 (841.92 × 1190.7 pt) at 200 dpi
