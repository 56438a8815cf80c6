"""The vLLM backend with a document: its pages in flight at once against a server that serves them
concurrently, a cancel that aborts every request, and the loop guard on a server that loops."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from core.loopguard import REPEATING, TIME_LIMIT
from core.readpage import parsed_page
from core.results import JobCancelled
from tests.doubles.openai_server import OpenAIServer
from workers.backends.pagereading import DONE
from workers.backends.vllm.backend import VllmBackend

LAYOUT_START = '[{"bbox": [28, 28, 280, 84], "category": "Title", "text": "# Report"}, {"bbox": [28, 90, 280, 140], '


@pytest.fixture
def server():
    with OpenAIServer(max_pixels=1_003_520) as s:
        yield s


def backend_for(server: OpenAIServer, **extra) -> VllmBackend:
    backend = VllmBackend()
    backend.load({"vllm_url": server.url, "max_pixels": server.max_pixels, "max_new_tokens": 4096, **extra})
    return backend


def document(n: int) -> list[tuple[int, Image.Image]]:
    """Pages that differ in width, so each answer can name its page."""
    return [(i, Image.new("RGB", (280 + 28 * i, 280), "white")) for i in range(1, n + 1)]


def by_width(req) -> str:
    return f"page {(req.image_size[0] - 280) // 28}"


def never() -> bool:
    return False


def test_the_pages_of_a_document_are_in_flight_at_once_and_each_answer_comes_with_its_page(server):
    server.answer, server.behaviour, server.slow_seconds = by_width, "slow", 0.3
    backend = backend_for(server, pages_at_once=4)

    events = list(backend.read_pages(document(8), "text", never))

    assert server.max_in_flight == 4
    results = {e.key: e.result.text for e in events if e.kind == DONE}
    assert results == {n: f"page {n}" for n in range(1, 9)}
    assert server.problems == []


def test_without_pages_at_once_in_the_plan_pages_go_one_at_a_time(server):
    server.answer, server.behaviour, server.slow_seconds = by_width, "slow", 0.05
    backend = backend_for(server)
    list(backend.read_pages(document(3), "text", never))
    assert backend.pages_at_once() == 1 and server.max_in_flight == 1


def test_a_cancel_aborts_every_request_in_flight(server):
    server.behaviour, server.stream_interval, server.stream_tokens = "slow_stream", 0.02, 5000
    backend = backend_for(server, pages_at_once=3)
    asked = threading.Event()
    threading.Timer(0.5, asked.set).start()

    started = time.monotonic()
    with pytest.raises(JobCancelled):
        list(backend.read_pages(document(6), "text", asked.is_set))
    assert time.monotonic() - started < 3

    deadline = time.monotonic() + 3
    while len(server.disconnects) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.disconnects) == 3  # each request in flight was closed; the others never sent
    assert len(server.requests) == 3


def test_a_looping_answer_is_aborted_early_and_keeps_what_came_before(server):
    server.behaviour, server.answer, server.stream_interval = "loop", LAYOUT_START, 0
    server.stream_tokens = 20_000
    backend = backend_for(server, loop_window=60, loop_ngram=10)

    image = Image.new("RGB", (560, 560), "white")
    result = backend.ocr(image, "layout_all", never)

    stopped = result.details["stopped"]
    assert stopped["reason"] == REPEATING and stopped["period"] == 1
    assert stopped["tokens"] < 200  # not the 20,000 the server would have sent
    assert result.text.startswith(LAYOUT_START)
    assert server.wait_for_disconnect(timeout=3) is not None  # the request was aborted on the server
    page = parsed_page(result, "vllm", "layout_all", image.size)
    assert page.elements[0].text == "# Report"
    assert page.warnings[0].startswith("Stopped: repeating output after")


def test_the_page_time_limit_stops_a_slow_answer_the_same_way(server):
    server.behaviour, server.stream_interval, server.stream_tokens = "slow_stream", 0.05, 1000
    backend = backend_for(server, page_time_limit=1)

    started = time.monotonic()
    result = backend.ocr(Image.new("RGB", (280, 280)), "text", never)

    assert time.monotonic() - started < 2.5
    assert result.details["stopped"]["reason"] == TIME_LIMIT
    assert result.text.startswith("tok ") and 5 <= result.details["stopped"]["tokens"] < 40


@pytest.mark.parametrize(
    "chunk",
    [{"choices": 5}, {"choices": "abc"}, {"choices": [{"delta": "x"}]}, {"choices": [{"delta": {"content": 7}}]}, []],
)
def test_hostile_stream_chunks_feed_the_guard_nothing(chunk):
    from workers.backends.vllm.client import _pieces

    assert _pieces(chunk) == []
