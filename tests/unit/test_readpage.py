"""Any backend's answer as a ParsedPage: rapidocr's lines for each task."""

from __future__ import annotations

from core import readpage
from core.results import OcrResult, TextLine

LINES = [
    TextLine(text="Invoice 4711", box=[[10, 10], [200, 10], [200, 40], [10, 40]], score=0.99),
    TextLine(text="paid in full", box=[[10, 60], [180, 60], [180, 90], [10, 90]], score=0.98),
]


def test_rapidocr_lines_become_text_elements_with_their_boxes_for_the_layout_tasks():
    result = OcrResult(text="Invoice 4711\npaid in full", lines=LINES)

    page = readpage.parsed_page(result, "rapidocr", "layout_all", (300, 100))

    assert [(e.category, e.bbox, e.text) for e in page.elements] == [
        ("Text", (10, 10, 200, 40), "Invoice 4711"),
        ("Text", (10, 60, 180, 90), "paid in full"),
    ]


def test_a_region_read_by_rapidocr_is_one_text_element_with_the_regions_box():
    result = OcrResult(text="paid in full", lines=LINES[1:], details={"bbox_sent": [5, 55, 250, 95]})

    page = readpage.parsed_page(result, "rapidocr", "grounding", (300, 100))

    assert page.mode == "grounding"
    assert [(e.category, e.bbox, e.text) for e in page.elements] == [("Text", (5, 55, 250, 95), "paid in full")]
    assert page.text == "paid in full"


def test_an_empty_region_gives_an_empty_page():
    result = OcrResult(text="", lines=[], details={"bbox_sent": [5, 55, 250, 95]})

    page = readpage.parsed_page(result, "rapidocr", "grounding", (300, 100))

    assert page.elements == [] and page.text == ""


def test_rapidocr_lines_are_scene_outlines_and_web_page_cells():
    read_lines = readpage.from_lines
    line = TextLine("OPEN", [[10, 12], [90, 15], [88, 40], [9, 37]], 0.9)
    scene_page = read_lines([line], "OPEN", "scene_spotting", (100, 50))
    (element,) = scene_page.elements
    assert element.polygon == ((10, 12), (90, 15), (88, 40), (9, 37)) and element.bbox == (9, 12, 90, 40)
    web = read_lines([line], "OPEN", "web_parsing", (100, 50))
    assert web.mode == "web_parsing" and web.elements[0].polygon is None and web.elements[0].text == "OPEN"
