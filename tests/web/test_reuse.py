"""Result reuse: the same file sent again with the same settings gets the stored result at once,
marked as reused; other settings, `reuse=false` and "Run again" run it afresh."""

from __future__ import annotations

import pytest

from ocr_app.models import BackendSettings, Job, Page
from tests.web.api_support import api_client
from tests.web.conftest import image_bytes, upload_file

pytestmark = pytest.mark.django_db


def png():
    return upload_file("scan.png", image_bytes("PNG", (64, 48)))


def finish(job: Job, text: str = "stored text") -> Job:
    """What the worker leaves behind for a job that succeeded."""
    job.move_to("running")
    job.pages.update(state=Page.SUCCEEDED, text=text, result={"page": {"text": text}}, seconds=1.5)
    job.move_to("succeeded", text=text, text_preview=text, result={"page": {"text": text}}, backend="rapidocr",
                progress=1.0)
    return job


def test_the_same_upload_with_the_same_settings_reuses_the_result(post_upload, sent_tasks, alice_client):
    first = finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))
    sent_tasks.clear()

    body = post_upload(png()).json()

    job = Job.objects.get(pk=body["jobs"][0]["id"])
    assert job.pk != first.pk and job.state == "succeeded" and job.reused_from_id == first.pk
    assert job.text == "stored text" and job.backend == "rapidocr" and job.progress == 1.0
    assert [(p.number, p.state, p.text) for p in job.pages.all()] == [(1, "succeeded", "stored text")]
    assert sent_tasks == []  # nothing runs
    assert body["jobs"][0]["reused_from"] == first.pk
    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f"reused from <a href=\"/jobs/{first.pk}/\">#{first.pk}</a>" in page


def test_another_task_language_or_backend_setting_runs_afresh(post_upload, sent_tasks):
    finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))

    by_mode = Job.objects.get(pk=post_upload(png(), mode="text").json()["jobs"][0]["id"])
    by_language = Job.objects.get(pk=post_upload(png(), language="eslav").json()["jobs"][0]["id"])
    cfg = BackendSettings.load()
    cfg.max_pixels = 1_000_000
    cfg.save()
    by_settings = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])

    assert [j.state for j in (by_mode, by_language, by_settings)] == ["queued"] * 3
    assert not any(j.reused_from_id for j in (by_mode, by_language, by_settings))


def test_the_language_does_not_matter_to_dots_ocr(post_upload, sent_tasks):
    cfg = BackendSettings.load()
    cfg.backend = "transformers"
    cfg.save()
    first = finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))

    again = Job.objects.get(pk=post_upload(png(), language="eslav").json()["jobs"][0]["id"])

    assert again.reused_from_id == first.pk


def test_a_failed_job_is_not_reused(post_upload, sent_tasks):
    job = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])
    job.move_to("running")
    job.move_to("failed", message="broke")

    again = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])

    assert again.state == "queued" and again.reused_from_id is None


def test_reuse_takes_only_a_clean_result_never_the_faults_of_the_earlier_run(post_upload, sent_tasks, alice_client):
    first = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])
    fault = "The worker process was killed (SIGKILL) while reading page 1; it was queued again."
    finish(first)
    Job.objects.filter(pk=first.pk).update(message=fault, retries=1, last_fault=fault)

    again = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])

    assert again.reused_from_id == first.pk and again.text == "stored text"
    assert "killed" not in again.message and again.retries == 0 and again.last_fault == ""
    assert again.message == f"The result of job {first.pk}, which read the same file with the same settings."
    assert "SIGKILL" not in alice_client.get(f"/jobs/{again.pk}/").content.decode()


def test_a_job_that_succeeded_with_a_failed_page_is_not_reused(post_upload, sent_tasks):
    first = finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))
    first.pages.update(state=Page.FAILED, message="CUDA ran out of memory")
    Job.objects.filter(pk=first.pk).update(message="Page 1 of 1 failed (CUDA ran out of memory); retry to read it.")

    again = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])

    assert again.state == "queued" and again.reused_from_id is None and again.message == ""


def test_the_api_reuses_unless_told_not_to(alice, sent_tasks, django_capture_on_commit_callbacks):
    api = api_client(alice)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/jobs", {"file": png()}).json()["jobs"][0]
    finish(Job.objects.get(pk=first["id"]))
    sent_tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        reused = api.post("/api/v1/jobs", {"file": png()}).json()["jobs"][0]
        fresh = api.post("/api/v1/jobs", {"file": png(), "reuse": "false"}).json()["jobs"][0]

    assert reused["state"] == "succeeded" and reused["reused_from"] == first["id"]
    assert fresh["state"] == "queued" and fresh["reused_from"] is None
    assert [t["args"] for t in sent_tasks] == [[fresh["id"]]]
    detail = api.get(f"/api/v1/jobs/{reused['id']}").json()
    assert detail["reused_from"] == first["id"]
    assert api.get(f"/api/v1/jobs/{reused['id']}/result?format=txt").content == b"stored text"


def test_run_again_on_the_job_page_queues_a_reused_job_for_a_fresh_run(post_upload, sent_tasks, alice_client):
    finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))
    job = Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"])
    assert "Run again" in alice_client.get(f"/jobs/{job.pk}/").content.decode()
    sent_tasks.clear()

    response = alice_client.post(f"/jobs/{job.pk}/run-again")

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == "queued" and job.reused_from_id is None and job.text == ""
    assert [p.state for p in job.pages.all()] == ["pending"]


def test_run_again_is_only_for_the_owner_or_staff(post_upload, sent_tasks, client, bob):
    job = finish(Job.objects.get(pk=post_upload(png()).json()["jobs"][0]["id"]))
    client.force_login(bob)

    assert "Run again" not in client.get(f"/jobs/{job.pk}/").content.decode()
    client.post(f"/jobs/{job.pk}/run-again")

    job.refresh_from_db()
    assert job.state == "succeeded"
