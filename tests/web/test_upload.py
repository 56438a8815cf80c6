"""POST /upload/ with good images: stored, thumbnailed, queued, announced."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from ocr_app.models import Job
from tests.web.conftest import image_bytes, stored_files, upload_file

pytestmark = pytest.mark.django_db

TASK = "workers.tasks.run_job"


@pytest.mark.parametrize(
    ("fmt", "name", "shown"),
    [
        ("PNG", "scan.png", "PNG"),
        ("JPEG", "photo.jpg", "JPEG"),
        ("WEBP", "page.webp", "WebP"),
        ("TIFF", "fax.tiff", "TIFF"),
        ("BMP", "old.bmp", "BMP"),
    ],
)
def test_it_queues_each_accepted_format(post_upload, sent_tasks, alice, fmt, name, shown):
    data = image_bytes(fmt, (320, 200))
    response = post_upload(upload_file(name, data))

    assert response.status_code == 200
    body = response.json()
    assert body["refused"] == []
    [payload] = body["jobs"]
    assert payload["state"] == "queued"
    assert payload["queue_position"] == 1
    assert payload["name"] == name
    assert payload["owner"] == "alice"

    job = Job.objects.get(pk=payload["id"])
    assert job.owner == alice
    assert job.original_name == name
    assert job.image_format == shown
    assert (job.width, job.height) == (320, 200)
    assert job.size_bytes == len(data)
    assert job.sha256 == hashlib.sha256(data).hexdigest()
    assert job.state == "queued"
    with job.upload.open("rb") as fh:
        assert fh.read() == data
    with job.thumbnail.open("rb") as fh, Image.open(fh) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) <= 240


def test_it_queues_several_files_at_once_in_order(post_upload, sent_tasks):
    files = [upload_file(f"page-{i}.png", image_bytes("PNG", (50 + i, 40))) for i in range(3)]
    response = post_upload(*files)

    assert response.status_code == 200
    jobs = response.json()["jobs"]
    assert [j["name"] for j in jobs] == ["page-0.png", "page-1.png", "page-2.png"]
    assert [j["queue_position"] for j in jobs] == [1, 2, 3]
    assert Job.objects.count() == 3


def test_it_places_a_new_job_behind_those_already_waiting(post_upload, make_job, bob, sent_tasks):
    make_job(owner=bob)
    make_job(owner=bob)

    response = post_upload(upload_file("mine.png", image_bytes()))

    assert response.json()["jobs"][0]["queue_position"] == 3


def test_it_judges_the_file_by_its_bytes_not_its_name(post_upload, sent_tasks):
    response = post_upload(upload_file("scan.pdf", image_bytes("PNG"), content_type="application/pdf"))

    assert response.status_code == 200
    job = Job.objects.get()
    assert job.image_format == "PNG"
    assert job.original_name == "scan.pdf"


def test_it_stores_the_chosen_language(post_upload, sent_tasks):
    response = post_upload(upload_file("a.png", image_bytes()), language="eslav")

    assert response.json()["jobs"][0]["language"] == "eslav"
    assert Job.objects.get().language == "eslav"


def test_it_uses_the_default_language_when_none_is_chosen(post_upload, sent_tasks, settings):
    post_upload(upload_file("a.png", image_bytes()))

    assert Job.objects.get().language == settings.OCRDASH_OCR_LANGUAGE


def test_it_refuses_an_unknown_language(post_upload, sent_tasks, media_root):
    response = post_upload(upload_file("a.png", image_bytes()), language="klingon")

    assert response.status_code == 400
    [refusal] = response.json()["refused"]
    assert "klingon" in refusal["error"]
    assert not Job.objects.exists()
    assert stored_files(media_root) == []


def test_it_stores_the_upload_under_a_safe_name_inside_media(post_upload, sent_tasks, media_root):
    post_upload(upload_file("my scan (1) ü.png", image_bytes()))

    job = Job.objects.get()
    assert job.original_name == "my scan (1) ü.png"
    stored = media_root / job.upload.name
    assert stored.is_file()
    assert stored.resolve().is_relative_to(media_root.resolve())
    assert " " not in stored.name and "(" not in stored.name


def test_it_keeps_two_uploads_of_the_same_file_apart(post_upload, sent_tasks):
    data = image_bytes()
    post_upload(upload_file("a.png", data))
    post_upload(upload_file("a.png", data))

    first, second = Job.objects.order_by("id")
    assert first.upload.name != second.upload.name
    assert first.upload.read() == second.upload.read() == data


def test_it_sends_the_task_to_celery_only_after_commit(
    post_upload, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_upload(upload_file("a.png", image_bytes()))
        assert sent_tasks == []

    job_id = response.json()["jobs"][0]["id"]
    assert len(callbacks) == 1
    queued_at = Job.objects.get(pk=job_id).queued_at.isoformat()
    assert sent_tasks == [
        {"name": TASK, "args": [job_id], "kwargs": {"queued_at": queued_at}, "queue": "gpu", "priority": 6}
    ]


def test_it_sends_one_task_per_accepted_file(post_upload, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_upload(
            upload_file("a.png", image_bytes()),
            upload_file("b.txt.png", b"not an image"),
            upload_file("c.jpg", image_bytes("JPEG")),
        )

    ids = [j["id"] for j in response.json()["jobs"]]
    assert len(ids) == 2
    assert [call["args"] for call in sent_tasks] == [[ids[0]], [ids[1]]]
    assert {call["queue"] for call in sent_tasks} == {"gpu"}


def test_it_publishes_the_new_job_to_the_events_group(
    post_upload, sent_tasks, event_listener, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_upload(upload_file("live.png", image_bytes()))

    job_id = response.json()["jobs"][0]["id"]
    event = event_listener.next_job_event(job_id)
    assert event["job"]["state"] == "queued"
    assert event["job"]["queue_position"] == 1
    assert event["job"]["name"] == "live.png"
    assert event["job"]["owner"] == "alice"


def test_it_redirects_to_the_upload_page_with_a_message_for_a_form_post(post_upload, sent_tasks, alice_client):
    response = post_upload(
        upload_file("a.png", image_bytes()), upload_file("b.png", image_bytes()), json=False
    )

    assert response.status_code == 302
    assert response["Location"] == "/upload/"
    page = alice_client.get("/upload/")
    assert "2 job(s) queued." in page.content.decode()
    assert Job.objects.count() == 2


def test_it_lists_the_new_job_on_the_upload_page(post_upload, sent_tasks, alice_client):
    post_upload(upload_file("invoice-7.png", image_bytes()))

    page = alice_client.get("/upload/").content.decode()
    job = Job.objects.get()
    assert f'data-job-id="{job.pk}"' in page
    assert "invoice-7.png" in page


def test_it_serves_the_stored_thumbnail(post_upload, sent_tasks, alice_client):
    post_upload(upload_file("a.png", image_bytes("PNG", (600, 300))))

    job = Job.objects.get()
    response = alice_client.get(f"/jobs/{job.pk}/thumbnail.jpg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(b"".join(response.streaming_content))) as thumb:
        assert thumb.size == (240, 120)


def test_it_stores_nothing_but_the_upload_and_its_thumbnail(post_upload, sent_tasks, media_root):
    post_upload(upload_file("a.png", image_bytes()))

    job = Job.objects.get()
    assert stored_files(media_root) == sorted([media_root / job.upload.name, media_root / job.thumbnail.name])


def test_it_stores_the_chosen_task(post_upload, sent_tasks):
    response = post_upload(upload_file("a.png", image_bytes()), mode="layout_only")

    assert response.status_code == 200
    assert Job.objects.get().mode == "layout_only"


def test_the_full_layout_is_the_default_task(post_upload, sent_tasks):
    post_upload(upload_file("a.png", image_bytes()))

    assert Job.objects.get().mode == "layout_all"


@pytest.mark.parametrize("mode", ["grounding", "markdown"])
def test_it_refuses_a_task_an_upload_cannot_ask_for(post_upload, sent_tasks, mode):
    response = post_upload(upload_file("a.png", image_bytes()), mode=mode)

    assert response.status_code == 400
    assert mode in response.json()["refused"][0]["error"]
    assert not Job.objects.exists()


def test_the_upload_page_offers_the_tasks_with_what_each_gives(alice_client):
    html = alice_client.get("/upload/").content.decode()

    for value in ("layout_all", "layout_only", "text"):
        assert f'value="{value}"' in html
    assert 'value="grounding"' not in html
    assert "boxes and categories without the text" in html
