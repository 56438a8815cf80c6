"""dots.mocr's scene-text answers read as outlines and text, in the original image's pixels, from
realistic samples written from the documented format (`(x1, y1), (x2, y2), (x3, y3), (x4, y4) text`),
cut-off, looping and malformed ones too; and written back in that format for a client."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.dots import scene
from core.dots.parse import REPEATED_TEXT_LIMIT

SIGN = (
    "(112, 40), (530, 52), (526, 130), (108, 118) OPEN 24 HOURS\n"
    "(120, 160), (400, 160), (400, 200), (120, 200) Coffee & Tea\n"
    "(60, 300), (250, 290), (252, 330), (62, 340) 营业时间 8:00-22:00"
)


def test_each_line_becomes_an_outline_with_its_text_mapped_to_the_original_pixels():
    # The model saw 560×420; the photo is 1120×840: every corner doubles.
    page = scene.parse_scene(SIGN, sent_size=(560, 420), original_size=(1120, 840))

    assert [e.text for e in page.elements] == ["OPEN 24 HOURS", "Coffee & Tea", "营业时间 8:00-22:00"]
    first = page.elements[0]
    assert first.polygon == ((224, 80), (1060, 104), (1052, 260), (216, 236))
    assert first.bbox == (216, 80, 1060, 260)
    assert page.mode == "scene_spotting" and not page.truncated and not page.warnings
    assert page.text == "OPEN 24 HOURS\nCoffee & Tea\n营业时间 8:00-22:00"


def test_an_answer_cut_at_the_token_limit_keeps_every_whole_outline_and_marks_the_last_incomplete():
    cut = SIGN + "\n(10, 400), (90, 400), (90"
    page = scene.parse_scene(cut, sent_size=(560, 420), original_size=(560, 420), hit_token_limit=True)

    assert len(page.elements) == 3 and page.truncated
    assert page.elements[-1].complete is False and page.elements[0].complete
    assert any("corner point" in w for w in page.warnings)
    assert any("output limit" in w for w in page.warnings)


def test_a_loop_of_the_same_line_is_kept_once():
    line = "(10, 10), (90, 10), (90, 30), (10, 30) SALE\n"
    page = scene.parse_scene(line * 300, sent_size=(100, 100), original_size=(100, 100))

    assert [e.text for e in page.elements] == ["SALE"]
    assert page.repeated_dropped == 299


def test_the_same_text_at_many_places_is_kept_up_to_the_limit():
    lines = "".join(f"({x}, 10), ({x + 5}, 10), ({x + 5}, 20), ({x}, 20) EXIT\n" for x in range(0, 90, 6))
    page = scene.parse_scene(lines, sent_size=(100, 100), original_size=(100, 100))
    assert len(page.elements) == REPEATED_TEXT_LIMIT


def test_corners_outside_the_image_are_clamped_and_malformed_lines_left_out():
    answer = (
        "(-20, -5), (900, 0), (900, 50), (-20, 50) WIDE SIGN\n"
        "(1, 2), (3, 4) half an outline\n"
        "no outline at all\n"
        "(5.5, 6.5), (40.2, 6), (40, 20), (5, 20) decimals"
    )
    page = scene.parse_scene(answer, sent_size=(200, 100), original_size=(200, 100))

    assert page.elements[0].polygon == ((0, 0), (200, 0), (200, 50), (0, 50))
    assert page.elements[0].text == "WIDE SIGN"
    # The half outline's text runs into the next line: what follows a whole outline is its text.
    assert page.elements[-1].text == "decimals" and page.elements[-1].polygon[0] == (6, 6)


def test_an_answer_without_outlines_keeps_its_text():
    page = scene.parse_scene("I see a shop sign that says OPEN.", sent_size=(100, 100), original_size=(100, 100))
    assert page.plain_text_fallback and page.elements[0].polygon is None
    assert page.elements[0].text == "I see a shop sign that says OPEN."


def test_written_back_it_reads_as_the_same_outlines():
    page = scene.parse_scene(SIGN, sent_size=(560, 420), original_size=(1120, 840))
    page.sent_size = (560, 420)
    again = scene.parse_scene(scene.as_lines(page), sent_size=(560, 420), original_size=(1120, 840))
    assert [(e.text, e.polygon) for e in again.elements] == [(e.text, e.polygon) for e in page.elements]


@settings(max_examples=150, deadline=None)
@given(
    raw=st.text(alphabet="(),0123456789 -.\nABCxyz营", max_size=400),
    sent=st.tuples(st.integers(28, 2000), st.integers(28, 2000)),
    original=st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
)
def test_any_answer_is_read_without_error_and_every_outline_lies_in_the_image(raw, sent, original):
    page = scene.parse_scene(raw, sent_size=sent, original_size=original)
    w, h = original
    for element in page.elements:
        assert element.text and element.text in raw.replace("\r", "") or page.loops_cut
        if element.polygon is not None:
            assert all(0 <= x <= w and 0 <= y <= h for x, y in element.polygon)
            x1, y1, x2, y2 = element.bbox
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
