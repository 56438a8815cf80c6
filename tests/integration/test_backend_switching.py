"""The admin's backend setting reaches the real worker: the next job runs on the new backend,
the old one is unloaded, and the dashboard hears about each step. dots.ocr itself is replaced
by a tiny random-weight model that loads through the same code path (trust_remote_code)."""

from __future__ import annotations

import pytest

from ocr_app.models import BackendSettings, Job
from tests.conftest import text_image
from tests.integration.test_pipeline import EventListener, upload, wait_until_ended

pytest.importorskip("torch", reason="the dots extra (torch, transformers) is not installed")
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.fixtures.tiny_dots.build import build_tiny_model, in_model_dir

    return build_tiny_model(in_model_dir("tiny-dots"))


def test_a_new_backend_setting_applies_to_the_next_job_and_unloads_the_old_one(
    client, make_user, celery_worker_process, tiny_model
):
    client.force_login(make_user())
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()
    first = wait_until_ended(upload(client, [("a.png", text_image(["First page 11"]))])["jobs"][0]["id"])
    assert first.state == "succeeded" and first.backend == "rapidocr"

    listener = EventListener()
    cfg.backend, cfg.model, cfg.allow_cpu, cfg.max_new_tokens = "cpu", str(tiny_model), True, 16
    cfg.save()
    second_id = upload(client, [("b.png", text_image(["Second"], size=(280, 140)))])["jobs"][0]["id"]
    second = wait_until_ended(second_id, timeout=180)

    assert second.state == "succeeded", second.message
    assert second.backend == "cpu"
    assert second.plan["backend"] == "cpu" and second.plan["reasons"]
    assert second.result["details"]["new_tokens"] <= 16
    states = [e["state"] for e in listener.messages if e.get("type") == "backend.status"]
    assert "unloaded" in states and "loading" in states and states[-1] == "ready"
    listener.stop.set()


def test_a_forced_backend_that_cannot_run_fails_the_job_with_the_reason(client, make_user, celery_worker_process):
    client.force_login(make_user())
    cfg = BackendSettings.load()
    cfg.backend = "transformers"  # needs an NVIDIA GPU; this machine has none
    cfg.save()

    job = wait_until_ended(upload(client, [("c.png", text_image(["Third"]))])["jobs"][0]["id"])

    assert job.state == "failed"
    assert "No NVIDIA GPU" in job.message
    assert "refusing rather than starting it to crash" in job.message
    assert Job.objects.get(pk=job.pk).upload
