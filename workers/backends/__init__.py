"""Backends by name. Each is imported only when asked for: most pull in heavy libraries."""

from __future__ import annotations

from workers.backends.base import OcrBackend

AVAILABLE = ("vllm", "transformers", "cpu", "rapidocr")


def create_backend(name: str) -> OcrBackend:
    if name == "rapidocr":
        from workers.backends.rapidocr_backend import RapidOcrBackend

        return RapidOcrBackend()
    if name == "vllm":
        from workers.backends.vllm_backend import VllmBackend

        return VllmBackend()
    if name == "transformers":
        from workers.backends.transformers_backend import TransformersBackend

        return TransformersBackend()
    if name == "cpu":
        from workers.backends.transformers_backend import CpuBackend

        return CpuBackend()
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(AVAILABLE)}")
