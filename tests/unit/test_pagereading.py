"""Reading a document's pages one after another or several at once (workers/backends/pagereading.py),
and rendering ahead on a thread (core/prefetch.py)."""

import threading
import time

import pytest
from PIL import Image

from core.prefetch import ahead
from core.results import BackendError, JobCancelled, OcrResult, OutOfMemory
from workers.backends.pagereading import DONE, FAILED, STARTED, read_concurrently, read_serially


def pages(n):
    return [(i, Image.new("RGB", (28 * i, 28))) for i in range(1, n + 1)]


class Reader:
    """Reads a page as its width; counts how many pages are in flight at once."""

    def __init__(self, seconds=0.05, fail=(), oom=()):
        self.seconds, self.fail, self.oom = seconds, set(fail), set(oom)
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.aborted = []

    def __call__(self, image, cancel):
        number = image.width // 28
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                if cancel():
                    self.aborted.append(number)
                    raise JobCancelled()
                time.sleep(0.005)
            if number in self.oom:
                raise OutOfMemory("CUDA out of memory")
            if number in self.fail:
                raise BackendError(f"page {number} is unreadable")
            return OcrResult(text=f"page {number}")
        finally:
            with self.lock:
                self.in_flight -= 1


def never():
    return False


def test_pages_run_up_to_n_at_once_and_each_result_comes_with_its_page():
    reader = Reader()
    events = list(read_concurrently(pages(8), reader, never, 3, poll_seconds=0.01))
    done = {e.key: e.result.text for e in events if e.kind == DONE}
    assert reader.most == 3
    assert done == {n: f"page {n}" for n in range(1, 9)}
    starts = [e.key for e in events if e.kind == STARTED]
    assert starts == list(range(1, 9))  # taken from the source in the document's order
    for n in range(1, 9):  # every page starts before it ends
        assert events.index(next(e for e in events if e.kind == STARTED and e.key == n)) < events.index(
            next(e for e in events if e.kind == DONE and e.key == n)
        )


def test_the_source_is_read_only_as_slots_free_up():
    taken = []

    def source():
        for key, image in pages(6):
            taken.append(key)
            yield key, image

    reading = read_concurrently(source(), Reader(seconds=0.2), never, 2, poll_seconds=0.01)
    first = [next(reading), next(reading)]
    assert [e.kind for e in first] == [STARTED, STARTED] and taken == [1, 2]
    reading.close()


def test_a_page_error_fails_that_page_only_and_a_page_that_could_not_be_made_is_reported():
    broken = [(1, Image.new("RGB", (28, 28))), (2, BackendError("page 2 did not render")), *pages(4)[2:]]
    events = list(read_concurrently(broken, Reader(fail={3}), never, 2, poll_seconds=0.01))
    failed = {e.key: str(e.error) for e in events if e.kind == FAILED}
    assert failed == {2: "page 2 did not render", 3: "page 3 is unreadable"}
    assert sorted(e.key for e in events if e.kind == DONE) == [1, 4]


def test_a_cancel_aborts_every_page_in_flight():
    reader = Reader(seconds=5)
    asked = []

    def cancel():
        asked.append(1)
        return len(asked) > 6  # asked before each page is taken, then while they run

    started = time.monotonic()
    with pytest.raises(JobCancelled):
        list(read_concurrently(pages(8), reader, cancel, 4, poll_seconds=0.01))
    assert sorted(reader.aborted) == [1, 2, 3, 4]
    assert time.monotonic() - started < 2


def test_out_of_memory_stops_the_reading_and_aborts_the_others():
    reader = Reader(seconds=0.1, oom={2})
    with pytest.raises(OutOfMemory):
        list(read_concurrently(pages(4), reader, never, 4, poll_seconds=0.01))
    assert reader.in_flight == 0


def test_serial_reading_is_one_page_at_a_time():
    reader = Reader(seconds=0.01, fail={2})
    events = list(read_serially(pages(3), reader, never))
    assert reader.most == 1
    assert [(e.kind, e.key) for e in events] == [
        (STARTED, 1), (DONE, 1), (STARTED, 2), (FAILED, 2), (STARTED, 3), (DONE, 3),
    ]  # fmt: skip


# -- rendering ahead -------------------------------------------------------------------------------


def test_items_are_made_ahead_on_another_thread_at_most_depth_ahead():
    made, threads = [], set()

    def render():
        for n in range(10):
            made.append(n)
            threads.add(threading.current_thread().name)
            yield n

    items = ahead(render(), depth=2)
    assert next(items) == 0
    time.sleep(0.2)
    assert 2 <= len(made) <= 4  # the next ones are ready, no more
    assert list(items) == list(range(1, 10))
    assert threads == {"render-ahead"}


def test_an_error_while_making_an_item_reaches_the_consumer_in_order():
    def render():
        yield 1
        raise ValueError("bad page")

    items = ahead(render())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad page"):
        next(items)


def test_closing_early_stops_the_thread():
    made = []

    def render():
        for n in range(1000):
            made.append(n)
            yield n

    items = ahead(render(), depth=1)
    next(items)
    items.close()
    time.sleep(0.3)
    count = len(made)
    time.sleep(0.2)
    assert len(made) == count < 10
