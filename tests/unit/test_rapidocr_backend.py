"""The CPU backend reading images drawn with DejaVu Sans."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core import languages
from core.readpage import parsed_page
from core.results import BackendError, JobCancelled, OcrResult, TextLine
from workers.backends.rapidocr_backend import (
    RapidOcrBackend,
    reading_order,
    to_rgb_array,
)

FONT_PATH = Path(__file__).resolve().parents[1] / "data" / "DejaVuSans.ttf"


def never() -> bool:
    return False


def draw(
    rows: list[tuple[int, int, str]],
    size: tuple[int, int] = (1000, 360),
    font_size: int = 48,
    ink: str = "black",
    paper: str = "white",
) -> Image.Image:
    font = ImageFont.truetype(str(FONT_PATH), font_size)
    image = Image.new("RGB", size, paper)
    pen = ImageDraw.Draw(image)
    for x, y, text in rows:
        pen.text((x, y), text, font=font, fill=ink)
    return image


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


TWO_LINES = [(40, 60, "Quick brown foxes"), (40, 200, "jump over lazy dogs")]
TWO_LINE_WORDS = {"quick", "brown", "foxes", "jump", "over", "lazy", "dogs"}


@pytest.fixture(scope="module")
def backend():
    engine = RapidOcrBackend()
    engine.load({"language": "multi"})
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def two_line_result(backend) -> OcrResult:
    return backend.ocr(draw(TWO_LINES), "text", never)


def test_it_reads_words_drawn_with_dejavu(two_line_result):
    assert TWO_LINE_WORDS <= set(words(two_line_result.text))


def test_two_lines_come_back_top_to_bottom(two_line_result):
    rows = two_line_result.text.split("\n")
    assert len(rows) == 2
    assert "quick" in rows[0].lower()
    assert "dogs" in rows[1].lower()


def test_lines_carry_boxes_inside_the_image_and_scores(two_line_result):
    width, height = 1000, 360
    assert two_line_result.lines
    for line in two_line_result.lines:
        assert isinstance(line, TextLine)
        assert len(line.box) == 4
        for x, y in line.box:
            assert isinstance(x, float) and isinstance(y, float)
            assert 0 <= x <= width and 0 <= y <= height
        assert 0.5 <= line.score <= 1.0
    first, last = two_line_result.lines[0], two_line_result.lines[-1]
    assert max(p[1] for p in first.box) <= min(p[1] for p in last.box) + 20


def test_result_names_language_and_engine_and_keeps_the_raw_output(two_line_result):
    assert two_line_result.details["language"] == "multi"
    assert two_line_result.details["engine"].startswith("rapidocr ")
    raw = json.loads(two_line_result.raw)
    assert len(raw["txts"]) == len(raw["boxes"]) == len(raw["scores"]) == len(two_line_result.lines)
    json.dumps(two_line_result.as_json())


def test_words_on_one_row_are_read_left_to_right(backend):
    image = draw([(40, 140, "Morning"), (640, 140, "Evening")], size=(1000, 360))
    result = backend.ocr(image, "text", never)
    assert words(result.text) == ["morning", "evening"]
    assert "\n" not in result.text


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK", "1"])
def test_other_image_modes_are_read(backend, mode):
    image = draw(TWO_LINES)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        image = image.convert(mode)
    result = backend.ocr(image, "text", never)
    assert TWO_LINE_WORDS <= set(words(result.text))


def test_sixteen_bit_grayscale_is_read(backend):
    gray = np.asarray(draw(TWO_LINES).convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(gray.astype(np.uint16))
    assert image.mode.startswith("I;16") or image.mode == "I"
    result = backend.ocr(image, "text", never)
    assert TWO_LINE_WORDS <= set(words(result.text))


def test_dark_text_on_a_transparent_page_is_read(backend):
    image = Image.new("RGBA", (1000, 360), (0, 0, 0, 0))
    font = ImageFont.truetype(str(FONT_PATH), 48)
    pen = ImageDraw.Draw(image)
    for x, y, text in TWO_LINES:
        pen.text((x, y), text, font=font, fill=(0, 0, 0, 255))
    result = backend.ocr(image, "text", never)
    assert TWO_LINE_WORDS <= set(words(result.text))


def test_blank_image_gives_empty_text(backend):
    result = backend.ocr(Image.new("RGB", (640, 480), "white"), "text", never)
    assert result.text == ""
    assert result.lines == []
    assert json.loads(result.raw)["txts"] == []


def test_tiny_image_gives_empty_text(backend):
    assert backend.ocr(Image.new("L", (1, 1), 255), "text", never).text == ""


def test_cancel_flag_raises_job_cancelled(backend):
    with pytest.raises(JobCancelled):
        backend.ocr(draw(TWO_LINES), "text", lambda: True)


def test_ocr_before_load_is_a_backend_error():
    fresh = RapidOcrBackend()
    assert not fresh.loaded
    with pytest.raises(BackendError):
        fresh.ocr(draw(TWO_LINES), "text", never)


def test_engine_failure_becomes_a_backend_error(backend, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("onnx exploded")

    engines = dict(backend._engines)
    monkeypatch.setattr(backend, "_engines", {"multi": broken})
    try:
        with pytest.raises(BackendError, match="onnx exploded"):
            backend.ocr(draw(TWO_LINES), "text", never)
    finally:
        backend._engines = engines


def test_the_page_time_limit_stops_a_slow_page_and_says_so(backend, monkeypatch):
    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(5)
        raise RuntimeError("never read")

    engines, plan = dict(backend._engines), backend._plan
    monkeypatch.setattr(backend, "_engines", {"multi": slow})
    backend._plan = {**plan, "page_time_limit": 1}
    try:
        started = time.monotonic()
        result = backend.ocr(draw(TWO_LINES), "text", never)
    finally:
        release.set()
        backend._engines, backend._plan = engines, plan
    assert time.monotonic() - started < 3
    assert result.details["stopped"]["reason"] == "time limit" and result.text == ""
    page = parsed_page(result, "rapidocr", "text", (400, 200))
    assert page.warnings[0].startswith("Stopped: time limit of 1 s")


def test_with_a_time_limit_a_page_in_time_reads_as_usual(backend, two_line_result):
    plan = backend._plan
    backend._plan = {**plan, "page_time_limit": 60}
    try:
        assert backend.ocr(draw(TWO_LINES), "text", never).text == two_line_result.text
    finally:
        backend._plan = plan


# -- languages and loading ---------------------------------------------------


def test_unknown_language_is_a_backend_error_listing_codes():
    with pytest.raises(BackendError) as err:
        RapidOcrBackend().load({"language": "klingon"})
    assert "eslav" in str(err.value)


def test_missing_language_without_download_names_the_fetch_command(tmp_path):
    fresh = RapidOcrBackend()
    with pytest.raises(BackendError) as err:
        fresh.load({"language": "eslav", "model_dir": str(tmp_path), "allow_download": False})
    assert "python manage.py fetch_ocr_language eslav" in str(err.value)
    assert not fresh.loaded


def test_a_damaged_model_file_is_a_backend_error(tmp_path):
    (tmp_path / "korean_PP-OCRv5_rec_mobile.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError) as err:
        RapidOcrBackend().load({"language": "korean", "model_dir": tmp_path, "allow_download": False})
    assert "fetch_ocr_language korean" in str(err.value)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """Serves a copy of the bundled recognition model, counting requests."""
    root = tmp_path_factory.mktemp("served")
    source = languages.model_path("multi", None)
    (root / "rec.onnx").write_bytes(source.read_bytes())
    hits: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    sha = hashlib.sha256((root / "rec.onnx").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/rec.onnx", sha, hits
    httpd.shutdown()
    httpd.server_close()


def test_first_job_in_a_new_language_downloads_its_model_once(model_server, tmp_path, monkeypatch):
    url, sha, hits = model_server
    # Stand the bundled model in for the Russian one: same format, served locally.
    eslav = dataclasses.replace(languages.get_language("eslav"), url=url, sha256=sha)
    real_get = languages.get_language
    monkeypatch.setattr(
        languages, "get_language", lambda code: eslav if code == "eslav" else real_get(code)
    )
    hits.clear()
    progress = []
    plan = {"language": "eslav", "model_dir": str(tmp_path)}

    backend = RapidOcrBackend()
    backend.load(plan, progress=lambda done, total, msg: progress.append((done, total, msg)))
    assert backend.loaded and backend.language == "eslav"
    assert hits == ["/rec.onnx"]
    assert (tmp_path / eslav.filename).is_file()
    size = (tmp_path / eslav.filename).stat().st_size
    assert any(done == total == size for done, total, _ in progress)

    result = backend.ocr(draw(TWO_LINES), "text", never)
    assert result.details["language"] == "eslav"
    assert TWO_LINE_WORDS <= set(words(result.text))

    backend.unload()
    assert not backend.loaded
    backend.load(plan)
    assert hits == ["/rec.onnx"]
    assert backend.loaded


def test_load_switches_between_cached_languages(model_server, tmp_path):
    _url, _sha, _hits = model_server
    (tmp_path / "el_PP-OCRv5_rec_mobile.onnx").write_bytes(
        languages.model_path("multi", None).read_bytes()
    )
    backend = RapidOcrBackend(model_dir=tmp_path)
    backend.load({})
    first = backend._engines["multi"]
    backend.load({"language": "el", "allow_download": False})
    assert backend.language == "el"
    backend.load({"language": "multi"})
    assert backend._engines["multi"] is first
    assert set(backend._engines) == {"multi", "el"}
    backend.unload()
    assert backend._engines == {}


# -- pure helpers ----------------------------------------------------------------


def _line(text: str, x: float, y: float, w: float = 100, h: float = 30) -> TextLine:
    return TextLine(text, [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], 0.9)


def test_reading_order_is_rows_top_down_then_left_to_right():
    lines = [
        _line("c", 300, 102),
        _line("d", 10, 200),
        _line("b", 10, 100),
        _line("a", 400, 10),
    ]
    assert [ln.text for ln in reading_order(lines)] == ["a", "b", "c", "d"]


def test_rgb_conversion_lays_transparency_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((1, 1), (0, 0, 0, 255))
    arr = to_rgb_array(image)
    assert arr.shape == (4, 4, 3) and arr.dtype == np.uint8
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert arr[1, 1].tolist() == [0, 0, 0]


def test_rgb_conversion_scales_sixteen_bit_values():
    image = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert to_rgb_array(image)[0].tolist() == [[0, 0, 0], [255, 255, 255]]


# -- the grounding task: one region of the page ----------------------------------------------


def test_a_region_reads_only_the_text_inside_it_with_boxes_in_page_pixels(backend):
    page = draw(TWO_LINES)

    result = backend.ocr(page, "grounding", never, bbox=[20, 180, 900, 280])

    assert set(words(result.text)) == {"jump", "over", "lazy", "dogs"}
    assert result.details["bbox_sent"] == [20, 180, 900, 280]
    for line in result.lines:
        xs = [p[0] for p in line.box]
        ys = [p[1] for p in line.box]
        assert 20 - 1 <= min(xs) and max(xs) <= 900 + 1
        assert 180 - 1 <= min(ys) and max(ys) <= 280 + 1


def test_a_region_tight_around_a_line_reads_it(backend):
    # The box touches the glyphs: the white margin added around the crop keeps them readable.
    result = backend.ocr(draw(TWO_LINES), "grounding", never, bbox=[38, 62, 520, 118])

    assert set(words(result.text)) == {"quick", "brown", "foxes"}


@pytest.mark.parametrize(
    ("bbox", "says"), [(None, "needs its box"), ([1, 2, 3], "needs its box"), ([2000, 0, 2100, 50], "outside")]
)
def test_a_region_without_a_usable_box_is_refused(backend, bbox, says):
    with pytest.raises(BackendError, match=says):
        backend.ocr(draw(TWO_LINES), "grounding", never, bbox=bbox)


@pytest.mark.parametrize("mode", ["image_to_svg", "question"])
def test_the_cpu_engine_refuses_what_only_a_dots_model_can_do_naming_the_models(mode):
    with pytest.raises(BackendError, match="needs dots.mocr"):
        RapidOcrBackend().ocr(Image.new("RGB", (20, 20)), mode, never)
