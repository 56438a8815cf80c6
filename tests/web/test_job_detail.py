"""The job page and its downloads: text, JSON result, image, original, status."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from PIL import Image

from core import languages
from ocr_app.models import Job
from tests.web.conftest import image_bytes, upload_file

pytestmark = pytest.mark.django_db

LINES = [
    {"text": "Привет, мир", "box": [[10, 12], [200, 12], [200, 48], [10, 48]], "score": 0.97},
    {"text": "second line", "box": [[10, 60], [180, 60], [180, 96], [10, 96]], "score": 0.91},
    {"text": "third & last", "box": [[10, 110], [150, 110], [150, 140], [10, 140]], "score": 0.88},
]
TEXT = "Привет, мир\nsecond line\nthird & last"


@pytest.fixture
def done_job(make_job):
    created = timezone.now() - timedelta(minutes=5)
    return make_job(
        name="отчёт 2024.png",
        with_file=True,
        state="succeeded",
        backend="rapidocr",
        language="eslav",
        text=TEXT,
        text_preview=TEXT[:200],
        result={"text": TEXT, "lines": LINES, "raw": "", "details": {}, "image_size": [400, 300]},
        created_at=created,
        started_at=created + timedelta(seconds=12.5),
        finished_at=created + timedelta(seconds=15.5),
        progress=1.0,
    )


def test_it_shows_the_facts_of_a_finished_job(alice_client, done_job):
    page = alice_client.get(f"/jobs/{done_job.pk}/").content.decode()

    assert '<h1 class="name">отчёт 2024.png</h1>' in page
    assert 'data-field="state">succeeded</span>' in page
    assert '<dd data-field="backend">rapidocr</dd>' in page
    assert "<dt>Owner</dt><dd>alice</dd>" in page
    assert '<dd data-field="waited_seconds">12.5 s</dd>' in page
    assert '<dd data-field="ran_seconds">3.0 s</dd>' in page
    assert "PNG, 40×30" in page


def test_it_says_what_the_jobs_language_reads(alice_client, done_job):
    lang = languages.get_language("eslav")

    page = alice_client.get(f"/jobs/{done_job.pk}/").content.decode()

    assert f"{lang.label} <span class=\"hint\">(reads {lang.reads})</span>" in page


def test_it_shows_an_unknown_language_code_as_it_is(alice_client, make_job):
    job = make_job(language="old-code")

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert "<dt>Language</dt><dd>old-code</dd>" in page


def test_it_shows_the_recognized_text_escaped(alice_client, done_job):
    page = alice_client.get(f"/jobs/{done_job.pk}/").content.decode()

    text = re.search(r'<pre id="text"[^>]*>(.*?)</pre>', page, re.S).group(1)
    assert text == "Привет, мир\nsecond line\nthird &amp; last"


def test_it_draws_one_polygon_per_line_box(alice_client, done_job):
    page = alice_client.get(f"/jobs/{done_job.pk}/").content.decode()

    assert 'viewBox="0 0 400 300"' in page
    polygons = re.findall(r'<polygon [^>]*points="([^"]+)"', page)
    assert len(polygons) == len(LINES)
    assert polygons[0].split() == ["10,12", "200,12", "200,48", "10,48"]


def test_it_shows_a_waiting_job_with_its_place_in_the_queue(alice_client, make_job):
    make_job()
    job = make_job()

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert '<dd data-field="queue_position">#2 in queue</dd>' in page
    assert '<dd data-field="waited_seconds">—</dd>' in page
    assert "The result appears here when the job finishes." in page
    assert "<polygon" not in page
    assert 'viewBox="0 0 40 30"' in page


def test_it_gives_the_status_payload_with_the_queue_position(alice_client, make_job):
    make_job()
    job = make_job(name="second.png")

    response = alice_client.get(f"/jobs/{job.pk}/status.json")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == job.pk
    assert body["state"] == "queued"
    assert body["queue_position"] == 2
    assert body["name"] == "second.png"
    assert body["owner"] == "alice"
    assert body["url"] == f"/jobs/{job.pk}/"


def test_it_gives_no_queue_position_once_the_job_ended(alice_client, done_job):
    body = alice_client.get(f"/jobs/{done_job.pk}/status.json").json()

    assert body["state"] == "succeeded"
    assert body["queue_position"] is None
    assert body["waited_seconds"] == 12.5
    assert body["ran_seconds"] == 3.0


def test_it_downloads_the_text_as_a_plain_attachment(alice_client, done_job):
    response = alice_client.get(f"/jobs/{done_job.pk}/text.txt")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode("utf-8") == TEXT
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=utf-8''{quote(f'отчёт 2024-{done_job.pk}.txt')}" in disposition


def test_it_downloads_the_result_as_a_json_attachment(alice_client, done_job):
    response = alice_client.get(f"/jobs/{done_job.pk}/result.json")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    assert quote(f"отчёт 2024-{done_job.pk}.json") in response["Content-Disposition"]
    body = json.loads(response.content)
    assert body["text"] == TEXT
    assert body["result"]["lines"] == LINES
    assert body["file"] == {
        "name": "отчёт 2024.png",
        "format": "PNG",
        "width": 40,
        "height": 30,
        "sha256": done_job.sha256,
        "size_bytes": done_job.size_bytes,
        "pages": 1,
    }
    assert body["job"]["state"] == "succeeded"
    assert body["finished_at"] == done_job.finished_at.isoformat()


def test_it_names_an_ascii_download_plainly(alice_client, make_job):
    job = make_job(name="scan.png", text="hello")

    response = alice_client.get(f"/jobs/{job.pk}/text.txt")

    assert response["Content-Disposition"] == f'attachment; filename="scan-{job.pk}.txt"'


def test_it_gives_an_empty_text_for_a_job_not_yet_done(alice_client, make_job):
    job = make_job()

    assert alice_client.get(f"/jobs/{job.pk}/text.txt").content == b""
    assert json.loads(alice_client.get(f"/jobs/{job.pk}/result.json").content)["result"] is None


def test_it_shows_a_tiff_job_as_png(post_upload, sent_tasks, alice_client):
    post_upload(upload_file("fax.tif", image_bytes("TIFF", (120, 80))))
    job = Job.objects.get()

    response = alice_client.get(f"/jobs/{job.pk}/image")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == "PNG"
        assert img.size == (120, 80)


def test_it_shows_a_png_job_as_it_was_sent(post_upload, sent_tasks, alice_client):
    data = image_bytes("PNG", (70, 50))
    post_upload(upload_file("a.png", data))
    job = Job.objects.get()

    response = alice_client.get(f"/jobs/{job.pk}/image")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == data


def test_it_gives_back_the_original_bytes_under_the_original_name(post_upload, sent_tasks, alice_client):
    data = image_bytes("TIFF", (30, 20))
    post_upload(upload_file("Fax vom Amt.tiff", data))
    job = Job.objects.get()

    response = alice_client.get(f"/jobs/{job.pk}/original")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Disposition"] == 'attachment; filename="Fax vom Amt.tiff"'


def test_it_answers_404_for_a_thumbnail_that_was_never_made(alice_client, make_job):
    job = make_job()

    assert alice_client.get(f"/jobs/{job.pk}/thumbnail.jpg").status_code == 404


def test_it_refuses_to_post_to_a_job_page(alice_client, done_job):
    for suffix in ["", "text.txt", "result.json", "status.json"]:
        assert alice_client.post(f"/jobs/{done_job.pk}/{suffix}").status_code == 405
