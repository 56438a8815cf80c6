"""smart_resize against known values (dots.ocr's defaults: factor 28, 3,136 to 11,289,600 pixels)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.dots.resize import FACTOR, MAX_PIXELS, MIN_PIXELS, fit_for_model, image_tokens, smart_resize


def test_it_rounds_an_a4_page_at_200_dpi_to_multiples_of_28():
    # 1654 × 2339 (A4 at 200 dpi): 2339/28 = 83.5 → 84 × 28 = 2352; 1654/28 = 59.07 → 59 × 28 = 1652.
    assert smart_resize(2339, 1654) == (2352, 1652)
    assert image_tokens(2352, 1652) == 84 * 59 == 4956


def test_it_caps_an_a4_page_at_a_smaller_budget():
    # The planner's smallest budget, 1280 tokens: 1654 × 2339 / 1,003,520 → beta = 1.96,
    # 2339/1.96 = 1191.6 → 42 × 28 = 1176; 1654/1.96 = 842.6 → 30 × 28 = 840.
    assert smart_resize(2339, 1654, max_pixels=1_003_520) == (1176, 840)


def test_it_upscales_a_tiny_image_to_min_pixels():
    # 10 × 10 rounds to 28 × 28 = 784 < 3136: beta = sqrt(3136 / 100) = 5.6 → 56 × 56.
    assert smart_resize(10, 10) == (56, 56)
    h, w = smart_resize(1, 200)  # a thin strip: 28 × 196 = 5488 pixels, already enough
    assert (h, w) == (28, 196)


def test_it_caps_a_huge_image_at_max_pixels():
    # 10000 × 10000: beta = 10000 / 3360, so each side becomes 3360 = 120 × 28, exactly the maximum.
    assert smart_resize(10000, 10000) == (3360, 3360)
    assert 3360 * 3360 == MAX_PIXELS
    # 20000 × 100 (ratio 200, allowed): 20000 × 112 = 2.24 M pixels, under the cap.
    assert smart_resize(20000, 100) == (19992, 112)


def test_it_refuses_an_aspect_ratio_over_200():
    with pytest.raises(ValueError, match="200"):
        smart_resize(10, 2010)
    with pytest.raises(ValueError):
        smart_resize(0, 100)
    assert smart_resize(10, 2000)  # exactly 200 is allowed


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12000), st.integers(1, 12000))
def test_it_always_gives_multiples_of_28_within_the_pixel_range(h, w):
    if max(h, w) / min(h, w) > 200:
        with pytest.raises(ValueError):
            smart_resize(h, w)
        return
    rh, rw = smart_resize(h, w)
    assert rh % FACTOR == 0 and rw % FACTOR == 0
    assert MIN_PIXELS <= rh * rw <= MAX_PIXELS
    # The aspect ratio is kept up to the rounding to 28 pixels (a side under 28 pixels becomes 28).
    if min(h, w) >= FACTOR:
            assert abs(rw / rh - w / h) <= (w / h) * (FACTOR / min(rh, rw)) * 2 + 1e-9


def test_fit_for_model_returns_the_factors_back_to_the_original():
    image = Image.new("RGB", (1654, 2339), "white")
    resized, sx, sy = fit_for_model(image)
    assert resized.size == (1652, 2352)
    assert sx == pytest.approx(1654 / 1652) and sy == pytest.approx(2339 / 2352)
