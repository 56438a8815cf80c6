"""The transformers and cpu backends, run for real on a tiny random-weight dots.ocr built offline.

The model folder (tests/fixtures/tiny_dots) loads through the same calls as the published model:
config.json with auto_map, trust_remote_code, a Qwen2 tokenizer with dots.ocr's special tokens, a
Qwen2-VL image processor and the processor's chat template. Only its sizes are small.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import shutil
import weakref
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.conftest import IN_CI

try:
    import torch
    import transformers  # noqa: F401
except ImportError as exc:  # the dots.ocr backends' packages are optional for the web side
    if IN_CI:
        pytest.fail(f"CI=true and the transformers backend's packages are missing: {exc}", pytrace=False)
    pytest.skip(f"torch and transformers are not installed: {exc}", allow_module_level=True)

from core import results
from core.dots import prompts
from core.dots.resize import fit_for_model
from core.loopguard import REPEATING, TIME_LIMIT
from core.modelfacts import DOTS_OCR
from core.readpage import parsed_page
from core.results import BackendError, JobCancelled, OcrResult
from tests.fixtures.tiny_dots.build import REAL_SIZES, build_tiny_model, write_code_and_config
from workers.backends.hf_generate import CHECK_EVERY, fast_decode_broken
from workers.backends.pagereading import DONE
from workers.backends.transformers_backend import (
    CpuBackend,
    OutOfMemory,
    TransformersBackend,
    model_source,
)

# dots.ocr's prepare_inputs_for_generation passes num_logits_to_keep, which transformers 4.51
# reports as deprecated on every step.
pytestmark = pytest.mark.filterwarnings("ignore:Both `num_logits_to_keep`:FutureWarning")

MAX_PIXELS = 300 * 28 * 28
MAX_NEW_TOKENS = 6
PIN = "0123456789abcdef0123456789abcdef01234567"
ROOT = Path(__file__).resolve().parents[2]


def never() -> bool:
    return False


def page(size: tuple[int, int] = (600, 800)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    pen.rectangle((40, 40, size[0] - 40, 120), outline="black", width=3)
    pen.text((60, 70), "Quarterly report 2024", fill="black")
    for row in range(6):
        pen.text((60, 180 + 40 * row), f"Line {row}: the quick brown fox", fill="black")
    return image


class Counter:
    """A cancel check that says yes from its `at`-th call on."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.at


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_dots")


def plan_for(folder, **extra):
    plan = {"backend": "cpu", "model": str(folder), "quantization": None, "dtype": "float32"}
    return {**plan, "max_pixels": MAX_PIXELS, "max_new_tokens": MAX_NEW_TOKENS, **extra}


@pytest.fixture(scope="module")
def cpu(tiny_model):
    backend = CpuBackend()
    backend.load(plan_for(tiny_model))
    yield backend
    backend.unload()


@pytest.fixture
def sent(cpu, monkeypatch):
    """What model.generate received on each call: input_ids and the number of new tokens."""
    calls: list[dict] = []
    real_generate = cpu._model.generate

    def spy(**kwargs):
        output = real_generate(**kwargs)
        calls.append(
            {"input_ids": kwargs["input_ids"], "new_tokens": output.shape[1] - kwargs["input_ids"].shape[1]}
        )
        return output

    monkeypatch.setattr(cpu._model, "generate", spy)
    return calls


# -- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", prompts.MODES)
def test_it_reads_a_page_in_each_mode(cpu, mode):
    bbox = [40, 40, 560, 120] if mode == prompts.GROUNDING else None
    question = "What is the total on this invoice?" if mode == prompts.QUESTION else None
    result = cpu.ocr(page(), mode, never, bbox=bbox, question=question)

    assert isinstance(result, OcrResult)
    assert result.text and result.raw == result.text
    details = result.details
    assert details["backend"] == "cpu"
    assert details["quantization"] == "float32"
    assert details["new_tokens"] == MAX_NEW_TOKENS
    assert details["hit_token_limit"] is True
    assert details["peak_gpu_bytes"] is None
    assert details["seconds"] >= details["first_token_seconds"] > 0
    assert details["tokens_per_second"] > 0
    resized, sx, sy = fit_for_model(page(), MAX_PIXELS)
    assert details["image_size_sent"] == [resized.width, resized.height]
    assert details["scale"] == pytest.approx([sx, sy])


@pytest.mark.parametrize("mode", prompts.MODES)
def test_it_sends_the_exact_prompt_and_one_pad_token_per_28_pixels(cpu, sent, mode):
    bbox = [40, 40, 560, 120] if mode == prompts.GROUNDING else None
    question = "What is the total on this invoice?" if mode == prompts.QUESTION else None
    result = cpu.ocr(page(), mode, never, bbox=bbox, question=question)

    tokenizer = cpu._processor.tokenizer
    ids = sent[0]["input_ids"][0].tolist()
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    box = result.details.get("bbox_sent")
    assert prompts.prompt_for(mode, box, size=page().size, question=question) in text
    # A question goes with dots.mocr's system prompt (dots_mocr/parser.py), the other tasks without one.
    assert ("<|system|>You are a helpful assistant.<|endofsystem|>" in text) == (mode == prompts.QUESTION)
    assert "<|img|><|imgpad|>" in text and "<|imgpad|><|endofimg|>" in text
    assert text.endswith("<|assistant|>")
    width, height = result.details["image_size_sent"]
    pad_id = tokenizer.convert_tokens_to_ids("<|imgpad|>")
    assert ids.count(pad_id) == (height // 28) * (width // 28) == result.details["image_tokens"]
    assert result.details["prompt_tokens"] == len(ids)


def test_it_maps_the_grounding_box_into_the_image_sent(cpu):
    result = cpu.ocr(page(), prompts.GROUNDING, never, bbox=[40, 40, 560, 120])
    sx, sy = result.details["scale"]
    assert result.details["bbox_sent"] == [round(40 / sx), round(40 / sy), round(560 / sx), round(120 / sy)]


def test_max_pixels_in_the_plan_caps_the_image_sent(cpu, tiny_model):
    big = page((2400, 1800))
    try:
        cpu.load(plan_for(tiny_model, max_pixels=100 * 28 * 28))
        result = cpu.ocr(big, prompts.TEXT_ONLY, never)
    finally:
        cpu.load(plan_for(tiny_model))
    width, height = result.details["image_size_sent"]
    assert width * height <= 100 * 28 * 28
    assert result.details["image_tokens"] <= 100
    assert width % 28 == 0 and height % 28 == 0
    assert result.details["scale"] == pytest.approx([2400 / width, 1800 / height])


def test_max_new_tokens_in_the_plan_bounds_the_answer(cpu, tiny_model):
    try:
        cpu.load(plan_for(tiny_model, max_new_tokens=3))
        result = cpu.ocr(page(), prompts.TEXT_ONLY, never)
    finally:
        cpu.load(plan_for(tiny_model))
    assert result.details["new_tokens"] == 3


def test_it_reads_the_same_page_the_same_way_twice(cpu):
    first = cpu.ocr(page(), prompts.LAYOUT_ALL, never)
    second = cpu.ocr(page(), prompts.LAYOUT_ALL, never)
    assert first.text == second.text


def test_it_keeps_the_model_loaded_between_jobs(cpu, tiny_model):
    model = cpu._model
    cpu.load(plan_for(tiny_model))
    assert cpu._model is model


def test_it_refuses_bad_modes_and_boxes(cpu):
    with pytest.raises(BackendError, match="box"):
        cpu.ocr(page(), prompts.GROUNDING, never)
    with pytest.raises(BackendError, match="takes no box"):
        cpu.ocr(page(), prompts.TEXT_ONLY, never, bbox=[1, 2, 3, 4])
    with pytest.raises(BackendError, match="Unknown reading mode"):
        cpu.ocr(page(), "poetry", never)


# -- the bf16 cast in dots.ocr's vision tower ------------------------------------------------------


def test_it_undoes_the_remote_codes_bf16_cast_on_the_cpu(cpu):
    inputs = cpu._processor(text=["<|imgpad|>"], images=[page((112, 84))], return_tensors="pt")
    tower = cpu._model.vision_tower
    with torch.inference_mode():
        # Called directly, the tower's own code casts the float32 pixels to bf16 and fails.
        with pytest.raises(RuntimeError, match="BFloat16|should be the same"):
            tower.forward(inputs["pixel_values"], inputs["image_grid_thw"])
        embeddings = tower(inputs["pixel_values"], inputs["image_grid_thw"])
    assert embeddings.dtype == torch.float32
    assert embeddings.shape[0] == (84 // 28) * (112 // 28)


def test_the_cpu_backend_also_runs_in_bf16(tiny_model):
    backend = CpuBackend()
    backend.load(plan_for(tiny_model, dtype="bfloat16", max_new_tokens=3))
    try:
        assert backend._hooks == []  # a bf16 tower takes the remote code's own cast
        result = backend.ocr(page(), prompts.TEXT_ONLY, never)
    finally:
        backend.unload()
    assert result.details["quantization"] == "bfloat16"
    assert result.details["new_tokens"] == 3


# -- cancelling ------------------------------------------------------------------------------------


def test_cancel_after_n_tokens_stops_generation(cpu, sent, tiny_model):
    # cancel() is asked once before the page, once before each of the tower's 2 blocks, then
    # every CHECK_EVERY new tokens (one host copy each): yes on call 3 + 2 stops after two looks.
    cancel = Counter(at=3 + 2)
    try:
        cpu.load(plan_for(tiny_model, max_new_tokens=40))
        with pytest.raises(JobCancelled):
            cpu.ocr(page(), prompts.LAYOUT_ALL, cancel)
    finally:
        cpu.load(plan_for(tiny_model))
    assert cancel.calls == 5
    assert sent[0]["new_tokens"] == 2 * CHECK_EVERY


def test_cancel_before_the_page_runs_nothing(cpu, sent):
    with pytest.raises(JobCancelled):
        cpu.ocr(page(), prompts.TEXT_ONLY, lambda: True)
    assert sent == []


def test_cancel_is_seen_inside_the_vision_tower(cpu, sent):
    cancel = Counter(at=2)
    with pytest.raises(JobCancelled):
        cpu.ocr(page(), prompts.TEXT_ONLY, cancel)
    assert cancel.calls == 2
    assert sent == []
    assert cpu.ocr(page(), prompts.TEXT_ONLY, never).text  # the next page reads as usual


# -- memory ----------------------------------------------------------------------------------------


def test_cuda_out_of_memory_becomes_OutOfMemory(cpu, monkeypatch):
    def out_of_memory(**kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cpu._model, "generate", out_of_memory)
    with pytest.raises(OutOfMemory) as caught:
        cpu.ocr(page(), prompts.LAYOUT_ALL, never)
    assert isinstance(caught.value, results.OutOfMemory)  # what the worker's fallback looks for
    resized, _, _ = fit_for_model(page(), MAX_PIXELS)
    assert caught.value.image_size == [resized.width, resized.height]
    assert caught.value.image_tokens == (resized.width // 28) * (resized.height // 28)
    assert "out of memory" in str(caught.value)
    assert cpu.loaded


def test_unload_frees_the_model(tiny_model):
    backend = CpuBackend()
    backend.load(plan_for(tiny_model))
    assert backend.loaded
    model_ref = weakref.ref(backend._model)
    processor_ref = weakref.ref(backend._processor)
    backend.ocr(page(), prompts.TEXT_ONLY, never)

    backend.unload()
    gc.collect()

    assert not backend.loaded
    assert model_ref() is None
    assert processor_ref() is None
    with pytest.raises(BackendError, match="not loaded"):
        backend.ocr(page(), prompts.TEXT_ONLY, never)


def test_memory_estimates():
    assert CpuBackend().memory_estimate() == 0
    assert TransformersBackend().memory_estimate() == 0


# -- what is refused -------------------------------------------------------------------------------


def test_a_missing_model_folder_names_fetch_model(tmp_path):
    with pytest.raises(BackendError, match="python manage.py fetch_model"):
        CpuBackend().load(plan_for(tmp_path / "no-such-model"))


def test_a_hub_model_that_is_not_downloaded_names_fetch_model(tmp_path):
    plan = plan_for("rednote-hilab/dots.ocr", revision=PIN, cache_dir=str(tmp_path / "hf-cache"))
    with pytest.raises(BackendError, match="python manage.py fetch_model") as caught:
        CpuBackend().load(plan)
    assert PIN in str(caught.value)


@pytest.mark.parametrize("revision", [None, "", "main", "v1.0", "0123456", PIN.upper()])
def test_an_unpinned_hub_model_is_refused(revision):
    with pytest.raises(BackendError, match="40-character commit hash"):
        model_source({"model": "rednote-hilab/dots.ocr", "revision": revision})


def test_a_pinned_hub_model_and_a_local_folder_are_accepted(tiny_model):
    hub = model_source({"model": "rednote-hilab/dots.ocr", "revision": PIN, "cache_dir": "/srv/hf"})
    assert (hub.location, hub.revision, hub.cache_dir, hub.local) == (
        "rednote-hilab/dots.ocr",
        PIN,
        "/srv/hf",
        False,
    )
    local = model_source({"model": str(tiny_model)})
    assert local.local and local.revision is None


def test_a_model_folder_without_its_image_processor_is_refused(tiny_model, tmp_path):
    broken = shutil.copytree(tiny_model, tmp_path / "tiny_dots_broken")
    (broken / "preprocessor_config.json").unlink()
    backend = CpuBackend()
    with pytest.raises(BackendError, match="fetch_model"):
        backend.load(plan_for(broken))
    assert not backend.loaded


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA GPU")
@pytest.mark.parametrize("quantization", ["int8", "nf4"])
def test_8bit_and_4bit_without_cuda_are_refused_clearly(tiny_model, quantization):
    with pytest.raises(BackendError, match="bitsandbytes, which needs a CUDA GPU"):
        TransformersBackend().load(plan_for(tiny_model, backend="transformers", quantization=quantization))
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        CpuBackend().load(plan_for(tiny_model, quantization=quantization))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA GPU")
def test_the_transformers_backend_without_cuda_points_to_the_cpu_backend(tiny_model):
    backend = TransformersBackend()
    with pytest.raises(BackendError, match="cpu backend"):
        backend.load(plan_for(tiny_model, backend="transformers", quantization="bf16", dtype="bfloat16"))
    assert not backend.loaded


def test_the_real_size_fixture_has_dots_ocrs_parameter_count(tmp_path):
    """The stand-in's modules at REAL_SIZES add up to the parameter count the planner uses."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path / "dots_real_size"
    write_code_and_config(folder, REAL_SIZES)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    vision = sum(p.numel() for p in model.vision_tower.parameters())
    assert vision == DOTS_OCR.vision_params
    assert sum(p.numel() for p in model.parameters()) - vision == DOTS_OCR.lm_params


# -- a document's pages in batches, the loop guard, fast decoding ---------------------------------


def pages_of(n: int) -> list[tuple[int, Image.Image]]:
    """Pages of different sizes: their prompts differ in length, so the batch is padded."""
    return [(i, page((280 + 56 * i, 280))) for i in range(1, n + 1)]


def test_batched_pages_read_as_each_page_alone_and_come_back_under_their_own_keys(cpu, tiny_model, sent):
    alone = [cpu.ocr(image, prompts.TEXT_ONLY, never) for _, image in pages_of(3)]
    cpu.load(plan_for(tiny_model, pages_at_once=3))
    try:
        events = list(cpu.read_pages(pages_of(3), prompts.TEXT_ONLY, never))
    finally:
        cpu.load(plan_for(tiny_model))

    done = {e.key: e.result for e in events if e.kind == DONE}
    assert [done[n].text for n in (1, 2, 3)] == [a.text for a in alone]
    assert [done[n].details["image_size_sent"] for n in (1, 2, 3)] == [a.details["image_size_sent"] for a in alone]
    assert [done[n].details["prompt_tokens"] for n in (1, 2, 3)] == [a.details["prompt_tokens"] for a in alone]
    batch = sent[-1]["input_ids"]
    assert len(sent) == 4 and batch.shape[0] == 3  # the three pages in one generate call
    pad = cpu._processor.tokenizer.pad_token_id
    assert batch[0, 0] == pad and batch[2, 0] != pad  # the shorter prompts are padded on the left
    assert {done[n].details["batch"] for n in (1, 2, 3)} == {3}


def test_out_of_memory_halves_the_batch_and_tries_again(cpu, tiny_model, monkeypatch):
    real_generate = cpu._model.generate
    sizes = []

    def generate(**kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_generate(**kwargs)

    monkeypatch.setattr(cpu._model, "generate", generate)
    cpu.load(plan_for(tiny_model, pages_at_once=2, max_new_tokens=2))
    try:
        events = list(cpu.read_pages(pages_of(2), prompts.TEXT_ONLY, never))
    finally:
        cpu.load(plan_for(tiny_model))
    assert sizes == [2, 1, 1]
    assert sorted(e.key for e in events if e.kind == DONE) == [1, 2]


def looping(model, token_ids: list[int]):
    """Make the model write `token_ids` over and over (a model stuck in a loop), through the real
    generate loop: its logits are replaced after its own forward pass."""
    real_forward = model.forward

    @functools.wraps(real_forward)  # generate reads the signature to check its arguments
    def forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        step = kwargs["attention_mask"].shape[1]
        logits = torch.full_like(out.logits, -1e9)
        logits[:, -1, token_ids[step % len(token_ids)]] = 0
        out.logits = logits
        return out

    return forward


def test_a_looping_page_stops_early_and_keeps_its_text(cpu, tiny_model, sent, monkeypatch):
    tokenizer = cpu._processor.tokenizer
    cycle = tokenizer("report table", add_special_tokens=False).input_ids
    monkeypatch.setattr(cpu._model, "forward", looping(cpu._model, cycle))
    cpu.load(plan_for(tiny_model, max_new_tokens=400, loop_window=24, loop_ngram=8))
    try:
        result = cpu.ocr(page(), prompts.LAYOUT_ALL, never)
    finally:
        cpu.load(plan_for(tiny_model))

    stopped = result.details["stopped"]
    assert stopped["reason"] == REPEATING and stopped["period"] == len(cycle)
    assert stopped["tokens"] == 24 and result.details["new_tokens"] == 24
    assert sent[0]["new_tokens"] <= 24 + CHECK_EVERY  # generation itself stopped, not only the text
    assert "report table" in result.text and result.text in tokenizer.decode(cycle * 30)  # the loop, kept
    assert not result.details["hit_token_limit"]
    page_read = parsed_page(result, "cpu", prompts.LAYOUT_ALL, (600, 800))
    assert page_read.warnings[0].startswith("Stopped: repeating output after 24 tokens")


def test_the_page_time_limit_stops_generation_in_transformers(cpu, tiny_model, sent):
    cpu.load(plan_for(tiny_model, max_new_tokens=2000, loop_window=0, page_time_limit=1))
    try:
        result = cpu.ocr(page(), prompts.TEXT_ONLY, never)
    finally:
        cpu.load(plan_for(tiny_model))
    assert result.details["stopped"]["reason"] == TIME_LIMIT
    assert sent[0]["new_tokens"] < 2000 and result.details["new_tokens"] == result.details["stopped"]["tokens"]


def test_fast_decoding_gives_the_same_tokens_as_the_plain_path(cpu, tiny_model, caplog):
    cpu.load(plan_for(tiny_model, max_new_tokens=8))
    try:
        plain = cpu.ocr(page(), prompts.TEXT_ONLY, never)
        cpu.load(plan_for(tiny_model, max_new_tokens=8, fast_decode=True))
        fast = cpu.ocr(page(), prompts.TEXT_ONLY, never)
    finally:
        cpu.load(plan_for(tiny_model))
    assert fast.text == plain.text and fast.details["new_tokens"] == plain.details["new_tokens"]
    # Where the static cache cannot run, the plain path ran and the reason was logged.
    assert fast.details["fast_decode"] or fast_decode_broken()


def test_the_tiny_benchmark_batches_the_pages_and_keeps_their_order(cpu, tiny_model):
    spec = importlib.util.spec_from_file_location("throughput_bench", ROOT / "bench" / "throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    try:
        out = bench.transformers_run(
            argparse.Namespace(batch=2), cpu, plan_for(tiny_model, max_new_tokens=3), [p for _, p in pages_of(2)], "cpu"
        )
    finally:
        cpu.load(plan_for(tiny_model))
    assert out["pages_at_once"] == 2 and out["order_kept"] and out["pages_with_the_same_text"] == 2
    assert out["speedup"] > 0 and out["new_tokens_per_page"] == 3


# -- the transformers pin ----------------------------------------------------------------------------

NEWER_PROCESSOR = """
    def __init__(self, image_processor=None, tokenizer=None, video_processor=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template)
"""


def test_remote_code_written_for_a_newer_transformers_is_refused_naming_the_pin(tiny_model, tmp_path):
    """Remote code whose processor hands Qwen2.5-VL's a video processor (transformers 4.52+) cannot load on
    the pinned 4.51.3; the worker says so and points to vLLM instead of failing with a bare TypeError.
    Run in a child process: the remote code registers its processor class for every later load."""
    import json
    import os
    import subprocess
    import sys

    folder = tmp_path / "tiny_dots_newer_processor"  # its own name: transformers caches remote code by folder
    shutil.copytree(tiny_model, folder)
    code = folder / "configuration_dots.py"
    old = """
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
"""
    assert old in code.read_text()
    code.write_text(code.read_text().replace(old, NEWER_PROCESSOR))
    child = (
        "import json, sys\n"
        "from core.results import BackendError\n"
        "from workers.backends.transformers_backend import CpuBackend\n"
        "try:\n"
        "    CpuBackend().load(json.loads(sys.argv[1]))\n"
        "except BackendError as exc:\n"
        "    print('REFUSED:', exc)\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps(plan_for(folder))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED: The processor code of" in done.stdout
    assert "does not fit transformers 4.51.3 (the version ocrdash pins)" in done.stdout
    assert "Serve this model with the vLLM backend." in done.stdout
