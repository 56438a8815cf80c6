"""Backends by name. Each is imported only when asked for: most pull in heavy libraries."""

from __future__ import annotations

from workers.backends.base import OcrBackend

AVAILABLE = ("rapidocr",)


def create_backend(name: str) -> OcrBackend:
    if name == "rapidocr":
        from workers.backends.rapidocr_backend import RapidOcrBackend

        return RapidOcrBackend()
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(AVAILABLE)}")
