"""Work ahead on a CPU thread: `ahead(items, depth)` iterates `items` in a thread, at most `depth`
items ahead of the consumer. The worker renders the next PDF pages with it while the GPU reads the
current ones, so the GPU never waits for pypdfium2. The thread does only what `items` does (pure
rendering: no database); an exception it meets is raised in the consumer, in order. Closing the
iterator early (a cancel, an error) stops the thread at its next item."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of `items`, produced by a thread that runs up to `depth` items ahead."""
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                box.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_Failed(exc))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="render-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value = box.get()
            if value is _END:
                return
            if isinstance(value, _Failed):
                raise value.exc
            yield value
    finally:
        stop.set()
