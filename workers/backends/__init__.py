"""Backends by name, built from the registry (core/backends.py). Each module is imported only when
its backend is asked for: most pull in heavy libraries."""

from __future__ import annotations

import importlib

from core import backends
from workers.backends.base import OcrBackend


def create_backend(name: str) -> OcrBackend:
    """A new, unloaded backend; ValueError naming the known ones for a name the registry lacks."""
    module, _, cls = backends.get(name).factory.partition(":")
    return getattr(importlib.import_module(module), cls)()
