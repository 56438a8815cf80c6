"""`python manage.py plan`: text and JSON for a described card or this machine's GPU (no database)."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core import gpu
from core.gpu import GpuDevice, GpuSnapshot
from core.modelfacts import GiB

SEED = ["--total", "11.94GiB", "--free", "5.81GiB", "--cc", "8.6"]


def run(*args):
    out = io.StringIO()
    call_command("plan", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def run_refused(*args):
    out = io.StringIO()
    with pytest.raises(CommandError) as error:
        call_command("plan", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue(), str(error.value)


def test_it_prints_the_reasons_first_then_the_plan_for_the_seed_card():
    text = run(*SEED)
    lines = text.splitlines()
    assert lines[0] == "Why:"
    assert "5.81 GiB free of 11.94 GiB" in lines[1]
    assert text.index("vLLM bf16 needs") < text.index("Plan: transformers 4-bit (nf4) on GPU 0")
    assert "quantization" in text and "nf4" in text
    assert "max_memory" in text
    assert "on CUDA out of memory  llamacpp:q8_0 → llamacpp:q4_k_m → rapidocr" in text


def test_it_prints_the_seed_plan_as_json():
    data = json.loads(run(*SEED, "--json"))
    assert data["backend"] == "transformers"
    assert data["quantization"] == "nf4"
    assert data["max_new_tokens"] == 24_000
    assert 3_885_504 <= data["max_pixels"] < 11_289_600  # an A4 page at 200 dpi fits
    assert data["reasons"][0].startswith("GPU 0 (hypothetical card, compute capability 8.6): 5.81 GiB free")
    assert data["fallbacks"] == ["llamacpp:q8_0", "llamacpp:q4_k_m", "rapidocr"]


def test_json_for_a_vllm_plan_has_its_launch_parameters():
    data = json.loads(run("--total", "24GB", "--free", "23GB", "--cc", "8.9", "--json"))
    assert data["backend"] == "vllm"
    assert 0 < data["gpu_memory_utilization"] < 1
    assert data["max_model_len"] == data["max_image_tokens"] + 512 + data["max_new_tokens"]
    assert data["mm_processor_kwargs"]["max_pixels"] == data["max_pixels"]
    assert "--gpu-memory-utilization" in data["vllm_args"]


def test_the_text_of_a_vllm_plan_shows_the_serve_flags():
    text = run("--total", "24", "--free", "23.5")
    assert "gpu_memory_utilization" in text
    assert "vllm serve flags        --gpu-memory-utilization" in text
    assert """--mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": 11289600}'""" in text


def test_the_settings_flags_change_the_plan():
    data = json.loads(run("--total=24GiB", "--free=23GiB", "--no-vllm", "--max-new-tokens=4096", "--json"))
    assert data["backend"] == "transformers" and data["max_new_tokens"] == 4096
    data = json.loads(run("--total", "4GiB", "--free", "1GiB", "--allow-cpu", "--ram", "64GiB", "--json"))
    assert data["backend"] == "llamacpp" and data["gpu_layers"] == 0 and data["memory"] == "ram"
    data = json.loads(run("--total", "4GiB", "--free", "1GiB", "--allow-cpu", "--ram", "64GiB", "--no-gguf", "--json"))
    assert data["backend"] == "cpu" and data["dtype"] == "float32"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--total", "twelve", "--free", "5"], "--total: 'twelve' is not a size"),
        (["--total", "12GB", "--free", "5 parsecs"], "--free: '5 parsecs' is not a size"),
        (["--total", "12GB"], "needs both --total and --free"),
        (["--total", "6GB", "--free", "8GB"], "cannot be more than --total"),
        (["--total", "0", "--free", "0"], "--total must be more than zero"),
        (["--total", "12", "--free", "6", "--cc", "eight"], "--cc: 'eight' is not a compute capability"),
        (["--cc", "8.6"], "give --total and --free with it"),
        (["--total", "12", "--free", "6", "--max-pixels", "100"], "at least 3,136"),
    ],
    ids=["bad-total", "bad-unit", "no-free", "free-above-total", "zero-total", "bad-cc", "cc-alone", "small"],
)
def test_bad_input_is_a_clear_command_error(args, message):
    _, error = run_refused(*args)
    assert message in error


def test_a_forced_backend_that_does_not_fit_is_refused_with_the_reason():
    out, error = run_refused(*SEED, "--backend", "vllm")
    assert "the vllm backend cannot start here" in error
    assert "vLLM bf16 needs" in error and "4.7 GiB of memory available" in error
    assert "- → vllm cannot start here; refusing rather than starting it to crash." in out


def test_a_refusal_in_json_says_refused():
    out, _ = run_refused(*SEED, "--backend", "vllm", "--json")
    data = json.loads(out)
    assert data["refused"] is True and data["backend"] == "vllm"
    assert any("does not fit" in r for r in data["reasons"])


def test_a_forced_backend_that_fits_is_planned():
    data = json.loads(run("--total", "80GiB", "--free", "70GiB", "--cc", "9.0", "--backend=vllm", "--json"))
    assert data["variant"] == "vllm:bf16"


@pytest.mark.django_db
def test_without_a_card_it_plans_for_this_machines_gpu(monkeypatch):
    from ocr_app import backendconfig

    # As on a GPU server where dots.ocr is installed and downloaded.
    monkeypatch.setattr(backendconfig, "in_process_unavailable", lambda cfg: None)
    device = GpuDevice(
        index=0,
        uuid="GPU-0",
        name="NVIDIA GeForce RTX 3060",
        total_bytes=int(11.94 * GiB),
        used_bytes=int(6.13 * GiB),
        free_bytes=int(5.81 * GiB),
        compute_capability=(8, 6),
    )
    snap = GpuSnapshot(taken_at=0.0, devices=(device,))
    monkeypatch.setattr(gpu, "read_snapshot", lambda: snap, raising=False)
    data = json.loads(run("--json"))
    assert data["device_name"] == "NVIDIA GeForce RTX 3060"
    assert data["backend"] == "transformers"


@pytest.mark.django_db
def test_a_machine_without_a_gpu_gets_rapidocr_and_the_reason(monkeypatch):
    snap = GpuSnapshot(taken_at=0.0, error="No NVIDIA GPU visible: jobs run on the CPU.")
    monkeypatch.setattr(gpu, "read_snapshot", lambda: snap, raising=False)
    text = run()
    assert "No NVIDIA GPU visible: jobs run on the CPU." in text
    assert "Plan: rapidocr" in text
