"""Every hostile file (tests/security/hostile.py) uploaded as a browser sends it: refused with a
message that names it and nothing stored, or accepted and from then on served only as inert bytes
of its detected type (never HTML, never sniffed, sandboxed, the original as an attachment), its
name shown as text and stored nowhere but in the database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.utils.html import escape
from django.utils.http import content_disposition_header

from ocr_app import serving
from ocr_app.models import Job
from tests.security.hostile import Hostile, hostile_files

pytestmark = pytest.mark.django_db

HOSTILE = hostile_files()
BROWSER_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "PDF": "image/png"}  # a PDF page is shown as PNG


def browser_multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """The upload form's body as a browser writes it (HTML's rules: `"`, CR and LF in a file name
    are percent-escaped)."""
    boundary = "----ocrdash" + uuid.uuid4().hex
    quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{quoted}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(client, hostile: Hostile):
    body, content_type = browser_multipart(hostile.name, hostile.data)
    return client.post("/upload/", body, content_type=content_type, headers={"Accept": "application/json"})


def assert_inert(response, content_type: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == serving.USER_CONTENT_CSP
    assert "sandbox" in response["Content-Security-Policy"].split("; ")


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_suite_counts_its_hostile_inputs():
    assert len({h.key for h in HOSTILE}) == len(HOSTILE)
    refused = sum(1 for h in HOSTILE if h.accepted_as is None)
    print(f"\nhostile files: {len(HOSTILE)} ({refused} refused, {len(HOSTILE) - refused} accepted as inert bytes)")


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.accepted_as is None], ids=lambda h: h.key)
def test_a_hostile_file_is_refused_with_a_message_that_names_it(hostile, alice_client, sent_tasks, media_root):
    response = upload(alice_client, hostile)

    assert response.status_code == 400, response.content[:300]
    (refusal,) = response.json()["refused"]
    assert hostile.refused_because in refusal["error"], refusal
    assert hostile.shown_name in refusal["error"] or not hostile.named, refusal
    assert not Job.objects.exists() and not sent_tasks
    assert not [p for p in Path(media_root).rglob("*") if p.is_file()], "a refused file left something stored"


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.accepted_as], ids=lambda h: h.key)
def test_a_hostile_file_that_is_a_real_image_is_served_only_as_inert_bytes_of_its_type(
    hostile, alice_client, sent_tasks, media_root
):
    response = upload(alice_client, hostile)
    assert response.status_code == 200, response.content[:300]
    job = Job.objects.get(pk=response.json()["jobs"][0]["id"])
    assert job.image_format == hostile.accepted_as

    # Stored under a name of ours: inside the media folder, plain ASCII, the detected extension.
    stored = Path(job.upload.path).resolve()
    assert Path(media_root).resolve() in stored.parents
    assert stored.name.isascii() and stored.suffix == "." + serving.extension(job.image_format)
    # The name a person sees: no control or direction-changing characters, at most 255 characters.
    assert len(job.original_name) <= 255
    assert not any(c in job.original_name for c in "\x00\r\n\u202e")

    image = alice_client.get(f"/jobs/{job.pk}/image")
    assert_inert(image, BROWSER_TYPES[job.image_format])
    if job.image_format != "PDF":
        assert body_of(image) == hostile.data
    assert_inert(alice_client.get(f"/jobs/{job.pk}/thumbnail.jpg"), "image/jpeg")

    original = alice_client.get(f"/jobs/{job.pk}/original")
    assert_inert(original, serving.content_type(job.image_format))
    expected_name = serving.download_name(job.original_name, job.image_format)
    assert original["Content-Disposition"] == content_disposition_header(True, expected_name)
    assert expected_name.endswith("." + serving.extension(job.image_format))
    assert body_of(original) == hostile.data

    # Its name on the pages is text, never markup.
    for page in (f"/jobs/{job.pk}/", "/history/", "/upload/"):
        html = alice_client.get(page).content.decode()
        assert "<script>alert" not in html, page
    assert escape(job.original_name) in alice_client.get(f"/jobs/{job.pk}/").content.decode()
