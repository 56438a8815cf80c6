"""Boxes between the image sent to dots.ocr and the original page image."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.dots.boxes import (
    clamp_box,
    fix_box,
    original_to_sent,
    scale_factors,
    sent_size,
    sent_to_original,
    to_original,
    to_sent,
)

A4 = (1654, 2339)  # A4 at 200 dpi, (width, height)
A4_SENT = (1652, 2352)


def test_it_knows_the_size_sent_for_an_a4_page():
    assert sent_size(A4) == A4_SENT
    assert sent_size(A4, max_pixels=1_003_520) == (840, 1176)


def test_it_scales_a_box_back_by_the_resize_factors():
    # The page was halved for the model: every coordinate doubles.
    assert to_original([100, 200, 300, 400], (1000, 1400), (2000, 2800)) == (200, 400, 600, 800)
    # A4: sx = 1654/1652, sy = 2339/2352.
    assert to_original([142, 392, 1510, 560], A4_SENT, A4) == (142, 390, 1512, 557)


def test_it_rounds_halves_up():
    assert to_original([1, 1, 3, 3], (2, 2), (3, 3)) == (2, 2, 3, 3)  # 1.5 → 2, 4.5 → 3 (clamped to 3)


def test_it_takes_a_drawn_box_to_the_sent_image_for_grounding():
    # dots.ocr's pre_process_bboxes divides by the same factors.
    assert to_sent([200, 400, 600, 800], (2000, 2800), (1000, 1400)) == (100, 200, 300, 400)
    assert to_sent([163, 241, 1536, 705], A4, A4_SENT) == (163, 242, 1534, 709)  # 1536 × 1652/1654 = 1534.1


def test_it_clamps_boxes_to_the_image():
    fixed = fix_box([-20, -10, 1300, 80], (1000, 1400))
    assert fixed.box == (0, 0, 1000, 80) and fixed.clamped and not fixed.outside


def test_it_does_not_call_a_pixel_of_rounding_a_clamp():
    fixed = fix_box([0, 0, 1001, 1401], (1000, 1400), tolerance=2)
    assert fixed.box == (0, 0, 1000, 1400) and not fixed.clamped


def test_it_drops_a_box_wholly_outside():
    fixed = fix_box([1200, 1500, 1300, 1600], (1000, 1400))
    assert fixed.box is None and fixed.outside
    assert clamp_box([-50, 10, 0, 20], (1000, 1400)) is None  # touches the edge, no pixel inside


def test_it_puts_swapped_corners_in_order():
    fixed = fix_box([800, 400, 100, 300], (1000, 1400))
    assert fixed.box == (100, 300, 800, 400) and fixed.swapped


def test_it_widens_a_box_with_no_area_to_one_pixel():
    fixed = fix_box([500, 950, 500, 950], (1000, 1400))
    assert fixed.box == (500, 950, 501, 951) and fixed.widened
    assert fix_box([1000, 10, 1000, 20], (1000, 1400)).box is None  # on the right edge: outside
    assert fix_box([999.7, 10, 1000, 20], (1000, 1400)).box == (999, 10, 1000, 20)


def test_it_refuses_sizes_that_are_not_pixels():
    with pytest.raises(ValueError):
        scale_factors((0, 10), (10, 10))
    with pytest.raises(ValueError):
        to_original([1, 2, 3, 4], (10, 10), None)


def test_float_transforms_are_exact_inverses():
    sx, sy = scale_factors(A4_SENT, A4)
    box = (12.5, 40.0, 1600.25, 2300.0)
    back = original_to_sent(sent_to_original(box, sx, sy), sx, sy)
    assert back == pytest.approx(box)


sizes = st.tuples(st.integers(28, 4000), st.integers(28, 4000))


@st.composite
def box_in(draw, size):
    w, h = size
    x1 = draw(st.integers(0, w - 1))
    y1 = draw(st.integers(0, h - 1))
    x2 = draw(st.integers(x1 + 1, w))
    y2 = draw(st.integers(y1 + 1, h))
    return (x1, y1, x2, y2)


@settings(max_examples=200, deadline=None)
@given(st.data(), sizes, st.integers(3136, 11_289_600))
def test_round_trips_stay_within_one_pixel(data, original, max_pixels):
    try:
        sent = sent_size(original, max_pixels=max_pixels)
    except ValueError:
        return
    sx, sy = scale_factors(sent, original)
    # From the coarser grid to the finer and back, a box comes back within one pixel.
    def up(b):
        return to_original(b, sent, original)

    def down(b):
        return to_sent(b, original, sent)

    if sx >= 1 and sy >= 1:  # the model saw a smaller image
        start, there, back = sent, up, down
    elif sx <= 1 and sy <= 1:  # the model saw a larger image
        start, there, back = original, down, up
    else:
        assume(False)
    box = data.draw(box_in(start))
    mid = there(box)
    assert mid is not None
    result = back(mid)
    assert result is not None
    assert all(abs(a - b) <= 1 for a, b in zip(result, box, strict=True)), (box, mid, result)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=4, max_size=4),
    st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
)
def test_fixed_boxes_are_always_inside_the_image_and_have_area(box, size):
    fixed = fix_box(box, size)
    if fixed.box is None:
        assert fixed.outside
        return
    x1, y1, x2, y2 = fixed.box
    w, h = size
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
