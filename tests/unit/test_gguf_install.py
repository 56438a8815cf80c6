"""How `python3 ocrdash.py` installs llama.cpp (the gguf extra): built portable unless the admin
says otherwise, with CUDA only where a GPU and nvcc are, and only when it is wanted."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT


@pytest.fixture
def launcher():
    spec = importlib.util.spec_from_file_location("ocrdash_launcher", ROOT / "ocrdash.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_is_portable_and_cuda_only_with_a_gpu_and_nvcc(launcher, monkeypatch):
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    monkeypatch.setattr(launcher, "gpu_visible", lambda: False)
    assert launcher.gguf_build_env()["CMAKE_ARGS"] == "-DGGML_NATIVE=OFF"
    monkeypatch.setattr(launcher, "gpu_visible", lambda: True)
    monkeypatch.setattr(launcher.shutil, "which", lambda name: "/usr/bin/nvcc")
    assert launcher.gguf_build_env()["CMAKE_ARGS"] == "-DGGML_NATIVE=OFF -DGGML_CUDA=on"
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_VULKAN=on")
    assert launcher.gguf_build_env()["CMAKE_ARGS"] == "-DGGML_VULKAN=on"  # the admin's own wins


def test_the_extra_pins_llama_cpp_python_and_gguf_files_in_the_model_folder_ask_for_it(launcher, monkeypatch, tmp_path):
    assert "llama-cpp-python==0.3.36" in launcher.requirements(["gguf"])
    monkeypatch.setenv("OCRDASH_MODEL_DIR", str(tmp_path))
    assert not launcher.gguf_files_present()
    (tmp_path / "gguf" / "dots.ocr").mkdir(parents=True)
    (tmp_path / "gguf" / "dots.ocr" / "dots.ocr-Q8_0.gguf").write_bytes(b"GGUF")
    assert launcher.gguf_files_present()
