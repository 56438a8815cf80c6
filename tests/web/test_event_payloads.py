"""Every publisher sends the shapes core/events.py declares: the job's payload (in events, in
status.json and in the upload's answer), the worker's backend state, the admin's settings notice
and the GPU monitor's sample."""

from __future__ import annotations

from typing import get_type_hints

import pytest
from django.contrib.admin import site
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory
from django.utils import timezone

from core.events import (
    BackendSettingsEvent,
    BackendStatusEvent,
    GpuSample,
    GpuSampleEvent,
    JobStatus,
    JobStatusEvent,
    problems,
)
from core.gpu import NvmlReader, sample_to_event
from ocr_app import events
from ocr_app.models import BackendSettings, Page
from tests.doubles import fake_pynvml
from tests.doubles.fake_pynvml import FakeNvml
from tests.web.conftest import image_bytes, upload_file
from workers import tasks

pytestmark = pytest.mark.django_db

JOB_KEYS = set(get_type_hints(JobStatus))


@pytest.fixture
def sent(monkeypatch):
    """Every event as it leaves for the channel layer: {"type": …, **body}."""
    seen: list[dict] = []
    monkeypatch.setattr(events, "_send", lambda kind, body: seen.append({"type": kind, **body}))
    return seen


def test_the_payload_of_a_queued_a_running_and_a_reused_job_has_the_declared_shape(make_job):
    queued = make_job()
    running = make_job(state="running", page_count=2, current_page=2, started_at=timezone.now())
    Page.objects.create(job=running, number=1, state=Page.SUCCEEDED, seconds=4.0)
    Page.objects.create(job=running, number=2, state=Page.RUNNING)
    done = make_job(state="succeeded", text="words", text_preview="words")
    reused = make_job(state="succeeded", reused_from=done)

    payloads = [events.job_payload(queued, 1), events.job_payload(running), events.job_payload(reused)]

    for payload in payloads:
        assert problems(payload, JobStatus) == [] and set(payload) == JOB_KEYS
    assert payloads[1]["eta_seconds"] == 4.0 and payloads[1]["page"] == 2
    assert payloads[2]["reused_from"] == done.pk


def test_the_published_job_event_and_the_queue_positions_have_the_declared_shape(make_job, sent):
    job = make_job()
    make_job()

    events.publish_job(job)
    events.publish_queue_positions()

    assert len(sent) == 3
    assert all(problems(event, JobStatusEvent) == [] for event in sent)


def test_status_json_and_the_uploads_answer_are_the_same_payload(alice_client, post_upload, sent_tasks):
    response = post_upload(upload_file("scan.png", image_bytes()))
    [answered] = response.json()["jobs"]
    status = alice_client.get(f"/jobs/{answered['id']}/status.json").json()

    assert problems(answered, JobStatus) == [] and problems(status, JobStatus) == []


def test_the_workers_backend_state_has_the_declared_shape(sent, fake_worker, make_job):
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()
    worker = fake_worker()

    tasks.run_job.apply(args=[make_job(with_file=True).pk])
    worker.holder.unload("asked to free the GPU")

    statuses = [event for event in sent if event["type"] == "backend.status"]
    assert [event["state"] for event in statuses] == ["loading", "ready", "unloaded"]
    assert all(problems(event, BackendStatusEvent) == [] for event in statuses)


def test_the_admins_settings_notice_has_the_declared_shape(sent, make_user):
    root = make_user("root", is_staff=True, is_superuser=True)
    request = RequestFactory().post("/admin/ocr_app/backendsettings/1/change/")
    request.user = root
    request.session = {}
    request._messages = FallbackStorage(request)
    cfg = BackendSettings.load()
    cfg.backend = "transformers"

    site._registry[BackendSettings].save_model(request, cfg, form=None, change=True)

    [notice] = sent
    assert problems(notice, BackendSettingsEvent) == []
    assert notice["backend"] == "transformers" and "root changed the backend settings" in notice["detail"]


@pytest.mark.parametrize("recording", ["rtx3060_shared", "h200_idle"])
def test_the_gpu_sample_has_the_declared_shape(recording, sent):
    body = sample_to_event(NvmlReader(FakeNvml(recording)).read())

    events.publish_gpu_sample(body)

    assert problems(body, GpuSample) == [] and body["devices"]
    assert problems(sent[0], GpuSampleEvent) == []


def test_a_sample_without_a_gpu_has_the_declared_shape():
    nvml = FakeNvml("a100_idle", init_error=fake_pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    body = sample_to_event(NvmlReader(nvml).read())

    assert problems(body, GpuSample) == [] and body["devices"] == [] and body["error"]


def test_a_payload_that_drifted_is_caught(make_job):
    payload = dict(events.job_payload(make_job()))
    del payload["eta_seconds"]
    payload["colour"] = "blue"
    payload["progress"] = "half"

    assert problems(payload, JobStatus) == [
        "JobStatus lacks 'eta_seconds'",
        "JobStatus has 'colour', which it does not declare",
        "JobStatus.progress = 'half' is str, not float",
    ]
