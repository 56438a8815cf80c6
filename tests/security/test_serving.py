"""How pages and user content leave the server: the PNG named x.html, files stored under old
names, the headers on every page, sandboxed downloads of the model's output."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from ocr_app import serving
from ocr_app.models import ApiToken, Job, Page
from tests.security.hostile import HTML_PAGE, png
from tests.security.test_hostile_files import body_of, browser_multipart

pytestmark = pytest.mark.django_db


def polyglot_upload(client, **headers):
    body, content_type = browser_multipart("x.html", png(text={"Comment": HTML_PAGE.decode()}))
    response = client.post("/upload/", body, content_type=content_type, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.content[:300]
    return Job.objects.get(pk=response.json()["jobs"][0]["id"])


def test_a_png_uploaded_as_x_html_is_served_as_a_png_never_as_html(alice_client, sent_tasks):
    job = polyglot_upload(alice_client)

    assert job.upload.name.endswith(".png") and ".html" not in job.upload.name
    sent = job.upload.open("rb").read()
    assert sent.startswith(b"\x89PNG\r\n\x1a\n") and HTML_PAGE in sent  # the polyglot, as uploaded
    for url in (f"/jobs/{job.pk}/image", f"/jobs/{job.pk}/pages/1/image"):
        response = alice_client.get(url)
        assert response.status_code == 200 and body_of(response) == sent, url  # its bytes, unchanged
        assert response["Content-Type"] == "image/png", url
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]
        assert "attachment" not in response.get("Content-Disposition", "")
    original = alice_client.get(f"/jobs/{job.pk}/original")
    assert original.status_code == 200 and body_of(original) == sent
    assert original["Content-Type"] == "image/png"
    assert original["Content-Disposition"] == 'attachment; filename="x.png"'
    assert original["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in original["Content-Security-Policy"]


def test_a_file_stored_under_an_old_style_name_is_served_by_its_detected_type(alice, alice_client):
    # Stored before names carried the detected extension: the user's own "x.html" is on disk.
    job = Job(owner=alice, original_name="x.html", image_format="PNG", size_bytes=10, width=64, height=48,
              sha256="a" * 64, state="succeeded")  # fmt: skip
    job.upload.save("x.html", ContentFile(png()), save=False)
    job.save()
    Page.objects.create(job=job, number=1, state=Page.SUCCEEDED)
    assert job.upload.name.endswith(".html")

    for url in (f"/jobs/{job.pk}/image", f"/jobs/{job.pk}/original", f"/jobs/{job.pk}/pages/1/image"):
        response = alice_client.get(url)
        assert response.status_code == 200 and body_of(response) == png(), url
        assert response["Content-Type"] == "image/png", url
        assert "sandbox" in response["Content-Security-Policy"]
    assert alice_client.get(f"/jobs/{job.pk}/original")["Content-Disposition"] == 'attachment; filename="x.png"'


def test_the_api_upload_of_the_polyglot_is_served_the_same_way(alice, sent_tasks):
    key = ApiToken.create_for(alice, "script")[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    body, content_type = browser_multipart("x.html", png(text={"Comment": HTML_PAGE.decode()}))
    job_id = api.post("/api/v1/jobs", body, content_type=content_type).json()["jobs"][0]["id"]

    assert Job.objects.get(pk=job_id).upload.name.endswith(".png")
    client = Client()
    client.force_login(alice)
    assert client.get(f"/jobs/{job_id}/image")["Content-Type"] == "image/png"


def csp_of(response) -> dict[str, list[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize(
    "url", ["/login/", "/", "/upload/", "/history/", "/profile/", "/api/docs/", "/admin/", "/admin/ocr_app/job/"]
)
def test_every_html_page_carries_the_policy_and_the_security_headers(url, make_user):
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    response = client.get(url)

    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    csp = csp_of(response)
    assert csp["script-src"] == ["'self'"], "no inline script, no eval, nothing from elsewhere"
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.content.decode(), "an inline script the policy would block"
    assert " style=" not in response.content.decode(), "an inline style the policy would block"


def test_redoc_alone_may_style_itself_inline_and_still_runs_only_our_scripts(alice_client):
    csp = csp_of(alice_client.get("/api/redoc/"))

    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]


def test_the_model_output_downloads_are_sandboxed(alice, alice_client):
    page = {"elements": [{"index": 0, "category": "Text", "bbox": [0, 0, 10, 10], "text": "<b>hi</b>"}],
            "text": "hi", "mode": "layout_all", "sent_size": [64, 48], "original_size": [64, 48]}  # fmt: skip
    job = Job.objects.create(owner=alice, original_name="a.png", image_format="PNG", size_bytes=1, width=64,
                             height=48, sha256="b" * 64, state="succeeded", text="hi", result={"page": page})
    Page.objects.create(job=job, number=1, state=Page.SUCCEEDED, text="hi", result={"page": page})

    # The model's "<b>" is shown as written in every format a viewer might render, never as markup.
    shown = {"md": "&lt;b>hi&lt;/b>", "md_nohf": "&lt;b>hi&lt;/b>", "html": "&lt;b&gt;hi&lt;/b&gt;"}
    for fmt in ("txt", "md", "md_nohf", "html", "json", "layout"):
        response = alice_client.get(f"/api/v1/jobs/{job.pk}/result?format={fmt}")
        assert response.status_code == 200, fmt
        assert response["Content-Security-Policy"] == serving.USER_CONTENT_CSP, fmt
        assert response["X-Content-Type-Options"] == "nosniff"
        body = response.content.decode()
        if fmt in shown:
            assert shown[fmt] in body and "<b>" not in body, (fmt, body[:300])
    for url in (f"/jobs/{job.pk}/text.txt", f"/jobs/{job.pk}/result.json", f"/jobs/{job.pk}/pages/1/text.txt"):
        assert alice_client.get(url)["Content-Security-Policy"] == serving.USER_CONTENT_CSP, url
    assert json.loads(alice_client.get(f"/jobs/{job.pk}/result.json").content)["job"]["id"] == job.pk
