"""POST /api/v1/jobs: uploads become queued jobs; bad input gets a 4xx that names the problem, never a
500; an Idempotency-Key makes a retried request safe."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ocr_app.models import IdempotencyKey, Job, JobOrigin
from tests.web.api_support import api_client, error_of
from tests.web.conftest import image_bytes, stored_files, upload_file

pytestmark = pytest.mark.django_db


class CommittingClient:
    """A token client whose requests run the on-commit callbacks (the task sends) at their end."""

    def __init__(self, client, capture):
        self.client, self.capture = client, capture

    def post(self, *args, **kwargs):
        with self.capture(execute=True):
            return self.client.post(*args, **kwargs)


@pytest.fixture
def api(alice, django_capture_on_commit_callbacks):
    return CommittingClient(api_client(alice), django_capture_on_commit_callbacks)


def png(name="scan.png", size=(64, 48)):
    return upload_file(name, image_bytes("PNG", size))


def test_it_queues_an_image_and_answers_202_with_the_job_and_its_urls(api, alice, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": png()})

    assert response.status_code == 202
    body = response.json()
    assert body["refused"] == []
    [job] = body["jobs"]
    assert job["state"] == "queued" and job["queue_position"] == 1 and job["owner"] == "alice"
    assert job["file"] == {"name": "scan.png", "format": "PNG", "width": 64, "height": 48,
                           "size_bytes": job["file"]["size_bytes"], "sha256": job["file"]["sha256"]}
    assert job["urls"]["self"] == f"http://testserver/api/v1/jobs/{job['id']}"
    assert job["urls"]["result"].endswith(f"/api/v1/jobs/{job['id']}/result")
    assert job["urls"]["page"].endswith(f"/jobs/{job['id']}/")
    assert response["Location"] == job["urls"]["self"]
    row = Job.objects.get(pk=job["id"])
    assert row.owner == alice and row.upload and row.language == "multi"
    assert row.origin.via == JobOrigin.API and row.origin.token.user == alice
    assert [t["args"] for t in sent_tasks] == [[job["id"]]]


def test_it_queues_several_files_from_file_and_files_in_order(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": [png("a.png"), png("b.png")], "files": [png("c.png")]})

    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert [j["name"] for j in jobs] == ["a.png", "b.png", "c.png"]
    assert [j["queue_position"] for j in jobs] == [1, 2, 3]
    assert "Location" not in response


def test_it_records_the_language_and_the_backend_asked_for(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": png(), "language": "eslav", "backend": "rapidocr", "mode": "text"})

    job = Job.objects.get(pk=response.json()["jobs"][0]["id"])
    assert response.status_code == 202
    assert job.language == "eslav" and job.backend == "rapidocr"
    assert response.json()["jobs"][0]["backend"] == "rapidocr"
    assert job.mode == job.origin.mode == "text" and job.origin.options["backend"] == "rapidocr"
    assert response.json()["jobs"][0]["mode"] == "text"


@pytest.mark.parametrize("mode", ["layout_all", "layout_only", "text"])
def test_it_takes_each_task_mode_an_upload_can_ask_for(api, sent_tasks, mode):
    response = api.post("/api/v1/jobs", {"file": png(), "mode": mode})

    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["jobs"][0]["id"]).mode == mode


def test_the_full_layout_is_the_default_task(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": png()})

    assert response.json()["jobs"][0]["mode"] == "layout_all"
    assert Job.objects.get().mode == "layout_all"


def test_auto_backend_leaves_the_choice_to_the_server(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": png(), "backend": "auto"})

    assert Job.objects.get(pk=response.json()["jobs"][0]["id"]).backend == ""


def test_good_files_are_queued_and_bad_ones_listed(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"files": [png("good.png"), upload_file("notes.png", b"just text")]})

    assert response.status_code == 202
    body = response.json()
    assert [j["name"] for j in body["jobs"]] == ["good.png"]
    assert body["refused"] == [{"name": "notes.png", "code": "refused",
                                "error": "notes.png: this is not an image ocrdash can read; send PNG, JPEG, WebP, "
                                         "TIFF, BMP, GIF, HEIF, AVIF, JPEG2000, or a PDF."}]


def test_no_file_is_a_400_that_says_which_field(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"language": "multi"})

    assert response.status_code == 400
    body = error_of(response)
    assert body["code"] == "no_file" and "`file`" in body["error"]
    assert not sent_tasks


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        ("notes.png", b"just some text", "not an image ocrdash can read"),
        ("empty.png", b"", "the file is empty"),
        ("scan.ppm", image_bytes("PPM"), "PPM images are not accepted"),
        ("cut.png", image_bytes("PNG", (300, 300))[:200], "damaged or incomplete"),
    ],
)
def test_a_file_that_is_not_a_usable_image_is_a_400_with_check_images_words(
    api, sent_tasks, media_root, name, data, words
):
    response = api.post("/api/v1/jobs", {"file": upload_file(name, data)})

    assert response.status_code == 400
    body = error_of(response)
    assert body["code"] == "refused" and words in body["error"] and name in body["error"]
    assert body["refused"][0]["name"] == name
    assert not Job.objects.exists() and not sent_tasks and stored_files(media_root) == []


def test_a_file_over_the_size_limit_is_a_413(api, sent_tasks, settings):
    settings.MAX_UPLOAD_BYTES = 1000

    response = api.post("/api/v1/jobs", {"file": png(size=(400, 400))})

    assert response.status_code == 413
    body = error_of(response)
    assert body["code"] == "too_large" and "over the limit of 1000 bytes" in body["error"]


def test_an_image_over_the_pixel_limit_is_a_400(api, sent_tasks, settings):
    settings.MAX_IMAGE_PIXELS = 1000

    response = api.post("/api/v1/jobs", {"file": png(size=(100, 100))})

    assert response.status_code == 400
    assert "over the limit of 1,000" in error_of(response)["error"]


def test_too_many_files_is_a_400_and_nothing_is_queued(api, sent_tasks, settings):
    settings.MAX_FILES_PER_UPLOAD = 2

    response = api.post("/api/v1/jobs", {"files": [png("a.png"), png("b.png"), png("c.png")]})

    assert response.status_code == 400
    assert "at most 2" in error_of(response)["error"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", '{"file": "scan.png"}'),
        ("text/plain", "scan"),
        ("application/x-www-form-urlencoded", "a=b"),
    ],
)
def test_a_body_that_is_not_multipart_is_a_415(api, content_type, body):
    response = api.post("/api/v1/jobs", body, content_type=content_type)

    assert response.status_code == 415
    body = error_of(response)
    assert "multipart/form-data" in body["error"] and content_type in body["error"]


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"language": "klingon"}, "language", "not a valid choice"),
        ({"backend": "tpu"}, "backend", "not a valid choice"),
        ({"mode": "grounding"}, "mode", "needs its box"),
        ({"mode": "markdown"}, "mode", "not a valid choice"),
        ({"pages": "1-3"}, "pages", "PDFs"),
        ({"langauge": "multi"}, "langauge", "Unknown field"),
    ],
)
def test_a_bad_option_is_a_400_naming_it(api, sent_tasks, fields, param, words):
    response = api.post("/api/v1/jobs", {"file": png(), **fields})

    assert response.status_code == 400
    body = error_of(response)
    assert param in body["field_errors"] and words in body["error"]
    assert not Job.objects.exists()


# -- Idempotency-Key --------------------------------------------------------------------------------


def test_a_retried_request_with_the_same_key_makes_no_second_job(api, sent_tasks):
    first = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="upload-7")
    again = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="upload-7")

    assert first.status_code == again.status_code == 202
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Job.objects.count() == 1 and len(sent_tasks) == 1


def test_a_replay_shows_the_jobs_as_they_are_now_and_the_same_refusals(api, sent_tasks):
    files = lambda: {"files": [png("a.png"), upload_file("bad.png", b"nope")]}  # noqa: E731
    first = api.post("/api/v1/jobs", files(), HTTP_IDEMPOTENCY_KEY="k")
    Job.objects.update(state="cancelled")

    again = api.post("/api/v1/jobs", files(), HTTP_IDEMPOTENCY_KEY="k")

    assert again.json()["jobs"][0]["state"] == "cancelled"
    assert again.json()["refused"] == first.json()["refused"] != []


def test_the_same_key_with_another_request_is_a_422(api, sent_tasks):
    api.post("/api/v1/jobs", {"file": png("a.png")}, HTTP_IDEMPOTENCY_KEY="k")

    other_file = api.post("/api/v1/jobs", {"file": png("a.png", size=(10, 10))}, HTTP_IDEMPOTENCY_KEY="k")
    other_option = api.post("/api/v1/jobs", {"file": png("a.png"), "language": "eslav"}, HTTP_IDEMPOTENCY_KEY="k")

    for response in (other_file, other_option):
        assert response.status_code == 422
        assert error_of(response)["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_keys_belong_to_their_user(alice, bob, sent_tasks):
    a = api_client(alice).post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="same")
    b = api_client(bob).post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="same")

    assert a.status_code == b.status_code == 202
    assert a.json()["jobs"][0]["id"] != b.json()["jobs"][0]["id"]


def test_a_key_is_forgotten_after_a_day(api, sent_tasks):
    api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyKey.objects.update(created_at=IdempotencyKey.objects.get().created_at - timedelta(hours=25))

    again = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k")

    assert again.status_code == 202 and "Idempotent-Replayed" not in again
    assert Job.objects.count() == 2 and IdempotencyKey.objects.count() == 1


def test_a_refused_request_does_not_use_up_its_key(api, sent_tasks):
    refused = api.post("/api/v1/jobs", {"file": upload_file("x.png", b"nope")}, HTTP_IDEMPOTENCY_KEY="k")
    fixed = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k")

    assert refused.status_code == 400 and fixed.status_code == 202
    assert Job.objects.count() == 1


def test_an_overlong_key_is_a_400(api, sent_tasks):
    response = api.post("/api/v1/jobs", {"file": png()}, HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert response.status_code == 400
    assert "Idempotency-Key" in error_of(response)["error"]
