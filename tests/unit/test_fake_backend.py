"""The shared fake backend (tests/doubles/fake_backend.py) keeps the interface of the real ones, so
a test that passes on it exercises the worker as the real backends drive it."""

from __future__ import annotations

import inspect

import pytest
from PIL import Image

from core.results import BackendError, JobCancelled, OutOfMemory
from tests.doubles.fake_backend import FakeBackend, FakeBackends, numbered
from workers.backends.base import OcrBackend

PAGE = Image.new("RGB", (40, 30), "white")


def never() -> bool:
    return False


@pytest.mark.parametrize("method", ["load", "unload", "ocr", "memory_estimate"])
def test_each_method_has_the_interfaces_signature(method):
    assert inspect.signature(getattr(FakeBackend, method)) == inspect.signature(getattr(OcrBackend, method))


def test_it_records_each_call_with_its_box_and_what_the_backend_was_loaded_with():
    fakes = FakeBackends(answer=numbered)
    backend = fakes.create("transformers")
    backend.load({"backend": "transformers", "max_pixels": 1_000_000})

    first = backend.ocr(PAGE, "layout_all", never)
    second = backend.ocr(PAGE, "grounding", never, bbox=[1, 2, 30, 20])

    assert (first.text, second.text) == ("text of call 1", "text of call 2")
    assert [(c.number, c.backend, c.size, c.mode, c.bbox) for c in fakes.calls] == [
        (1, "transformers", (40, 30), "layout_all", None),
        (2, "transformers", (40, 30), "grounding", [1, 2, 30, 20]),
    ]
    assert fakes.calls[0].max_pixels == 1_000_000 and backend.calls == fakes.calls


def test_it_misbehaves_as_asked_and_notices_a_cancel():
    fakes = FakeBackends(oom=lambda call: call.number == 1, fail={2})
    backend = fakes.create("rapidocr")
    backend.load({"backend": "rapidocr"})

    with pytest.raises(OutOfMemory):
        backend.ocr(PAGE, "text", never)
    with pytest.raises(BackendError, match="could not read call 2"):
        backend.ocr(PAGE, "text", never)
    with pytest.raises(JobCancelled):
        backend.ocr(PAGE, "text", lambda: True)
    assert len(fakes.calls) == 2  # a cancelled page was never read


def test_a_name_the_registry_does_not_know_is_refused_as_the_worker_refuses_it():
    with pytest.raises(ValueError, match="unknown backend"):
        FakeBackends().create("tesseract")
