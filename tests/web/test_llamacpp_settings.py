"""The admin's settings and the GGUF folder → llama.cpp's place in the plan and the files its
load() receives."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest

from core import gguf_files
from core.modelfacts import GiB
from ocr_app import backendconfig
from ocr_app.models import BackendSettings

pytestmark = pytest.mark.django_db
INSTALLED = importlib.util.find_spec("llama_cpp") is not None


def small_card():
    device = SimpleNamespace(index=0, name="small card", total_bytes=4 * GiB, free_bytes=int(1.5 * GiB),
                             compute_capability=(8, 6))  # fmt: skip
    return SimpleNamespace(devices=[device], error=None)


def put_pair(folder, quantization):
    pair = gguf_files.gguf_model(gguf_files.DEFAULT_MODEL).pair(quantization)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (pair.lm_file, pair.mmproj_file):
        (folder / name).write_bytes(b"GGUF")
    return pair


def test_without_gguf_files_llamacpp_is_left_out_with_the_command_that_fetches_them(settings, tmp_path):
    settings.OCRDASH_MODEL_DIR = tmp_path
    why = backendconfig.llamacpp_unavailable(BackendSettings.load())
    assert why is not None
    assert ("fetch_model --gguf" in why) if INSTALLED else ("--with-gguf" in why)


def test_the_files_copied_into_the_folder_are_planned_and_handed_to_the_backend(settings, tmp_path, monkeypatch):
    settings.OCRDASH_MODEL_DIR = tmp_path
    cfg = BackendSettings.load()
    cfg.backend = "llamacpp"
    cfg.save()
    pair = put_pair(backendconfig.gguf_dir(cfg), gguf_files.Q4_K_M)
    assert backendconfig.gguf_quantizations(cfg) == (gguf_files.Q4_K_M,)
    if not INSTALLED:  # the files are what this test is about; the package is the other test's
        monkeypatch.setattr(backendconfig, "llamacpp_unavailable", lambda cfg: None)
    plan = backendconfig.plan_now(cfg, small_card())
    assert plan.backend == "llamacpp" and plan.quantization == gguf_files.Q4_K_M and 0 < plan.gpu_layers < 29
    args = backendconfig.load_args(plan, cfg, "")
    assert args["lm_path"] == str(tmp_path / "gguf" / "dots.ocr" / pair.lm_file)
    assert args["mmproj_path"].endswith(pair.mmproj_file) and args["gpu_layers"] == plan.gpu_layers
