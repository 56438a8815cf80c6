"""A page written back in the format its prompt asks for (what the OpenAI-compatible endpoint answers):
layout cells in the pixels the model sees, which upstream's post-processing
(tests/integration/upstream_client.py) scales back onto the image that was sent; scene lines that
upstream's scene parser reads back; layout only without text; SVG and text as they are."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.dots import answer, scene
from core.dots.parse import Element, ParsedPage
from core.readpage import from_lines
from core.results import TextLine
from tests.integration.upstream_client import post_process_output


def rapidocr_page(size, mode="layout_all") -> ParsedPage:
    lines = [
        TextLine("Invoice 2026", [[30, 30], [300, 30], [300, 70], [30, 70]], 0.99),
        TextLine("Total 42 EUR", [[30, 100], [320, 102], [320, 140], [30, 138]], 0.98),
    ]
    return from_lines(lines, "Invoice 2026\nTotal 42 EUR", mode, size)


def test_rapidocr_lines_answer_the_layout_prompt_as_text_cells_upstream_reads_back_onto_the_image():
    size = (701, 263)  # not a multiple of 28: the model sees 700×252
    cells = json.loads(answer.model_answer(rapidocr_page(size), "layout_all"))
    assert [c["category"] for c in cells] == ["Text", "Text"]
    assert [c["text"] for c in cells] == ["Invoice 2026", "Total 42 EUR"]

    image = Image.new("RGB", size)
    back, filtered = post_process_output(json.dumps(cells), image, image)
    assert not filtered
    for cell, line_box in zip(back, [(30, 30, 300, 70), (30, 100, 320, 140)], strict=True):
        assert all(abs(a - b) <= 2 for a, b in zip(cell["bbox"], line_box, strict=True))


def test_layout_only_has_no_text_and_a_picture_no_text_field():
    cells = json.loads(answer.model_answer(rapidocr_page((700, 280), "layout_only"), "layout_only"))
    assert cells and all(set(c) == {"bbox", "category"} for c in cells)
    page = ParsedPage(elements=[Element("Picture", (0, 0, 28, 28), "", 0)], original_size=(56, 56))
    assert json.loads(answer.model_answer(page, "layout_all")) == [{"bbox": [0, 0, 28, 28], "category": "Picture"}]


def test_scene_text_answers_in_the_models_line_format_and_reads_back_the_same_outlines():
    page = rapidocr_page((701, 263), "scene_spotting")
    lines = answer.model_answer(page, "scene_spotting")
    assert lines.splitlines()[0].startswith("(30, 29), (300, 29), (300, 67), (30, 67) Invoice 2026")
    seen = answer.model_size((701, 263))
    again = scene.parse_scene(lines, sent_size=seen, original_size=(701, 263))
    for before, after in zip(page.elements, again.elements, strict=True):
        assert after.text == before.text
        corners = zip(before.polygon, after.polygon, strict=True)
        assert all(abs(a - b) <= 2 for p, q in corners for a, b in zip(p, q, strict=True))


def test_text_svg_and_questions_answer_as_they_are():
    page = ParsedPage(text="The total is 42.", svg="<svg></svg>", original_size=(10, 10))
    assert answer.model_answer(page, "question") == "The total is 42."
    assert answer.model_answer(page, "text") == "The total is 42."
    assert answer.model_answer(page, "image_to_svg") == "<svg></svg>"


@settings(max_examples=100, deadline=None)
@given(size=st.tuples(st.integers(60, 3000), st.integers(60, 3000)), data=st.data())
def test_any_box_goes_to_the_models_pixels_and_back_within_a_model_pixel(size, data):
    w, h = size
    x1 = data.draw(st.integers(0, w - 2))
    y1 = data.draw(st.integers(0, h - 2))
    box = (x1, y1, data.draw(st.integers(x1 + 1, w)), data.draw(st.integers(y1 + 1, h)))
    page = ParsedPage(elements=[Element("Text", box, "x", 0)], original_size=size)
    image = Image.new("RGB", size)
    (cell,), filtered = post_process_output(answer.model_answer(page, "layout_all"), image, image)
    seen = answer.model_size(size)
    slack = max(w / seen[0], h / seen[1]) + 1
    assert not filtered and all(abs(a - b) <= slack for a, b in zip(cell["bbox"], box, strict=True))
