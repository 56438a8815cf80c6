"""dots.mocr's SVG answers: rebuilt with drawing only (every hostile sample loses what could run or
reach out, and keeps its drawing), cut-off answers closed and marked, loops cut, answers that are
not SVG kept as text; any answer is read without error."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dots import svg
from tests.security.hostile import HOSTILE_SVG

CHART = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" width="400" height="300">'
    '<rect x="40" y="120" width="60" height="150" fill="#4e79a7"/>'
    '<rect x="140" y="60" width="60" height="210" fill="url(#grad)"/>'
    '<defs><linearGradient id="grad"><stop offset="0" stop-color="#f28e2b"/></linearGradient></defs>'
    '<text x="40" y="290" font-size="14">Q1 &amp; Q2</text><path d="M40 270 L360 270" stroke="#333"/>'
    "</svg>"
)


def wrap(fragment: str) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10"/>{fragment}</svg>'


def entity_bomb() -> str:
    return (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        '<svg xmlns="http://www.w3.org/2000/svg"><text>&lol2;</text><rect width="1" height="1"/></svg>'
    )


@pytest.mark.parametrize("name, fragment, banned", HOSTILE_SVG, ids=[h[0] for h in HOSTILE_SVG])
def test_a_hostile_svg_keeps_its_drawing_and_loses_what_could_run_or_reach_out(name, fragment, banned):
    raw = entity_bomb() if fragment is None else wrap(fragment)
    page = svg.parse_svg(raw, (10, 10))

    assert page.svg is not None and "<rect" in page.svg
    assert banned.lower() not in page.svg.lower() and "<!" not in page.svg.replace("<!-- ", "")
    assert "<script" not in page.svg and "foreignObject" not in page.svg
    assert not any(attr.lower().startswith("on") for el in ET.fromstring(page.svg).iter() for attr in el.attrib)
    ET.fromstring(page.svg)  # well-formed


def test_a_clean_chart_keeps_its_shapes_text_gradient_and_internal_references():
    page = svg.parse_svg("svg: " + CHART, (400, 300))
    root = ET.fromstring(page.svg)
    tags = [el.tag.split("}")[1] for el in root.iter()]
    assert tags.count("rect") == 2 and "linearGradient" in tags and "path" in tags
    assert 'fill="url(#grad)"' in page.svg and "Q1 &amp; Q2" in page.svg
    assert page.text == "Q1 & Q2" and not page.truncated and not page.warnings


def test_a_cut_off_answer_is_closed_and_marked_truncated():
    cut = CHART[: CHART.index("<text")] + '<text x="40" y="290">Q1</text><g><path d="M40 270 L3'
    page = svg.parse_svg(cut, (400, 300), hit_token_limit=True)

    root = ET.fromstring(page.svg)
    assert page.truncated and svg.TRUNCATED_NOTE in page.svg
    assert any("cut off" in w for w in page.warnings)
    # The path cut inside its d="…" keeps what was drawn; every open tag was closed.
    assert [el.get("d") for el in root.iter() if el.tag.endswith("path")] == ["M40 270 L3"]


def test_close_tags_drops_a_partial_tag_and_closes_the_open_ones_innermost_first():
    assert svg.close_tags('<svg><g><rect width="1"/><text x="1') == '<svg><g><rect width="1"/></g></svg>'
    assert svg.close_tags("<svg><g></g><text>ab") == "<svg><g></g><text>ab</text></svg>"


def test_a_looping_answer_is_cut_and_still_closed():
    loop = '<svg xmlns="http://www.w3.org/2000/svg">' + '<rect x="1" y="1" width="2" height="2"/>' * 2000
    page = svg.parse_svg(loop, (10, 10), hit_token_limit=True)
    assert page.loops_cut and page.truncated
    assert 0 < page.svg.count("<rect") <= 10


def test_an_answer_without_svg_is_kept_as_text_and_broken_xml_gives_no_picture():
    plain = svg.parse_svg("Sorry, I cannot draw this chart.", (10, 10))
    assert plain.svg is None and plain.plain_text_fallback and plain.text.startswith("Sorry")
    broken = svg.parse_svg('<svg><rect width="1" height=1/></svg>', (10, 10))
    assert broken.svg is None and "could not be read" in broken.warnings[0]


def test_html_entities_the_model_writes_are_read_as_characters():
    page = svg.parse_svg(
        '<svg xmlns="http://www.w3.org/2000/svg"><text>a&nbsp;b &copy; &bogus; &#65;</text></svg>', (10, 10)
    )
    assert page.text == "a b © &bogus; A"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet='<>/="svgrectpathscriptonload &;#:()xyz0123456789\n', max_size=300))
def test_any_answer_is_read_without_error_and_any_svg_made_is_well_formed_and_inert(raw):
    page = svg.parse_svg(raw, (10, 10))
    if page.svg is not None:
        root = ET.fromstring(page.svg)
        names = {el.tag.split("}")[-1] for el in root.iter()}
        assert names <= svg.ELEMENTS
        assert not any(a.lower().startswith("on") for el in root.iter() for a in el.attrib)
