"""Reading dots.ocr's answers: a corpus of answers written for the tests (tests/data/dots_outputs/,
see its README), then properties over generated answers: parsing never raises, never makes up
text, keeps boxes inside the page, and a cut-off answer keeps a prefix of its elements."""

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.dots.boxes import to_original
from core.dots.parse import (
    Element,
    ParsedPage,
    cut_loops,
    normalize_category,
    normalize_text,
    parse_output,
)
from core.dots.prompts import GROUNDING, LAYOUT_ALL, LAYOUT_CATEGORIES, LAYOUT_ONLY, MODES, TEXT_ONLY

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dots_outputs"
SENT, ORIGINAL = (1000, 1400), (2000, 2800)  # the corpus default: every coordinate doubles
A4, A4_SENT = (1654, 2339), (1652, 2352)


def answer(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8")


def parse(name: str, mode: str = LAYOUT_ALL, **kwargs) -> ParsedPage:
    page = parse_output(answer(name), mode, SENT, ORIGINAL, **kwargs)
    assert_sound(answer(name), page, ORIGINAL)
    return page


# -- the "never makes up text" check ----------------------------------------------------------
# An element's text may only hold what the answer holds: its characters, or those of a string
# literal in it with the JSON escapes decoded. The parser also tidies whitespace and removes
# control characters. So: every line of every element's text, with whitespace collapsed, must be
# found in the answer, or in the answer decoded from just after one of its quote marks (where a
# string the parser read may start; quotes inside are taken as written, since the parser keeps a
# quote that is followed by more words).

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "'": "'", "b": "\b", "f": "\f"}


def squeeze(text: str) -> str:
    return " ".join(_CONTROL.sub("", text).split())


def decode_from(raw: str, i: int) -> str:
    out = []
    n = len(raw)
    while i < n:
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = raw[i + 1 : i + 2]
        if e in ("b", "f") and raw[i + 2 : i + 3].isalpha():
            out.append("\\" + e)  # LaTeX with one backslash ("\frac") is kept as written
            i += 2
        elif e and e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2 : i + 6]):
            pair = re.match(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", raw[i : i + 12], re.I)
            if pair:
                out.append(json.loads(f'"{raw[i : i + 12]}"'))
                i += 12
            elif 0xD800 <= int(raw[i + 2 : i + 6], 16) <= 0xDFFF:
                out.append(raw[i : i + 6])
                i += 6
            else:
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
        else:
            out.append(raw[i : i + 2])
            i += 2
    return "".join(out)


def sources(raw: str) -> list[str]:
    starts = sorted({m.start() + 1 for m in re.finditer(r"[\"']", raw)})
    return [squeeze(raw)] + [squeeze(decode_from(raw, i)) for i in starts]


def assert_invents_nothing(raw: str, page: ParsedPage) -> None:
    found_in = sources(raw)
    for e in page.elements:
        for line in e.text.split("\n"):
            piece = squeeze(line)
            if piece:
                assert any(piece in s for s in found_in), f"{piece!r} is not in the answer {raw[:300]!r}"


def assert_sound(raw: str, page: ParsedPage, size) -> None:
    """What holds for every answer whatsoever."""
    assert isinstance(page, ParsedPage)
    assert_invents_nothing(raw, page)
    w, h = size
    for i, e in enumerate(page.elements):
        assert e.index == i
        assert e.category in LAYOUT_CATEGORIES
        assert isinstance(e.text, str)
        if e.bbox is not None:
            x1, y1, x2, y2 = e.bbox
            assert all(isinstance(v, int) for v in e.bbox)
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, e.bbox
    assert all(isinstance(w, str) and w for w in page.warnings)


# -- the corpus -------------------------------------------------------------------------------


def test_it_reads_a_clean_page():
    page = parse_output(answer("clean_page.json"), LAYOUT_ALL, A4_SENT, A4)
    assert_sound(answer("clean_page.json"), page, A4)
    assert [e.category for e in page.elements] == [
        "Page-header", "Title", "Section-header", "Text", "List-item", "List-item", "Formula", "Table",
        "Picture", "Caption", "Footnote", "Page-footer",
    ]
    assert page.warnings == []
    assert not (page.truncated or page.plain_text_fallback or page.repeated_dropped or page.loops_cut)
    text = page.elements[3]
    assert text.text == (
        "Layout analysis splits a page into **blocks** and orders them.\nEach block has a category & a box."
    )
    assert text.bbox == (142, 390, 1512, 557)  # [142, 392, 1510, 560] × (1654/1652, 2339/2352)
    assert page.elements[6].text == "$$\\frac{a+b}{2} \\geq \\sqrt{ab}$$"
    assert page.elements[7].text.startswith('<table><thead><tr><th>Category</th>')
    assert '<td colspan="2">Total: 12</td>' in page.elements[7].text
    assert page.elements[8].text == ""  # a Picture has no text
    assert page.elements[11].bbox == (801, 2257, 853, 2287)  # 2270 × 2339/2352 = 2257.4
    assert "Category\tCount\nText\t12\nTotal: 12" in page.text  # the table, as plain text
    assert page.text.startswith("Journal of Document Analysis, Vol. 12\n\nReading Order in Scanned Reports\n\n")


def test_it_keeps_every_complete_element_of_a_cut_off_answer():
    page = parse("truncated.json")
    assert page.truncated
    assert [e.text for e in page.elements[:3]] == [
        "Annual Report", "The first paragraph is complete.", "The second paragraph is complete too.",
    ]
    assert all(e.complete for e in page.elements[:3])
    cut = page.elements[3]
    assert (cut.category, cut.complete, cut.bbox) == ("Table", False, (200, 1440, 1800, 2600))
    assert cut.text == "<table><tr><td>Q1</td><td>10</td></tr><tr><td>Q2</td><td>1"
    assert any("cut off" in w and "3 complete elements" in w for w in page.warnings)


def test_it_mends_joined_objects_fences_and_newlines():
    page = parse("joined_objects.txt")
    assert [e.text for e in page.elements] == [
        "Minutes of the Meeting", "Present: all members.", 'The budget {was} approved: "yes" by all.', "Page 2",
    ]
    assert page.elements[0].bbox == (100, 80, 1900, 180)
    assert page.warnings == [] and not page.truncated


def test_an_empty_answer_gives_no_elements_and_a_warning():
    for raw in (answer("empty.txt"), "   \n\n", "```json\n```"):
        page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
        assert page.elements == [] and page.text == ""
        assert page.warnings == ["The model's answer was empty: nothing was found on this page."]


def test_an_empty_layout_is_a_blank_page():
    page = parse_output("[]", LAYOUT_ALL, SENT, ORIGINAL)
    assert page.elements == [] and page.warnings == ["The model found nothing on this page."]


def test_it_maps_categories_to_dots_ocr_names():
    page = parse("wrong_categories.json")
    assert [e.category for e in page.elements] == [
        "Title", "Section-header", "Section-header", "Picture", "Text", "Text", "Text", "List-item",
    ]
    warnings = " ".join(page.warnings)
    assert "'Banana'" in warnings and "read as Text" in warnings
    assert "'Figure' → Picture" in warnings
    assert "no category" in warnings
    assert "Spaced" not in warnings  # a spelling variant is not worth a warning


def test_normalize_category():
    assert normalize_category("Section-header") == ("Section-header", "same")
    assert normalize_category("SECTION HEADER")[0] == "Section-header"
    assert normalize_category("page_footer")[0] == "Page-footer"
    assert normalize_category("Equation") == ("Formula", "synonym")
    assert normalize_category("Banana") == ("Text", "unknown")
    assert normalize_category(None) == ("Text", "unknown")


def test_it_mends_boxes_and_keeps_the_text_of_unusable_ones():
    page = parse("boxes_outside.json")
    got = {e.text: e.bbox for e in page.elements}
    assert got == {
        "Starts above the page": (0, 0, 600, 160),
        "Runs past the right edge": (200, 200, 2000, 400),
        "Wholly outside": None,
        "Corners swapped": (200, 600, 1600, 800),
        "Two numbers": None,
        "Five numbers": None,
        "Box as a string": (200, 1600, 800, 1800),
        "No area": (1000, 1900, 1001, 1901),
        "One pixel past the edge": (200, 2000, 2000, 2120),
    }
    assert page.warnings == [
        "2 boxes did not have four numbers and were dropped; their text was kept.",
        "A box lay wholly outside the page and was dropped; its text was kept.",
        "2 boxes reached past the edge of the page and were cut to it.",
        "A box had its corners swapped and was put in order.",
        "A box had no width or height and was widened to one pixel.",
    ]


def test_it_drops_repeats_and_cuts_a_loop():
    page = parse("repetition_loop.json")
    assert [e.text[:20] for e in page.elements] == [
        "Order Form", "Name: ____________", "Signature ..........", "Item", "Terms: the buyer agr",
    ]
    assert page.repeated_dropped == 6  # one exact duplicate, five more "Item"s
    assert page.loops_cut == 1 and page.truncated
    terms = page.elements[-1]
    assert not terms.complete
    assert terms.text == "Terms: " + ", ".join(["the buyer agrees to pay"] * 3) + ","
    assert any("repeated elements were dropped" in w for w in page.warnings)
    assert any("over and over" in w for w in page.warnings)


def test_it_reads_cjk():
    page = parse("unicode_cjk.json")
    assert page.elements[0].text == "文档布局分析"
    assert page.elements[1].text == "本文介绍一种新的方法，适用于中文、日本語の文書、한국어 문서。"
    assert "项目\t数量\n苹果\t３" in page.text


def test_it_reads_right_to_left_scripts():
    page = parse("unicode_rtl.json")
    assert page.elements[1].text == "هذا نص عربي يُقرأ من اليمين إلى اليسار، مع رقم 2024."
    assert page.elements[2].text == "זהו טקסט בעברית עם מילה English באמצע."
    assert page.elements[3].text == "صفحة 3"


def test_it_reads_latex_even_with_single_backslashes():
    page = parse("math.json")
    assert page.elements[0].text == "Let $x \\in \\mathbb{R}$ and $y < x$."
    assert page.elements[1].text == "\\[ \\int_0^1 f(x)\\,dx = \\sum_{n=0}^{\\infty} a_n \\]"
    # "\alpha" is not a JSON escape; "\beta" and "\frac" would be backspace and form feed.
    assert page.elements[2].text == "E = mc^2 \\alpha \\beta \\frac{1}{2}"
    assert page.elements[3].text == "$$\\begin{aligned} a &= b \\\\ c &= d \\end{aligned}$$"


def test_it_reads_emoji():
    page = parse("emoji.json")
    assert page.elements[0].text == "Party Invitation 🎉"
    assert page.elements[1].text == "Bring snacks 🍕 and a smile 😀. Family: 👨‍👩‍👧‍👦. Flags: 🇯🇵"


def test_it_reads_single_quotes_unescaped_quotes_and_trailing_commas():
    page = parse("unescaped_quotes.txt")
    assert [e.text for e in page.elements] == ["Single quotes", 'She said "stop" and left.', "A trailing comma"]


def test_plain_text_instead_of_a_layout_becomes_one_text_element():
    page = parse("plain_text_answer.txt")
    assert page.plain_text_fallback
    assert page.elements == [Element("Text", None, answer("plain_text_answer.txt").strip(), 0)]
    assert page.text == answer("plain_text_answer.txt").strip()
    assert any("plain text instead of a layout" in w for w in page.warnings)


def test_text_with_brackets_is_not_mistaken_for_a_layout():
    for raw in ("[1] A. Smith, Reading. 2020.\n[2] B. Jones, Writing. 2021.", "{\\bf Bold} words", '{"note": 1}'):
        page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
        assert page.plain_text_fallback and [e.text for e in page.elements] == [raw]


def test_a_layout_cut_off_before_its_first_element_is_not_plain_text():
    page = parse_output('[{"bbox": [12, 40', LAYOUT_ALL, SENT, ORIGINAL)
    assert page.elements == [] and page.truncated and not page.plain_text_fallback
    assert "no element was complete" in page.warnings[0]


def test_a_text_task_keeps_the_markdown():
    page = parse("text_mode.md", TEXT_ONLY)
    assert page.text == answer("text_mode.md").strip()
    assert not page.plain_text_fallback and page.warnings == []
    assert page.elements[0].bbox is None


def test_a_grounding_task_gives_the_region_text_with_its_box():
    page = parse("grounding.txt", GROUNDING, grounding_box=[100, 100, 300, 150])
    assert page.elements == [Element("Text", (200, 200, 600, 300), "Total due: 1,250.00 EUR", 0)]
    assert page.warnings == []


def test_a_grounding_answer_in_json_gives_its_text():
    raw = '{"bbox": [100, 100, 300, 150], "category": "Text", "text": "Total due"}'
    page = parse_output(raw, GROUNDING, SENT, ORIGINAL, grounding_box=[100, 100, 300, 150])
    assert [(e.text, e.bbox) for e in page.elements] == [("Total due", (200, 200, 600, 300))]


def test_layout_only_has_boxes_and_no_text():
    page = parse("layout_only.json", LAYOUT_ONLY)
    assert [(e.category, e.bbox, e.text) for e in page.elements] == [
        ("Title", (200, 120, 1800, 200), ""), ("Text", (200, 280, 1800, 800), ""),
        ("Picture", (200, 840, 1800, 1400), ""), ("Caption", (200, 1440, 1800, 1520), ""),
    ]
    assert page.warnings == [] and page.text == ""
    assert parse("clean_page.json", LAYOUT_ONLY).elements[3].text == ""  # text given anyway is left out


def test_a_text_task_answered_with_a_layout_uses_the_layout():
    page = parse("truncated.json", TEXT_ONLY)
    assert len(page.elements) == 4 and page.truncated
    assert any("layout instead of plain text" in w for w in page.warnings)


def test_the_token_limit_marks_a_text_page_truncated():
    page = parse("text_mode.md", TEXT_ONLY, hit_token_limit=True)
    assert page.truncated and any("output limit" in w for w in page.warnings)


def test_it_reads_what_is_not_a_string_as_text_when_it_can():
    raw = (
        '[{"bbox": [1, 1, 9, 9], "category": "Text", "text": ["first", "second"]},'
        ' {"bbox": [1, 11, 9, 19], "category": "Text", "text": 12.50},'
        ' {"bbox": [1, 21, 9, 29], "category": "Text", "text": true},'
        ' {"bbox": [1, 31, 9, 39], "category": "Text", "text": null}]'
    )
    page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
    assert_sound(raw, page, ORIGINAL)
    assert [e.text for e in page.elements] == ["first\nsecond", "12.50", "", ""]
    assert any("strings in it were kept" in w for w in page.warnings)
    assert any("was not text" in w for w in page.warnings)


def test_it_reads_a_single_object_and_prose_around_the_json():
    page = parse_output('{"bbox": [1, 2, 3, 4], "category": "Table", "text": "<table></table>"}', LAYOUT_ALL)
    assert [(e.category, e.bbox) for e in page.elements] == [("Table", (1, 2, 3, 4))]
    assert any("size was not known" in w for w in page.warnings)
    raw = 'Here is the layout:\n[{"bbox": [1, 2, 3, 4], "category": "Title", "text": "T"}]\nHope this helps!'
    page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
    assert [e.text for e in page.elements] == ["T"]
    assert any("characters of the answer outside any element were left out" in w for w in page.warnings)


def test_an_unknown_task_is_read_as_a_layout():
    page = parse_output(answer("clean_page.json"), "poetry", A4_SENT, A4)
    assert len(page.elements) == 12 and "Unknown task 'poetry'" in page.warnings[0]


@pytest.mark.parametrize("raw", [None, b'[{"bbox": [1, 2, 3, 4], "text": "b\xc3\xa9"}]', 42, "[" * 5000, "{" * 5000,
                                 '{"a":' * 3000, "\\", '"', "\ud800", "[{]}" * 100, "}{" * 100])
def test_it_never_raises(raw):
    for mode in MODES:
        page = parse_output(raw, mode, SENT, ORIGINAL)
        assert isinstance(page, ParsedPage)


def test_bad_sizes_do_not_fail_a_page():
    page = parse_output(answer("clean_page.json"), LAYOUT_ALL, (0, 0), "big")
    assert len(page.elements) == 12
    assert page.elements[1].bbox == (210, 190, 1442, 290)  # as the model gave it


def test_loops_are_cut_and_legitimate_repetition_is_kept():
    toc = "Chapter 1 " + "." * 60 + " 5"
    assert cut_loops(toc) == (toc, 0)
    row = "<tr>" + "<td></td>" * 12 + "</tr>"
    assert cut_loops(row * 3) == (row * 3, 0)
    looped, cuts = cut_loops("Intro. " + "_" * 5000)
    assert (looped, cuts) == ("Intro. ___", 1)
    para = "This paragraph came back again and again, word for word, as models sometimes do."
    looped, cuts = cut_loops("\n\n".join([para] * 40) + "\n\nThe end.")
    assert cuts == 1 and looped.count(para) == 3 and looped.endswith("The end.")


def test_a_long_looping_answer_is_read_quickly():
    raw = '[{"bbox": [1, 2, 3, 4], "category": "Text", "text": "' + "la la land " * 8000
    start = time.perf_counter()
    page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
    assert time.perf_counter() - start < 2
    assert page.loops_cut == 1 and page.truncated and len(page.elements[0].text) < 40
    varied = " ".join(f"word{i} {i * 7 % 13}" for i in range(12000))
    start = time.perf_counter()
    assert cut_loops(varied) == (varied, 0)
    assert time.perf_counter() - start < 2


def test_a_page_survives_a_round_trip_through_a_dict():
    page = parse("truncated.json")
    page.page_number = 3
    assert ParsedPage.from_dict(json.loads(json.dumps(page.to_dict()))) == page


def test_normalize_text():
    assert normalize_text("  a\r\nb\x00c\x0c \t") == "a\nbc"


# -- properties -------------------------------------------------------------------------------

FRAGMENTS = [
    '{"bbox": ', "[", "]", "{", "}", ", ", ",", ":", '"text": ', '"category": ', '"Text"', '"Title"', '"Picture"',
    '"a\\"b"', '"x"', "1", "2.5", "-3", "1e3", "NaN", "\\u4e2d", "\\ud83d", "\\ude00", "\\u12", '"', "'", "```json\n",
    "```", "\n", "null", "true", " ", "é", "文", "\\", "}{", "\\frac", "\\n", "<table><tr><td>", "</td></tr>",
    "$$", "layout", '"bbox_2d": ', "{'bbox': ", "'Table'", "\t", "\r\n", "\x00", "\u202e", "ا", "🎉",
]
json_like = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=300), json_like)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text, st.sampled_from(MODES))
def test_parsing_never_raises_and_never_invents_text(raw, mode):
    page = parse_output(raw, mode, SENT, ORIGINAL, grounding_box=[10, 10, 50, 50] if mode == GROUNDING else None)
    assert_sound(raw, page, ORIGINAL)


cell_text = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from('"\\\n\t/{}[]:,\'')),
    max_size=25,
)


@st.composite
def layouts(draw):
    """A valid answer: a list of elements in the image sent (1000 × 1400), written as dots.ocr
    writes it or in one of the shapes a model falls into."""
    count = draw(st.integers(0, 4))
    elements = []
    for i in range(count):
        category = draw(st.sampled_from(LAYOUT_CATEGORIES))
        x1, y1 = draw(st.integers(0, 990)), 300 * i + draw(st.integers(0, 290))  # boxes differ
        box = [x1, y1, draw(st.integers(x1 + 1, 1000)), draw(st.integers(y1 + 1, 1400))]
        fields = [("bbox", box), ("category", category)]
        if category != "Picture":
            fields.append(("text", draw(cell_text) + f" #{i}"))
        if draw(st.booleans()):
            fields.reverse()
        elements.append(dict(fields))
    ascii_only = draw(st.booleans())
    indent = draw(st.sampled_from([None, 2]))
    shape = draw(st.sampled_from(["list", "joined", "lines", "wrapped", "fenced"]))
    dump = lambda v: json.dumps(v, ensure_ascii=ascii_only, indent=indent)  # noqa: E731
    if shape == "list":
        raw = dump(elements)
    elif shape == "joined":
        raw = "".join(dump(e) for e in elements)
    elif shape == "lines":
        raw = "\n".join(dump(e) for e in elements)
    elif shape == "wrapped":
        raw = dump({"layout": elements})
    else:
        raw = "```json\n" + dump(elements) + "\n```"
    return elements, shape, raw


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_a_valid_answer_gives_back_its_elements(layout):
    elements, _, raw = layout
    page = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL)
    assert_sound(raw, page, ORIGINAL)
    assert [(e.category, e.bbox, e.text) for e in page.elements] == [
        (el["category"], to_original(el["bbox"], SENT, ORIGINAL), normalize_text(el.get("text", "")))
        for el in elements
    ]
    assert not page.truncated and page.repeated_dropped == 0
    if elements:
        assert page.warnings == []
    else:
        assert len(page.warnings) == 1 and "nothing" in page.warnings[0]


@settings(max_examples=25, deadline=None)
@given(layouts())
def test_an_answer_cut_anywhere_keeps_a_prefix_of_its_elements(layout):
    _, shape, raw = layout
    whole = parse_output(raw, LAYOUT_ALL, SENT, ORIGINAL).elements
    for k in range(len(raw) + 1):
        part = raw[:k]
        page = parse_output(part, LAYOUT_ALL, SENT, ORIGINAL)
        assert_sound(part, page, ORIGINAL)
        got = page.elements
        assert len(got) <= len(whole)
        for i, e in enumerate(got):
            full = whole[i]
            assert e.category == full.category, (part, got, whole)
            if e.complete:
                assert (e.bbox, e.text) == (full.bbox, full.text), (part, got, whole)
            else:
                assert i == len(got) - 1
                assert e.bbox in (None, full.bbox) and full.text.startswith(e.text), (part, got, whole)
        if shape == "list" and k < len(raw):
            assert page.truncated or not part.strip()
