"""A PDF page's own text (core/textlayer.py): pages classified as text, mixed or image; garbage
text layers not taken for text; lines read with their boxes, right-to-left text in reading order."""

from __future__ import annotations

import pytest

from core import pdf, textlayer
from tests.fixtures.documents import ARABIC, born_digital_pdf, garbage_text_layer_pdf, scanned_pdf


@pytest.fixture(scope="module")
def report() -> bytes:
    return born_digital_pdf([["Invoice 2041 total due", ARABIC]], picture=["Scanned words"])


def test_pages_are_classified_by_their_text_layer_and_images(report):
    assert textlayer.classify_pages(report) == [textlayer.TEXT, textlayer.MIXED]
    assert textlayer.classify_pages(scanned_pdf(["A scan"])) == [textlayer.IMAGE]


def test_a_garbage_text_layer_is_not_taken_for_text():
    assert textlayer.classify_pages(garbage_text_layer_pdf()) == [textlayer.IMAGE]


@pytest.mark.parametrize(
    ("text", "usable"),
    [
        ("Invoice 2041 total due", True),
        (ARABIC, True),
        ("", False),
        ("   \n ", False),
        ("\ue029\ue04e\ue056\ue04f", False),  # private use: unmapped glyphs
        ("\ufffd\ufffd\ufffd ab", False),  # replacement characters
        ("\x01\x02\x03\x04 abc", False),  # control characters
        ("§¶†‡•◊", False),  # symbols, no letters
    ],
)
def test_usable_text_tells_text_from_garbage(text, usable):
    assert textlayer.usable_text(text) is usable


def test_lines_come_in_reading_order_with_boxes_on_the_rendered_page(report):
    image, dpi = pdf.render_page(report, 0)
    lines = textlayer.read_lines(report, 0, image.size)

    assert [line.text for line in lines] == ["Invoice 2041 total due", ARABIC]
    latin, arabic = lines
    scale = dpi / 72
    # fpdf2 put the first baseline 100 pt from the top, the second 40 pt lower, at x = 72 pt.
    assert latin.box[0] == pytest.approx(72 * scale, abs=3)
    assert latin.box[1] < 100 * scale < latin.box[3]  # the baseline, between the ascent and the descent
    assert arabic.box[1] > latin.box[3] - 2
    assert all(0 <= v <= max(image.size) for line in lines for v in line.box)


def test_a_rotated_page_s_boxes_are_those_of_the_page_as_shown():
    from tests.unit.test_pdf import A4, build_pdf

    data = build_pdf([{"size": A4, "lines": ["Turned page"], "rotate": 90, "marker": False}])
    image, _dpi = pdf.render_page(data, 0)
    (line,) = textlayer.read_lines(data, 0, image.size)

    assert line.text == "Turned page"
    x1, y1, x2, y2 = line.box
    assert image.width > image.height  # a portrait page turned: landscape
    assert (y2 - y1) > (x2 - x1)  # the line runs down the page as shown
    crop = image.crop((x1, y1, x2, y2)).convert("L")
    assert min(crop.getdata()) < 100  # the glyphs are inside the box


@pytest.mark.parametrize(
    ("choice", "kind", "text_task", "reads"),
    [
        (textlayer.AUTO, textlayer.TEXT, True, True),
        (textlayer.AUTO, textlayer.TEXT, False, False),  # layouts: boxes and categories only the model gives
        (textlayer.AUTO, textlayer.MIXED, True, False),  # its images' text only OCR reads
        (textlayer.AUTO, textlayer.IMAGE, True, False),
        (textlayer.OCR, textlayer.TEXT, True, False),
        (textlayer.TEXT_LAYER, textlayer.TEXT, False, True),
        (textlayer.TEXT_LAYER, textlayer.MIXED, False, True),
        (textlayer.TEXT_LAYER, textlayer.IMAGE, True, False),
        (textlayer.AUTO, "", True, False),  # an image, or a page classified before the option existed
    ],
)
def test_which_pages_are_read_from_the_text_layer(choice, kind, text_task, reads):
    assert textlayer.reads_text_layer(choice, kind, text_task) is reads
