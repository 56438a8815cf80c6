"""Searchable PDFs (core/searchable.py): the text of the produced PDF, as pypdfium2 extracts it, is
the recognized text, and each word stands inside the box it was recognized in."""

from __future__ import annotations

import io
import re

import pypdfium2 as pdfium
import pytest
from PIL import Image

from core import pdf, searchable, textlayer
from tests.fixtures.documents import ARABIC, born_digital_pdf

BOXES = [
    searchable.TextBox("Invoice 2041", (100, 60, 520, 110)),
    searchable.TextBox("Total due: 1,850.00 EUR", (100, 160, 900, 210)),
    searchable.TextBox("First line of a paragraph\nand its second line", (100, 300, 1000, 420)),
    searchable.TextBox(ARABIC, (600, 500, 1000, 550)),
]
SIZE = (1200, 800)


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def words_with_boxes(page: pdfium.PdfPage, to_pixels) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Each extracted word and the box around its characters, in the page image's pixels."""
    textpage = page.get_textpage()
    words, current, boxes = [], [], []
    for i in range(textpage.count_chars() + 1):
        ch = textpage.get_text_range(i, 1) if i < textpage.count_chars() else " "
        if ch.isspace():
            if current:
                xs = [x for b in boxes for x in (b[0], b[2])]
                ys = [y for b in boxes for y in (b[1], b[3])]
                words.append(("".join(current), (min(xs), min(ys), max(xs), max(ys))))
            current, boxes = [], []
            continue
        left, bottom, right, top = textpage.get_charbox(i, loose=True)
        (x1, y1), (x2, y2) = to_pixels(left, top), to_pixels(right, bottom)
        current.append(ch)
        boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return words


def assert_each_word_inside_its_box(words, boxes, tolerance=2.0):
    assert words
    for word, (x1, y1, x2, y2) in words:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        holders = [b for b in boxes if b.box[0] <= cx <= b.box[2] and b.box[1] <= cy <= b.box[3]]
        assert len(holders) == 1, (word, (x1, y1, x2, y2))
        bx1, by1, bx2, by2 = holders[0].box
        assert bx1 - tolerance <= x1 and x2 <= bx2 + tolerance and by1 - tolerance <= y1 and y2 <= by2 + tolerance, word
        assert word in holders[0].text, (word, holders[0].text)


def test_an_image_becomes_a_page_whose_text_is_the_recognized_text_each_word_in_its_box():
    out = io.BytesIO()
    image = Image.new("RGB", SIZE, "white")
    searchable.searchable_from_images(iter([(image, 200, searchable.PageText(SIZE, BOXES))]), out)

    document = pdfium.PdfDocument(out.getvalue())
    page = document[0]
    assert page.get_size() == pytest.approx((SIZE[0] * 72 / 200, SIZE[1] * 72 / 200))
    text = page.get_textpage().get_text_range()
    assert squeezed(text) == squeezed("".join(b.text for b in BOXES))
    assert ARABIC in text  # in reading order
    scale = 200 / 72
    height = page.get_size()[1]
    words = words_with_boxes(page, lambda x, y: (x * scale, (height - y) * scale))
    assert_each_word_inside_its_box(words, BOXES)
    rendered = page.render(scale=1).to_pil().convert("L")
    assert min(rendered.getdata()) == 255  # the text is invisible: the page is as white as the image


def test_a_pdf_keeps_its_pages_and_gets_the_text_layer_over_them():
    original = born_digital_pdf([["Cover page"], ["Second page"]])
    image, _dpi = pdf.render_page(original, 0)
    boxes = [searchable.TextBox("Stamped 2026", (200, 1500, 900, 1600))]
    out = io.BytesIO()
    searchable.searchable_from_pdf(io.BytesIO(original), [searchable.PageText(image.size, boxes), None], out)

    document = pdfium.PdfDocument(out.getvalue())
    assert len(document) == 2
    first = document[0].get_textpage().get_text_range()
    assert "Cover page" in first and "Stamped 2026" in first
    assert document[1].get_textpage().get_text_range().strip() == "Second page"
    lines = textlayer.read_lines(out.getvalue(), 0, image.size)
    (stamp,) = [line for line in lines if line.text == "Stamped 2026"]
    inside = searchable.TextBox("", (200 - 2, 1500 - 2, 900 + 2, 1600 + 2)).box
    assert inside[0] <= stamp.box[0] and stamp.box[2] <= inside[2]
    assert inside[1] <= stamp.box[1] and stamp.box[3] <= inside[3]


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_on_a_rotated_page_the_text_lands_in_its_box_as_the_page_is_shown(rotate):
    from tests.unit.test_pdf import A4, build_pdf

    original = build_pdf([{"size": A4, "lines": [], "rotate": rotate, "marker": False}])
    image, _dpi = pdf.render_page(original, 0)
    box = (300, 200, 1100, 300)
    out = io.BytesIO()
    text = searchable.PageText(image.size, [searchable.TextBox("Turned words here", box)])
    searchable.searchable_from_pdf(io.BytesIO(original), [text], out)

    (line,) = textlayer.read_lines(out.getvalue(), 0, image.size)
    assert line.text == "Turned words here"
    assert box[0] - 2 <= line.box[0] and line.box[2] <= box[2] + 2
    assert box[1] - 2 <= line.box[1] and line.box[3] <= box[3] + 2


def test_one_page_of_a_pdf_alone():
    original = born_digital_pdf([["Cover page"], ["Second page"], ["Third page"]])
    image, _dpi = pdf.render_page(original, 1)
    out = io.BytesIO()
    text = searchable.PageText(image.size, [searchable.TextBox("Overlay", (100, 100, 400, 160))])
    searchable.searchable_from_pdf(io.BytesIO(original), [text], out, only=2)

    document = pdfium.PdfDocument(out.getvalue())
    assert len(document) == 1
    assert squeezed(document[0].get_textpage().get_text_range()) == "SecondpageOverlay"
