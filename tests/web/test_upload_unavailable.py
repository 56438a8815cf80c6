"""An upload that cannot be taken in now: 503 with Retry-After while the job queue (Redis) does not
answer, 507 while the disk is nearly full, 400 for a file whose preview cannot be drawn — each with
a clear message, nothing stored and nothing queued. A send that fails after the commit leaves the job
queued for the workers' round to send (ocr_app/delivery.py)."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from kombu.exceptions import OperationalError

from ocr_app import delivery
from ocr_app.models import IdempotencyKey, Job
from tests.unit.test_pdf import A4, build_pdf
from tests.web.api_support import api_client, error_of
from tests.web.conftest import image_bytes, stored_files, upload_file

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def broker_down(settings):
    settings.CELERY_BROKER_URL = DEAD_REDIS


@pytest.fixture
def disk_nearly_full(settings, monkeypatch):
    settings.MIN_FREE_DISK_MB = 1024
    monkeypatch.setattr("ocr_app.files.free_bytes", lambda: 300 * 1024 * 1024)


def png(name="scan.png"):
    return upload_file(name, image_bytes("PNG", (64, 48)))


def nothing_made(media_root, sent_tasks):
    assert not Job.objects.exists()
    assert stored_files(media_root) == []
    assert sent_tasks == []


# -- the queue does not answer ---------------------------------------------------------------


def test_the_api_answers_503_with_retry_after_while_redis_is_down(alice, broker_down, sent_tasks, media_root):
    response = api_client(alice).post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="upload-1")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    body = error_of(response)
    assert body["code"] == "queue_unavailable"
    assert body["error"].startswith("The job queue (Redis) does not answer")
    assert "Nothing was stored" in body["error"]
    nothing_made(media_root, sent_tasks)
    # The key is not used up: the same request, sent again once Redis answers, makes the job.
    assert not IdempotencyKey.objects.exists()


def test_the_same_idempotency_key_after_a_503_makes_the_job_once_redis_is_back(
    alice, settings, sent_tasks, django_capture_on_commit_callbacks
):
    api = api_client(alice)
    working = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = DEAD_REDIS
    assert api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k").status_code == 503
    settings.CELERY_BROKER_URL = working

    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k")

    assert first.status_code == 202 and again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert [t["args"] for t in sent_tasks] == [[first.json()["jobs"][0]["id"]]]


def test_the_upload_page_answers_503_with_the_message_while_redis_is_down(
    post_upload, broker_down, sent_tasks, media_root
):
    response = post_upload(png())

    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response.json()["jobs"] == []
    [refusal] = response.json()["refused"]
    assert refusal["error"].startswith("The job queue (Redis) does not answer")
    nothing_made(media_root, sent_tasks)


def test_the_upload_form_without_javascript_shows_the_page_with_the_message(
    post_upload, broker_down, sent_tasks, media_root
):
    response = post_upload(png(), json=False)

    assert response.status_code == 503 and response["Retry-After"] == "30"
    page = response.content.decode()
    assert "The job queue (Redis) does not answer" in page and 'type="file"' in page
    nothing_made(media_root, sent_tasks)


def test_the_openai_endpoint_answers_503_in_openais_shape(alice, broker_down, sent_tasks, media_root):
    from tests.web.test_openai_compat import dots_request

    response = api_client(alice).post("/v1/chat/completions", json.dumps(dots_request()),
                                      content_type="application/json")

    assert response.status_code == 503 and response["Retry-After"] == "30"
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["message"].startswith("The job queue (Redis) does not answer")
    nothing_made(media_root, sent_tasks)


def test_reading_a_region_answers_503_while_redis_is_down(alice_client, alice, settings, sent_tasks):
    from tests.web.test_pictures import encoded, image_job, page_image

    source = image_job(alice, encoded(page_image()))
    settings.CELERY_BROKER_URL = DEAD_REDIS

    response = alice_client.post(f"/jobs/{source.pk}/region", {"page": 1, "bbox": [0, 0, 50, 50]},
                                 content_type="application/json")
    api = api_client(alice).post(f"/api/v1/jobs/{source.pk}/region", {"page": 1, "bbox": [0, 0, 50, 50]},
                                 content_type="application/json")

    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert "does not answer" in response.json()["error"]
    assert api.status_code == 503 and error_of(api)["code"] == "queue_unavailable"
    assert Job.objects.count() == 1 and sent_tasks == []


def test_a_send_that_fails_after_the_commit_leaves_the_job_queued_and_a_round_sends_it(
    post_upload, monkeypatch, sent_tasks, caplog, django_capture_on_commit_callbacks
):
    from dashboard.celery import app

    def broker_gone(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", broker_gone)
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        response = post_upload(png())

    assert response.status_code == 200  # accepted: it is delivered when Redis answers
    job = Job.objects.get()
    assert job.state == "queued"
    assert f"job {job.pk} is queued but its task could not be sent" in caplog.text

    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, args=None, kwargs=None, **o: calls.append(args))
    monkeypatch.setattr(delivery, "messages_in_broker", lambda client: (set(), {}))
    assert delivery.resend_lost(older_than=0) == 1
    assert calls == [[job.pk]]


# -- the disk is nearly full ------------------------------------------------------------------


def test_the_api_answers_507_when_the_disk_is_nearly_full(alice, disk_nearly_full, sent_tasks, media_root):
    response = api_client(alice).post("/api/v1/jobs", {"file": png()})

    assert response.status_code == 507
    body = error_of(response)
    assert body["code"] == "insufficient_storage"
    assert body["error"].startswith("The server's disk is nearly full: 300.0 MB free in the data folder, and "
                                    "ocrdash keeps at least 1.0 GB free. Nothing was stored")
    nothing_made(media_root, sent_tasks)


def test_the_upload_page_answers_507_when_the_disk_is_nearly_full(post_upload, disk_nearly_full, sent_tasks,
                                                                  media_root):
    response = post_upload(png())

    assert response.status_code == 507
    assert response.json()["refused"][0]["error"].startswith("The server's disk is nearly full")
    nothing_made(media_root, sent_tasks)


def test_the_free_space_guard_counts_the_files_being_sent(alice, settings, monkeypatch, sent_tasks):
    settings.MIN_FREE_DISK_MB = 1
    monkeypatch.setattr("ocr_app.files.free_bytes", lambda: 1024 * 1024 + 100)  # just over the floor

    response = api_client(alice).post("/api/v1/jobs", {"file": png()})

    assert response.status_code == 507


def test_a_disk_that_fills_up_while_storing_is_a_507_with_nothing_left(alice, monkeypatch, sent_tasks, media_root):
    import errno

    from django.core.files.storage import FileSystemStorage

    real_save = FileSystemStorage._save
    saved = []

    def fills_up(self, name, content):
        if saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(name)
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", fills_up)
    response = api_client(alice).post("/api/v1/jobs", {"file": png()})

    assert response.status_code == 507
    assert "filled up while the file was being stored" in error_of(response)["error"]
    assert saved  # the upload was stored, then the thumbnail failed: the upload was removed again
    nothing_made(media_root, sent_tasks)


# -- a file whose preview cannot be drawn ------------------------------------------------------


HUGE_FIRST_PAGE = (5000, 5000)  # points: 25 megapixels even at 72 dpi, over the page limit


def huge_first_page_pdf() -> bytes:
    return build_pdf([{"size": HUGE_FIRST_PAGE, "lines": ["Poster"]}, {"size": A4, "lines": ["Text"]}])


def test_a_pdf_whose_first_page_is_too_large_is_a_400_that_names_it_on_the_api(alice, sent_tasks, media_root):
    response = api_client(alice).post("/api/v1/jobs", {"file": upload_file("poster.pdf", huge_first_page_pdf())})

    assert response.status_code == 400
    body = error_of(response)
    assert body["code"] == "refused"
    [refusal] = body["refused"]
    assert refusal["name"] == "poster.pdf"
    assert refusal["error"].startswith("\u201cposter.pdf\u201d cannot be rendered: page 1 of 2 is too large")
    nothing_made(media_root, sent_tasks)


def test_a_pdf_whose_first_page_is_too_large_is_refused_by_the_form_next_to_a_good_file(
    post_upload, sent_tasks, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_upload(upload_file("poster.pdf", huge_first_page_pdf()), png("fine.png"))

    assert response.status_code == 200
    body = response.json()
    assert [j["name"] for j in body["jobs"]] == ["fine.png"]
    assert body["refused"][0]["error"].startswith("\u201cposter.pdf\u201d cannot be rendered: page 1 of 2")
    assert Job.objects.count() == 1 and len(stored_files(media_root)) == 2  # fine.png and its thumbnail


# -- SQLite: files are written before the transaction -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_files_and_thumbnails_are_written_outside_any_database_transaction(alice, monkeypatch, sent_tasks):
    from django.core.files.storage import FileSystemStorage

    real_save = FileSystemStorage._save
    in_transaction = []

    def watch(self, name, content):
        in_transaction.append(connection.in_atomic_block)
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", watch)
    files = [png(f"scan-{n}.png") for n in range(5)]
    response = api_client(alice).post("/api/v1/jobs", {"file": files}, HTTP_IDEMPOTENCY_KEY="five")

    assert response.status_code == 202 and len(response.json()["jobs"]) == 5
    assert in_transaction == [False] * 10  # five uploads and their thumbnails
