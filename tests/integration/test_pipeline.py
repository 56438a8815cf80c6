"""Upload → Redis queue → real Celery worker → rapidocr → database, with events through the
real channel layer. Nothing here is mocked."""

from __future__ import annotations

import time

import pytest
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers

from ocr_app import events
from ocr_app.models import Job
from tests.conftest import text_image

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_until_ended(job_id: int, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.ended:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {Job.objects.get(pk=job_id).state}")


def upload(client, files: list[tuple[str, bytes]], language: str = "multi") -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/upload/",
        {"files": [SimpleUploadedFile(name, data) for name, data in files], "language": language},
        headers={"accept": "application/json"},
    )
    return response.json()


class EventListener:
    """Joins the events group on the real channel layer, as a browser's consumer does, and
    collects from a thread of its own (a channel layer belongs to one event loop)."""

    def __init__(self):
        import asyncio
        import threading

        self.messages: list[dict] = []
        self.ready = threading.Event()
        self.stop = threading.Event()

        async def listen():
            # A layer of its own: the shared one may be receiving in another test's event loop.
            layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            channel = await layer.new_channel()
            await layer.group_add(events.GROUP, channel)
            self.ready.set()
            while not self.stop.is_set():
                try:
                    message = await asyncio.wait_for(layer.receive(channel), timeout=0.5)
                except TimeoutError:
                    continue
                self.messages.append(message["event"])

        self.thread = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def states_of(self, job_id: int, until: str, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                seen: list[str] = []
                for event in list(self.messages):
                    job = event.get("job", {})
                    if job.get("id") == job_id and (not seen or seen[-1] != job["state"]):
                        seen.append(job["state"])
                if seen and seen[-1] == until:
                    return seen
                time.sleep(0.1)
        finally:
            self.stop.set()
        raise AssertionError(f"saw only {seen} for job {job_id}")


def test_it_turns_an_uploaded_image_into_text(client, make_user, celery_worker_process):
    client.force_login(make_user())
    body = upload(client, [("invoice.png", text_image(["Invoice number 4711", "paid in full"]))])
    job = wait_until_ended(body["jobs"][0]["id"])

    assert job.state == "succeeded", job.message
    assert "4711" in job.text and "paid" in job.text.lower()
    assert job.backend == "rapidocr"
    assert job.started_at >= job.created_at and job.finished_at >= job.started_at
    assert job.result["lines"] and job.result["image_size"] == [900, 240]


def test_the_worker_publishes_each_state_through_the_channel_layer(client, make_user, celery_worker_process):
    listener = EventListener()
    client.force_login(make_user())
    body = upload(client, [("hello.png", text_image(["Hello world 2026"]))])

    states = listener.states_of(body["jobs"][0]["id"], until="succeeded")

    assert states == ["queued", "running", "succeeded"]


def test_jobs_run_one_at_a_time_in_upload_order(client, make_user, celery_worker_process):
    client.force_login(make_user())
    body = upload(client, [(f"page{i}.png", text_image([f"Page number {i}"])) for i in range(3)])
    jobs = [wait_until_ended(j["id"]) for j in body["jobs"]]

    assert [j.state for j in jobs] == ["succeeded"] * 3
    for earlier, later in zip(jobs, jobs[1:], strict=False):
        assert later.started_at >= earlier.finished_at  # concurrency 1: never overlapping


def test_a_failing_engine_fails_the_job_keeps_the_upload_and_the_worker_goes_on(
    client, make_user, celery_worker_process
):
    client.force_login(make_user())
    # Downloads are off in the tests, so a language whose model is absent makes the engine fail.
    failing = upload(client, [("russian.png", text_image(["Привет мир"]))], language="eslav")["jobs"][0]
    following = upload(client, [("next.png", text_image(["Next job 99"]))])["jobs"][0]

    failed = wait_until_ended(failing["id"])
    assert failed.state == "failed"
    assert "fetch_ocr_language eslav" in failed.message
    assert failed.upload.storage.exists(failed.upload.name)

    after = wait_until_ended(following["id"])
    assert after.state == "succeeded" and "99" in after.text


def test_a_job_cancelled_while_queued_is_never_run(client, make_user, celery_worker_process):
    client.force_login(make_user())
    # Keep the worker busy with a large image so the second job is still waiting.
    busy = upload(client, [("busy.png", text_image(["line"] * 12, size=(1600, 1800)))])["jobs"][0]
    waiting = upload(client, [("waiting.png", text_image(["Never read"]))])["jobs"][0]
    job = Job.objects.get(pk=waiting["id"])
    assert job.move_to("cancelled")

    wait_until_ended(busy["id"])
    time.sleep(1.0)  # the worker has had the task by now
    job.refresh_from_db()
    assert job.state == "cancelled" and job.started_at is None and job.text == ""


def test_a_pdf_is_read_page_by_page_with_progress_events(client, make_user, celery_worker_process):
    from tests.unit.test_pdf import A4, build_pdf

    listener = EventListener()
    client.force_login(make_user())
    data = build_pdf([{"size": A4, "lines": [f"Chapter {n} begins"]} for n in (1, 2, 3)])
    body = upload(client, [("book.pdf", data)])
    job_id = body["jobs"][0]["id"]

    states = listener.states_of(job_id, until="succeeded", timeout=180)
    job = wait_until_ended(job_id)

    assert states == ["queued", "running", "succeeded"]
    assert job.state == "succeeded", job.message
    pages = list(job.pages.order_by("number"))
    assert [p.state for p in pages] == ["succeeded"] * 3
    for n, page in enumerate(pages, start=1):
        assert f"Chapter {n}" in page.text and page.dpi == 200 and page.image
    assert job.text.index("Chapter 1") < job.text.index("Chapter 2") < job.text.index("Chapter 3")
    running = [e["job"] for e in listener.messages if e.get("job", {}).get("id") == job_id
               and e["job"]["state"] == "running"]
    shown = []
    for payload in running:
        if payload["page"] and (not shown or shown[-1] != payload["page"]):
            shown.append(payload["page"])
    assert [f"page {n} of {running[-1]['pages']}" for n in shown] == ["page 1 of 3", "page 2 of 3", "page 3 of 3"]
    assert job.progress == 1.0
    assert any(p["eta_seconds"] is not None for p in running if p["page"] == 3)
