"""How a backend reads the pages of one document: one after another, or several at once.

A document is a sequence of page images from a page source: `(key, image)` pairs, where `key` is
whatever the caller names the page by (the worker: its page number) and `image` is the page, or
the exception that kept it from being made (a PDF page that would not render). The reading
yields `PageEvent`s as pages start and end, in the order they end, in the caller's thread, so
the caller stores each page as soon as it is read. Nothing here knows Django.

`read_concurrently` keeps up to `n` pages in flight in threads (the vLLM backend: the server
batches the requests on the GPU) and takes the next page from the source only when a slot is
free, so a source that renders ahead stays at most a few pages ahead. The threads never call the
caller's cancel check (the worker's reads the database): the caller's thread asks it and passes
a thread-safe flag to the pages in flight, which abort their requests when it is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, OutOfMemory

STARTED = "started"
DONE = "done"
FAILED = "failed"

# (key, image or the exception that kept the page from being made)
PageInput = tuple[Any, "Image.Image | BaseException"]
# Reads one page: (image, cancel) -> OcrResult
ReadOne = Callable[[Image.Image, CancelCheck], OcrResult]


@dataclass
class PageEvent:
    kind: str  # STARTED, DONE or FAILED
    key: Any
    result: OcrResult | None = None
    error: BaseException | None = None


def _fails_only_this_page(exc: BaseException) -> bool:
    """A page error the next page may not have (not a cancel, not CUDA out of memory, not a bug)."""
    return isinstance(exc, BackendError) and not isinstance(exc, OutOfMemory) and not getattr(exc, "out_of_memory", 0)


def read_serially(pages: Iterable[PageInput], read_one: ReadOne, cancel: CancelCheck) -> Iterator[PageEvent]:
    """One page after another (the default of every backend)."""
    for key, image in pages:
        if cancel():
            raise JobCancelled()
        if isinstance(image, BaseException):
            yield PageEvent(FAILED, key, error=image)
            continue
        yield PageEvent(STARTED, key)
        try:
            result = read_one(image, cancel)
        except Exception as exc:
            if not _fails_only_this_page(exc):
                raise
            yield PageEvent(FAILED, key, error=exc)
            continue
        yield PageEvent(DONE, key, result=result)


def read_concurrently(
    pages: Iterable[PageInput],
    read_one: ReadOne,
    cancel: CancelCheck,
    n: int,
    *,
    poll_seconds: float = 0.1,
) -> Iterator[PageEvent]:
    """Up to `n` pages in flight at once. A cancel, CUDA running out of memory or an unexpected
    error aborts every page in flight (their threads see the flag and close their requests) and is
    raised here; a page's own error (BackendError) fails that page only."""
    if n <= 1:
        yield from read_serially(pages, read_one, cancel)
        return
    source = iter(pages)
    stop = threading.Event()
    in_flight: dict[Future, Any] = {}
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="ocr-page")
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < n:
                if cancel():
                    raise JobCancelled()
                try:
                    key, image = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(image, BaseException):
                    yield PageEvent(FAILED, key, error=image)
                    continue
                yield PageEvent(STARTED, key)
                in_flight[pool.submit(read_one, image, stop.is_set)] = key
            if not in_flight:
                return
            finished, _ = wait(list(in_flight), timeout=poll_seconds, return_when=FIRST_COMPLETED)
            if cancel():
                raise JobCancelled()
            for future in sorted(finished, key=lambda f: _order(in_flight[f])):
                key = in_flight.pop(future)
                exc = future.exception()
                if exc is None:
                    yield PageEvent(DONE, key, result=future.result())
                elif _fails_only_this_page(exc):
                    yield PageEvent(FAILED, key, error=exc)
                else:
                    raise exc
    finally:
        stop.set()  # every request still in flight aborts at its next check
        pool.shutdown(wait=True, cancel_futures=True)


def _order(key: Any) -> Any:
    return key if isinstance(key, (int, float, str)) else 0
