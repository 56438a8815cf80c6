"""A document's pages read several at once by the worker: as many in flight as the plan says, each
stored as it ends (whatever the order they end in), a cancel that aborts every page in flight, and
pages done/running in the events."""

from __future__ import annotations

import threading
import time

import pytest

from core.results import JobCancelled, OcrResult
from ocr_app import events
from ocr_app.models import BackendSettings, Job, Page
from tests.doubles.fake_backend import Call
from tests.web.test_documents import pdf_job, run
from workers import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def transformers_on_a_big_card(fake_worker, dots_installed):
    """The planner picks transformers bf16 on an idle 80 GB card: several pages in one batch."""
    cfg = BackendSettings.load()
    cfg.backend = "transformers"
    cfg.save()

    def start(**behaviour):
        return fake_worker(gpu="a100_idle", **behaviour)

    return start


def test_the_pages_of_a_document_run_at_once_and_each_is_stored_under_its_own_number(
    transformers_on_a_big_card, alice, monkeypatch
):
    sent = []
    monkeypatch.setattr(events, "_send", lambda kind, body: sent.append(body))
    # Every page waits until all three are in flight: the job only ends if they ran at once. Pages
    # 1 and 2 then wait until page 3 is stored: a page is stored as it ends, not in page order.
    together = threading.Barrier(3, timeout=10)
    page_3_stored = threading.Event()
    real_succeeded = tasks._page_succeeded

    def succeeded(job_, page, *args):
        real_succeeded(job_, page, *args)
        if page.number == 3:
            page_3_stored.set()

    monkeypatch.setattr(tasks, "_page_succeeded", succeeded)

    def answer(call: Call, image):
        together.wait()
        if call.page != 3:
            assert page_3_stored.wait(10)
        return OcrResult(text=f"words of page {call.page}", details={"image_size": list(image.size)})

    worker = transformers_on_a_big_card(answer=answer)
    job = run(pdf_job(alice))

    assert job.state == "succeeded", job.message
    assert job.plan["pages_at_once"] >= 3 and "at once" in job.plan["pages_at_once_reason"]
    assert job.plan["pages_at_once_reason"] in job.plan["reasons"]
    pages = list(Page.objects.filter(job=job).order_by("number"))
    assert [p.text for p in pages] == ["words of page 1", "words of page 2", "words of page 3"]
    assert [(p.width, p.height) for p in pages][1][0] > pages[0].width  # page 2 is the landscape one
    assert pages[2].finished_at <= pages[0].finished_at  # stored as it ended, not in page order
    assert sorted(c.page for c in worker.fakes.calls) == [1, 2, 3]
    assert job.text.index("page 1") < job.text.index("page 2") < job.text.index("page 3")
    shown = [(b["job"]["pages_done"], b["job"]["pages_running"]) for b in sent if "job" in b]
    assert (0, 3) in shown and (1, 2) in shown and (3, 0) in shown  # pages done/running as they end


def test_a_cancel_aborts_every_page_in_flight(transformers_on_a_big_card, alice, monkeypatch):
    job = pdf_job(alice)
    aborted = []

    def answer(call: Call, image):
        while not call.cancel():  # the flag the worker sets for every page in flight
            time.sleep(0.02)
        aborted.append(call.page)
        raise JobCancelled()

    real_started = tasks._page_started

    def started_then_cancelled(job_, page, pages):
        real_started(job_, page, pages)
        if page.number == 3:  # all three in flight: the user cancels
            Job.objects.filter(pk=job.pk).update(state="cancelled", message="Cancelled by alice.")

    monkeypatch.setattr(tasks, "_page_started", started_then_cancelled)
    transformers_on_a_big_card(answer=answer)
    job = run(job)

    assert job.state == "cancelled" and job.message == "Cancelled by alice."
    assert sorted(aborted) == [1, 2, 3]
    assert not Page.objects.filter(job=job, state__in=[Page.RUNNING, Page.SUCCEEDED]).exists()


def test_a_looping_page_on_the_vllm_path_stops_early_keeps_its_text_and_says_so(alice, settings, redis_client):
    """The worker's real vLLM backend against an OpenAI-compatible server whose answers loop."""
    from tests.doubles.openai_server import OpenAIServer

    settings.LOOP_WINDOW, settings.LOOP_NGRAM = 60, 10
    start = '[{"bbox": [28, 28, 280, 84], "category": "Title", "text": "# Annual report"}, {"bbox": [28, 90, 280, 1'
    with OpenAIServer(answer=start) as server, tasks.use_holder(tasks.worker_holder()):
        server.behaviour, server.stream_interval, server.stream_tokens = "loop", 0.01, 50_000
        cfg = BackendSettings.load()
        cfg.backend, cfg.vllm_url, cfg.allow_vllm = "vllm", server.url, True
        cfg.save()
        job = run(pdf_job(alice, mode="layout_all"))

    assert job.state == "succeeded", job.message
    assert job.plan["pages_at_once"] == settings.MAX_PAGES_AT_ONCE and server.max_in_flight == 3
    for page in Page.objects.filter(job=job):
        assert page.state == Page.SUCCEEDED
        assert page.message.startswith("Stopped: repeating output after")
        assert page.result["details"]["stopped"]["tokens"] < 200  # not the 50,000 the server would send
        assert "Annual report" in page.text
    assert len(server.disconnects) == 3  # every looping request was aborted
    for key in redis_client.scan_iter("ocrdash:*"):
        redis_client.delete(key)


def test_the_eta_follows_the_rate_measured_with_pages_running_at_once(make_job):
    from datetime import timedelta

    from django.utils import timezone

    began = timezone.now() - timedelta(seconds=30)
    job = make_job(state="running", page_count=6, current_page=3, started_at=began - timedelta(seconds=5))
    # Pages 1 and 2 ran together and both ended after 10 s (each took 10 s: one at a time would
    # say 10 s a page); 3 and 4 run now; 5 and 6 wait.
    for n in (1, 2):
        Page.objects.create(job=job, number=n, state=Page.SUCCEEDED, seconds=10.0, started_at=began,
                            finished_at=began + timedelta(seconds=10))  # fmt: skip
    for n in (3, 4):
        Page.objects.create(job=job, number=n, state=Page.RUNNING, started_at=began + timedelta(seconds=10))
    for n in (5, 6):
        Page.objects.create(job=job, number=n, state=Page.PENDING)

    payload = events.job_payload(job)

    assert payload["pages_done"] == 2 and payload["pages_running"] == 2
    assert payload["eta_seconds"] == 20.0  # 4 pages left at 2 pages per 10 s, not 4 × 10 s
