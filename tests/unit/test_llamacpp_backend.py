"""The llama.cpp backend run for real on the CPU: the tiny dots.ocr-shaped model converted to a GGUF
pair with llama.cpp's own converter (tests/fixtures/tiny_dots/gguf.py), loaded by llama-cpp-python,
taken through the worker's flow (the holder loads it, a page is read and parsed, a read is cancelled
mid-answer, the holder unloads it), and refused with a sentence when the pair is broken."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.conftest import IN_CI

try:
    import llama_cpp  # noqa: F401
except ImportError as exc:  # the gguf extra is optional outside the test command
    if IN_CI:
        pytest.fail(f"CI=true and llama-cpp-python is missing: {exc}", pytrace=False)
    pytest.skip(f"llama-cpp-python is not installed: {exc}", allow_module_level=True)

from core.dots import prompts
from core.modelfacts import GiB
from core.planner import Device, PlannerSettings, make_plan
from core.readpage import parsed_page
from core.results import BackendError, JobCancelled
from tests.fixtures.gguf_headers import PROJECTOR, write_header
from tests.fixtures.tiny_dots.gguf import tiny_gguf_pair
from workers.backends import create_backend
from workers.backends.llamacpp.backend import LlamaCppBackend
from workers.holder import BackendHolder, Choice

MAX_PIXELS = 200 * 28 * 28
MAX_NEW_TOKENS = 12


def cache_dir() -> Path:
    return Path(os.environ.get("OCRDASH_TEST_CACHE") or Path.home() / ".cache" / "ocrdash-tests")


@pytest.fixture(scope="session")
def gguf_pair():
    return tiny_gguf_pair(cache_dir())


def never() -> bool:
    return False


def page() -> Image.Image:
    image = Image.new("RGB", (500, 700), "white")
    pen = ImageDraw.Draw(image)
    pen.text((40, 40), "Quarterly report 2024", fill="black")
    for row in range(5):
        pen.text((40, 120 + 40 * row), f"Line {row}: the quick brown fox", fill="black")
    return image


def plan_args(pair, **extra) -> dict:
    """A planner plan for a machine without a GPU, with the files where load_args puts them."""
    settings = PlannerSettings(backend="llamacpp", max_pixels=MAX_PIXELS, max_new_tokens=MAX_NEW_TOKENS)
    plan = make_plan(None, settings)
    return {**plan.as_json(), "lm_path": str(pair[0]), "mmproj_path": str(pair[1]), **extra}


@pytest.fixture(scope="module")
def backend(gguf_pair):
    loaded = LlamaCppBackend()
    loaded.load(plan_args(gguf_pair))
    yield loaded
    loaded.unload()


def test_the_worker_loads_the_gguf_pair_reads_a_page_and_unloads_it(gguf_pair):
    holder = BackendHolder(create=create_backend, read_gpu=lambda: None)
    args = plan_args(gguf_pair)
    plan = make_plan(None, PlannerSettings(backend="llamacpp", max_pixels=MAX_PIXELS, max_new_tokens=MAX_NEW_TOKENS))
    steps = []
    running = holder.ensure(Choice(plan, args, ("llamacpp", "tiny"), "s1"), lambda d, t, m: steps.append(m))
    assert running.loaded and running.name == "llamacpp" and args["gpu_layers"] == 0
    assert any("ready in llama.cpp" in m for m in steps)

    image = page()
    result = running.ocr(image, prompts.LAYOUT_ALL, never)
    parsed = parsed_page(result, "llamacpp", prompts.LAYOUT_ALL, image.size)
    assert result.text and 0 < result.details["new_tokens"] <= MAX_NEW_TOKENS
    assert parsed.mode == prompts.LAYOUT_ALL and parsed.original_size == image.size
    assert result.details["image_size_sent"][0] % 28 == 0 and result.details["device"] == "CPU"
    assert result.details["image_size_sent"][0] * result.details["image_size_sent"][1] <= MAX_PIXELS

    assert holder.unload("idle for 600 s") and not running.loaded


@pytest.mark.parametrize("mode", prompts.MODES)
def test_it_reads_a_page_in_each_mode(backend, mode):
    bbox = [40, 40, 460, 100] if mode == prompts.GROUNDING else None
    question = "What is written on this page?" if mode == prompts.QUESTION else None
    result = backend.ocr(page(), mode, never, bbox=bbox, question=question)
    assert result.raw == result.text and result.details["prompt_tokens"] > result.details["image_tokens"]
    if bbox:
        assert len(result.details["bbox_sent"]) == 4


def test_greedy_reading_gives_the_same_answer_twice(backend):
    assert backend.ocr(page(), prompts.TEXT_ONLY, never).text == backend.ocr(page(), prompts.TEXT_ONLY, never).text


def test_cancel_mid_answer_stops_it_and_the_next_page_still_reads(backend):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 4  # the check before the page, after the prompt, then two tokens

    with pytest.raises(JobCancelled):
        backend.ocr(page(), prompts.LAYOUT_ALL, cancel)
    assert len(calls) == 4
    assert backend.ocr(page(), prompts.TEXT_ONLY, never).details["new_tokens"] > 0


def test_the_output_budget_bounds_the_answer(gguf_pair):
    short = LlamaCppBackend()
    short.load(plan_args(gguf_pair, max_new_tokens=3))
    try:
        result = short.ocr(page(), prompts.LAYOUT_ALL, never)
    finally:
        short.unload()
    assert result.details["new_tokens"] <= 3 and result.details["hit_token_limit"]


def test_a_per_token_hook_sees_the_answer_grow(backend):
    seen = []
    backend.on_token = lambda piece, count: seen.append(count)
    try:
        result = backend.ocr(page(), prompts.TEXT_ONLY, never)
    finally:
        backend.on_token = None
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= min(3, result.details["new_tokens"])


def test_a_partial_offload_plan_is_what_the_backend_is_given(gguf_pair):
    gpu = [Device(0, 4 * GiB, int(1.5 * GiB), (8, 6), "small card")]
    plan = make_plan(gpu, PlannerSettings(backend="llamacpp"))
    assert 0 < plan.gpu_layers < plan.total_layers
    args = {**plan.as_json(), "lm_path": str(gguf_pair[0]), "mmproj_path": str(gguf_pair[1])}
    assert args["gpu_layers"] == plan.gpu_layers and args["projector_on_gpu"] is False


# -- broken pairs ----------------------------------------------------------------------------------


def test_a_missing_file_names_the_file_and_the_fetch_command(gguf_pair, tmp_path):
    with pytest.raises(BackendError, match=r"mmproj\.gguf is not there.*fetch_model --gguf"):
        LlamaCppBackend().load(plan_args(gguf_pair, mmproj_path=str(tmp_path / "mmproj.gguf")))


def test_a_truncated_language_model_is_refused_before_llamacpp_reads_it(gguf_pair, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_pair[0].read_bytes()[:600])
    with pytest.raises(BackendError, match="cut short"):
        LlamaCppBackend().load(plan_args(gguf_pair, lm_path=str(cut)))


def test_a_projector_from_another_model_is_refused(gguf_pair, tmp_path):
    other = write_header(tmp_path / "mmproj-other.gguf", {**PROJECTOR, "clip.vision.projection_dim": 1536})
    with pytest.raises(BackendError, match="different models"):
        LlamaCppBackend().load(plan_args(gguf_pair, mmproj_path=str(other)))


def test_a_corrupt_language_model_with_a_good_header_is_a_message_not_a_crash(gguf_pair, tmp_path):
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(gguf_pair[0], broken)
    with broken.open("r+b") as fh:
        fh.truncate(broken.stat().st_size - 4096)  # the tensors end before their data does
    backend = LlamaCppBackend()
    with pytest.raises(BackendError, match="llama.cpp could not load broken.gguf"):
        backend.load(plan_args(gguf_pair, lm_path=str(broken)))
    assert not backend.loaded


def test_the_answer_ends_after_dots_ocrs_end_of_answer_token(backend):
    import numpy as np

    from workers.backends.llamacpp.backend import END_OF_ANSWER, _end_after, _single_token

    end = _single_token(backend._llm, END_OF_ANSWER)
    eos = backend._llm.token_eos()
    assert end is not None and end != eos
    (force_end,) = _end_after(end, eos)
    scores = np.zeros(8 + max(end, eos), dtype=np.float32)
    assert force_end(np.array([5, 7]), scores.copy()).max() == 0.0  # untouched before it
    forced = force_end(np.array([5, end]), scores.copy())
    assert int(np.argmax(forced)) == eos and np.isinf(forced[end])
