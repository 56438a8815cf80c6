"""Markdown, HTML, plain text and layout JSON from parsed pages; Picture crops. The expected
Markdown and HTML under tests/data/dots_outputs/expected/ were written by hand."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.dots.parse import Element, ParsedPage, parse_output
from core.dots.prompts import LAYOUT_ALL, LAYOUT_CATEGORIES, TEXT_ONLY
from core.dots.render import (
    crop_pictures,
    formula_tex,
    layout_dict,
    picture_filename,
    to_html,
    to_html_fragment,
    to_layout_json,
    to_markdown,
    to_text,
)
from core.dots.tables import ALLOWED_TAGS, sanitize_table_html, table_to_text

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dots_outputs"
EXPECTED = CORPUS / "expected"
A4, A4_SENT = (1654, 2339), (1652, 2352)
SENT, ORIGINAL = (1000, 1400), (2000, 2800)


def page_of(name, mode=LAYOUT_ALL, sent=SENT, original=ORIGINAL):
    return parse_output((CORPUS / name).read_text(encoding="utf-8"), mode, sent, original)


def expected(name):
    return (EXPECTED / name).read_text(encoding="utf-8")


@pytest.fixture
def clean():
    return page_of("clean_page.json", sent=A4_SENT, original=A4)


def name_crops(page_number, element):
    return picture_filename(page_number, element)


# -- golden pages -----------------------------------------------------------------------------


def test_markdown_of_a_clean_page(clean):
    assert to_markdown(clean, pictures=name_crops) == expected("clean_page.md")


def test_markdown_without_page_headers_and_footers(clean):
    # Without crop names a Picture is left out of the Markdown.
    assert to_markdown(clean, include_headers_footers=False) == expected("clean_page_nohf.md")


def test_markdown_of_formulas():
    assert to_markdown(page_of("math.json")) == expected("math.md")


def test_html_of_a_clean_page(clean):
    assert to_html_fragment(clean, pictures={8: "page-001-picture-008.png"}) + "\n" == expected("clean_page.html")


def test_html_of_right_to_left_text():
    assert to_html_fragment(page_of("unicode_rtl.json")) + "\n" == expected("unicode_rtl.html")


def test_html_of_a_markdown_answer():
    assert to_html_fragment(page_of("text_mode.md", TEXT_ONLY)) + "\n" == expected("text_mode.html")


def test_markdown_of_a_text_answer_is_the_answer():
    page = page_of("text_mode.md", TEXT_ONLY)
    assert to_markdown(page) == (CORPUS / "text_mode.md").read_text(encoding="utf-8")


# -- HTML safety ------------------------------------------------------------------------------


class TagsSeen(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = set()
        self.attributes = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def tags_in(markup):
    seen = TagsSeen()
    seen.feed(markup)
    seen.close()
    return seen


OWN_TAGS = {"section", "div", "p", "br", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "li", "span", "figure", "img",
            "pre", "strong"}
OWN_ATTRIBUTES = {"class", "id", "data-page", "data-index", "data-category", "dir", "title", "src", "alt",
                  "colspan", "rowspan", "span"}


def hostile_page():
    raw = json.dumps([
        {"bbox": [1, 1, 9, 9], "category": "Title", "text": "<script>alert('title')</script>"},
        {"bbox": [1, 11, 9, 19], "category": "Text",
         "text": "a <img src=x onerror=alert(1)> & \"b\"\n<script>x()</script>"},
        {"bbox": [1, 21, 9, 29], "category": "Table", "text": (
            '<table onclick="steal()" style="x"><tr><td colspan="2" rowspan="1; x" width="9">A<script>bad()</script>'
            '</td><td><a href="javascript:alert(1)">link</a><iframe src="https://evil"></iframe></td></tr>'
            '<tr><td><svg><script>1</script><text>svg</text></svg>B &lt;script&gt;</td><td><b>bold</b>'
            "<!-- comment --></td></tr></table>"
        )},
        {"bbox": [1, 31, 9, 39], "category": "Formula", "text": "</span><script>alert(2)</script> x < y"},
        {"bbox": [1, 41, 9, 49], "category": "List-item", "text": "- <b onmouseover=x>item</b>"},
        {"bbox": [1, 51, 9, 59], "category": "Picture"},
    ])
    return parse_output(raw, LAYOUT_ALL, (100, 100), (100, 100))


def test_html_escapes_script_in_text():
    out = to_html(hostile_page(), pictures={5: "javascript:alert(3)"})
    assert "<script" not in out.lower()
    # Written by the last pass (nh3): quotes in text need no escaping there.
    assert "&lt;script&gt;alert('title')&lt;/script&gt;" in out
    assert 'a &lt;img src=x onerror=alert(1)&gt; &amp; "b"' in out
    assert "onerror" not in tags_in(out).attributes
    assert "javascript:" not in out  # the picture source was refused, the table link dropped
    assert '<span class="math">\\[&lt;/span&gt;&lt;script&gt;alert(2)&lt;/script&gt; x &lt; y\\]</span>' in out


def test_html_tables_keep_only_allowed_tags_and_attributes():
    out = to_html_fragment(hostile_page())
    table = re.search(r"<table>.*</table>", out, re.S).group()
    assert table == (
        '<table><tbody><tr><td colspan="2">A</td><td>link</td></tr>'
        "<tr><td>B &lt;script&gt;</td><td><b>bold</b></td></tr></tbody></table>"
    )
    seen = tags_in(out)
    assert seen.tags <= OWN_TAGS | ALLOWED_TAGS
    assert seen.attributes <= OWN_ATTRIBUTES


def test_the_last_html_pass_drops_whatever_the_builders_above_let_through():
    from core.dots.render import final_html

    leaked = (
        '<div class="el" onclick="alert(1)"><a href="javascript:alert(2)">x</a><img src="javascript:alert(3)">'
        '<img src="data:image/svg+xml;base64,PHN2Zz4="><img src="page-001-picture-001.png" alt="Picture">'
        "<script>alert(4)</script><style>*{}</style><iframe src=//evil.example></iframe></div>"
    )
    out = final_html(leaked)
    assert out == '<div class="el">x<img><img><img src="page-001-picture-001.png" alt="Picture"></div>'


def test_the_html_document_stands_alone():
    out = to_html([hostile_page()], title="<b>Report</b>")
    assert out.startswith("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">")
    assert "<title>&lt;b&gt;Report&lt;/b&gt;</title>" in out
    assert "http" not in out.split("<body>")[0]  # nothing loaded from elsewhere


def test_sanitizer_mends_broken_table_html():
    assert sanitize_table_html("<tr><td>a<td>b") == "<table><tr><td>a</td><td>b</td></tr></table>"
    assert sanitize_table_html("<table><tr><td>x</table></td>") == "<table><tr><td>x</td></tr></table>"
    assert sanitize_table_html('<td rowspan="99999" colspan=" 3 ">x</td>') == '<table><td colspan="3">x</td></table>'
    assert sanitize_table_html("<style>td{}</style><td>x<br/>y</td>") == "<table><td>x<br>y</td></table>"
    assert sanitize_table_html("no tags & no table") == "no tags &amp; no table"
    assert sanitize_table_html("") == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    "<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<th colspan='2'>", "<script>", "</script>", "<img src=x>",
    "<a href='javascript:x'>", "</a>", "<style>", "</style>", "<!--", "-->", "<svg>", "</svg>", '" onload="x"', "<",
    ">", "&", "&lt;", "x", "文", "<td style=x onclick=y>", "<b>", "</b>", "<br>", "<iframe>", "<td rowspan=3>",
    "<![CDATA[", "]]>", "<scr", "ipt>", "\n",
]), max_size=30).map("".join))
def test_sanitized_tables_only_ever_hold_allowed_tags(markup):
    out = sanitize_table_html(markup)
    seen = tags_in(out)
    assert seen.tags <= ALLOWED_TAGS
    assert seen.attributes <= {"colspan", "rowspan", "span"}
    assert "<script" not in out.lower() and "<img" not in out.lower() and "<iframe" not in out.lower()


element_strategy = st.builds(
    Element,
    category=st.sampled_from(LAYOUT_CATEGORIES),
    bbox=st.none() | st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(51, 100), st.integers(51, 100)),
    text=st.text(max_size=80) | st.sampled_from(["<script>x</script>", "<table><tr><td>a</td></tr></table>",
                                                  "$$</span><script>$$", "**b** <b>"]),
    index=st.just(0),
    complete=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(element_strategy, max_size=8), st.text(max_size=20))
def test_html_of_any_page_is_safe(elements, picture):
    for i, e in enumerate(elements):
        e.index = i
    page = ParsedPage(elements=elements, original_size=(100, 100))
    out = to_html(page, pictures=lambda n, e: picture)
    assert "<script" not in out.lower()
    seen = tags_in(out)
    assert seen.tags <= OWN_TAGS | ALLOWED_TAGS | {"html", "head", "meta", "title", "style", "body"}
    assert seen.attributes <= OWN_ATTRIBUTES | {"charset", "name", "content"}


# -- Markdown details -------------------------------------------------------------------------


def test_formula_delimiters_are_taken_off():
    assert formula_tex("$$ x^2 $$") == "x^2"
    assert formula_tex("\\[a\\]") == "a"
    assert formula_tex("\\(a\\)") == "a"
    assert formula_tex("$a$") == "a"
    assert formula_tex("$a$ and $b$") == "$a$ and $b$"
    assert formula_tex("```latex\nx\n```") == "x"
    assert formula_tex("a\n\nb") == "a\nb"  # a blank line would end display math


def test_headings_take_their_own_marks():
    page = ParsedPage(elements=[
        Element("Title", None, "# Big\ntitle", 0), Element("Section-header", None, "### 2. Part", 1),
    ])
    assert to_markdown(page) == "# Big title\n\n## 2. Part\n"


def test_a_document_marks_its_pages():
    first, second = page_of("unicode_rtl.json"), page_of("grounding.txt", "grounding")
    second.page_number = 5
    md = to_markdown([first, second])
    assert md.startswith("<!-- page 1 -->\n\n# تحليل تخطيط المستندات\n\n")
    assert md.endswith("<!-- page 5 -->\n\nTotal due: 1,250.00 EUR\n")
    assert 'id="page-5"' in to_html_fragment([first, second])


def test_pictures_can_be_named_by_page_and_index(clean):
    assert "![Picture](a.png)" in to_markdown([clean], pictures={(1, 8): "a.png"})
    assert "![Picture]" not in to_markdown([clean], pictures={(2, 8): "a.png"})
    assert '<img src="data:image/png;base64,AAAA"' in to_html(clean, pictures={8: "data:image/png;base64,AAAA"})


@pytest.mark.parametrize(
    ("src", "shown"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("data:image/jpeg;base64,/9j/4AAQ", True),
        ("data:image/svg+xml;base64,PHN2Zz4=", False),
        ("data:image/png,<svg onload=x>", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
    ],
)
def test_only_base64_png_and_jpeg_are_embedded_as_data_uris(clean, src, shown):
    assert ('<img src="data:' in to_html(clean, pictures={8: src})) is shown


# -- text, layout JSON, crops -----------------------------------------------------------------


def test_plain_text(clean):
    text = to_text(clean)
    assert text.startswith("Journal of Document Analysis, Vol. 12\n\nReading Order in Scanned Reports\n\n")
    assert "Category\tCount\nText\t12\nTotal: 12" in text and text.endswith("\n\n7\n")
    no_hf = to_text(clean, include_headers_footers=False)
    assert not no_hf.startswith("Journal") and not no_hf.endswith("7\n")
    assert to_text([clean, clean]).count("\n\f\n") == 1
    assert to_text(ParsedPage()) == ""


def test_table_text():
    assert table_to_text("<table><tr><th>a</th><th>b &amp; c</th></tr><tr><td>1<br>2</td><td></td></tr></table>") == (
        "a\tb & c\n1 2\t"
    )
    assert table_to_text("| a | b |") == "| a | b |"


def test_layout_json(clean):
    data = json.loads(to_layout_json([clean, page_of("layout_only.json", "layout_only")]))
    assert [p["page"] for p in data["pages"]] == [1, 2]
    first = data["pages"][0]
    assert (first["width"], first["height"], first["mode"]) == (1654, 2339, "layout_all")
    assert first["elements"][3] == {
        "index": 3, "category": "Text", "bbox": [142, 390, 1512, 557], "complete": True,
        "text": "Layout analysis splits a page into **blocks** and orders them.\nEach block has a category & a box.",
    }
    assert data["pages"][1]["elements"][2]["bbox"] == [200, 840, 1800, 1400]
    assert layout_dict(page_of("truncated.json"))["pages"][0]["truncated"] is True
    assert "文档布局分析" in to_layout_json(page_of("unicode_cjk.json"))  # written as UTF-8, not \u escapes


def test_pictures_are_cropped_from_the_page_image(clean):
    image = Image.new("RGB", A4, "white")
    x1, y1, x2, y2 = clean.elements[8].bbox
    image.paste((200, 0, 0), (x1, y1, x2, y2))
    crops = crop_pictures(image, clean.elements)
    assert list(crops) == [8]
    assert crops[8].size == (x2 - x1, y2 - y1)
    assert crops[8].getcolors() == [((x2 - x1) * (y2 - y1), (200, 0, 0))]
    off_page = [Element("Picture", (3000, 3000, 3100, 3100), "", 0), Element("Picture", None, "", 1)]
    assert crop_pictures(image, off_page) == {}
