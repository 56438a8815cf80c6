"""Fake OCR backends for the worker: the interface of workers.backends.base.OcrBackend exactly
(tests/unit/test_fake_backend.py holds them to it), with what each did recorded and the edges of the
real ones on request: CUDA out of memory, an engine error, a cancel noticed between steps.

    fakes = FakeBackends(answer=numbered, fail={2})
    holder = tasks.worker_holder(create=fakes.create)   # or tests/web/conftest.py's fake_worker

Every backend a FakeBackends makes shares its records: `created` (the backends, in order) and
`calls` (every page read, numbered from 1 across them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core import backends
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, OutOfMemory, ProgressCallback
from workers.backends.base import OcrBackend
from workers.backends.pagereading import PageEvent, PageInput, read_concurrently


@dataclass
class Call:
    """One page a fake backend was asked to read."""

    number: int  # across every backend of the same FakeBackends, from 1
    backend: str
    size: tuple[int, int]  # the image's, in pixels
    mode: str
    bbox: list[float] | None
    args: dict[str, Any] = field(default_factory=dict)  # what the backend was loaded with
    page: Any = None  # the page's key when it came through read_pages (the worker: its number)
    # The cancel check the page was given (an answer that takes its time polls it).
    cancel: Any = field(default=None, repr=False, compare=False)
    question: str | None = None

    @property
    def max_pixels(self) -> int | None:
        return self.args.get("max_pixels")


Answer = Callable[[Call, Image.Image], OcrResult]


def read_by_name(call: Call, image: Image.Image) -> OcrResult:
    """ "read by <backend>", with a GPU peak the worker records."""
    return OcrResult(text=f"read by {call.backend}", details={"peak_gpu_bytes": 123})


def numbered(call: Call, image: Image.Image) -> OcrResult:
    """ "text of call N": each page's text says which call read it."""
    return OcrResult(text=f"text of call {call.number}", details={"seconds": 0.01})


def layout_answer(template: str) -> Answer:
    """dots.ocr's layout JSON from `template`, PAGE replaced by the call's number, sent at the page's size."""

    def answer(call: Call, image: Image.Image) -> OcrResult:
        raw = template.replace("PAGE", str(call.number))
        return OcrResult(text=raw, raw=raw, details={"image_size_sent": list(image.size)})

    return answer


HOSTILE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" onload="document.title=\'svg-ran\'">'
    "<script>document.title='svg-ran'</script>"
    '<foreignObject width="10" height="10"><iframe src="https://example.com/"></iframe></foreignObject>'
    '<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>'
    '<a href="javascript:alert(1)"><text x="4" y="14" font-size="12">Total 42</text></a>'
    '<path d="M0 {h} L{w} 0" stroke="#0057b8" stroke-width="2'
)


def task_answer(call: Call, image: Image.Image) -> OcrResult:
    """What a dots model answers for the call's task, in the documented formats, at the sent size:
    layout JSON (web pages too), text, scene-text lines, an SVG cut off at the token limit that
    carries script, an event handler, a foreignObject and a javascript: link (HOSTILE_SVG)."""
    w, h = image.size
    cells = [
        {"bbox": [2, 2, w - 2, h // 3], "category": "Title", "text": "# Invoice"},
        {"bbox": [2, h // 2, w - 2, h - 2], "category": "Text", "text": "Total: 42 EUR"},
    ]
    truncated = False
    if call.mode in ("layout_all", "web_parsing"):
        raw = json.dumps(cells)
    elif call.mode == "layout_only":
        raw = json.dumps([{k: v for k, v in c.items() if k != "text"} for c in cells])
    elif call.mode == "scene_spotting":
        raw = (
            f"(2, 2), ({w - 3}, 4), ({w - 3}, {h // 3}), (2, {h // 3 - 2}) OPEN\n"
            f"(3, {h // 2}), ({w - 2}, {h // 2}), ({w - 2}, {h - 2}), (3, {h - 2}) 24 HOURS"
        )
    elif call.mode == "image_to_svg":
        raw, truncated = HOSTILE_SVG.format(w=w, h=h), True
    elif call.mode == "question":
        raw = f"The total is 42 EUR. (asked: {call.question})"
    else:
        raw = "Invoice\nTotal: 42 EUR"
    details = {"image_size_sent": [w, h], "truncated": truncated}
    return OcrResult(text=raw, raw=raw, details=details)


def always(result: OcrResult) -> Answer:
    """The same result for every page."""
    return lambda call, image: result


class FakeBackends:
    """Makes fake backends (`create`, for a BackendHolder) that share their records and behaviour.

    With `pages_at_once` above 1 in the plan it is loaded with, a fake reads a document's pages in
    threads, that many at once, as the vLLM backend does (workers/backends/pagereading.py); the
    answer then runs in those threads.

    answer(call, image): what a page reads as. oom(call): True makes that page run out of CUDA
    memory. fail: the call numbers that raise a BackendError. on_call(number): run before each
    answer (a test cancels the job there, or looks at a page meanwhile).
    """

    def __init__(
        self,
        *,
        answer: Answer = read_by_name,
        oom: Callable[[Call], bool] = lambda call: False,
        fail: Collection[int] = (),
        on_call: Callable[[int], None] | None = None,
    ) -> None:
        self.answer = answer
        self.oom = oom
        self.fail = set(fail)
        self.on_call = on_call
        self.created: list[FakeBackend] = []
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def create(self, name: str) -> FakeBackend:
        backends.get(name)  # a name the registry does not know is refused, as create_backend refuses it
        backend = FakeBackend(name, self)
        self.created.append(backend)
        return backend

    def named(self, name: str) -> list[FakeBackend]:
        return [b for b in self.created if b.name == name]


class FakeBackend(OcrBackend):
    def __init__(self, name: str, fakes: FakeBackends) -> None:
        self.name = name
        self._fakes = fakes
        self._loaded = False
        self.loads: list[dict[str, Any]] = []
        self.unloads = 0
        self.calls: list[Call] = []
        self._keys: dict[int, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        self.loads.append(plan)
        self._loaded = True

    def unload(self) -> None:
        self.unloads += 1
        self._loaded = False

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> OcrResult:
        if not self._loaded:
            raise BackendError(f"The {self.name} backend is not loaded.")
        if cancel():
            raise JobCancelled()
        fakes = self._fakes
        with fakes.lock:
            call = Call(
                number=len(fakes.calls) + 1,
                backend=self.name,
                size=image.size,
                mode=mode,
                bbox=list(bbox) if bbox is not None else None,
                args=dict(self.loads[-1]),
                page=self._keys.get(id(image)),
                cancel=cancel,
                question=question,
            )
            fakes.calls.append(call)
            self.calls.append(call)
        if fakes.on_call is not None:
            fakes.on_call(call.number)
        if fakes.oom(call):
            raise OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        if call.number in fakes.fail:
            raise BackendError(f"The engine could not read call {call.number}.")
        return fakes.answer(call, image)

    def pages_at_once(self) -> int:
        return max(1, int((self.loads[-1] if self.loads else {}).get("pages_at_once") or 1))

    def read_pages(
        self,
        pages: Iterable[PageInput],
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> Iterator[PageEvent]:
        def noted():
            for key, image in pages:
                self._keys[id(image)] = key
                yield key, image

        def read_one(image, check):
            return self.ocr(image, mode, check, bbox=bbox, question=question)

        return read_concurrently(noted(), read_one, cancel, self.pages_at_once())
