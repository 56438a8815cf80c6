"""PDFs: accepted or refused at upload, read page by page by the worker (in-process, with a backend
that behaves as the real ones at their edges), progress per page, a failed page retried alone."""

from __future__ import annotations

import json

import pytest

from ocr_app import events, jobactions
from ocr_app.models import BackendSettings, Job
from ocr_app.queueing import create_job
from ocr_app.validation import check_upload
from tests.doubles.fake_backend import layout_answer, numbered
from tests.unit.test_pdf import A4, A4_LANDSCAPE, build_pdf, encrypt
from tests.web.conftest import upload_file
from workers import tasks

pytestmark = pytest.mark.django_db


def three_pages() -> bytes:
    return build_pdf([
        {"size": A4, "lines": ["First page"]},
        {"size": A4_LANDSCAPE, "lines": ["Second page"]},
        {"size": A4, "lines": ["Third page"]},
    ])


@pytest.fixture
def backend(fake_worker):
    """The worker on the CPU engine, whose (fake) backends answer "text of call N" for each page;
    the calls listed in `backend.fail` raise a BackendError, and `backend.on_call(n)` runs before
    each answer (e.g. to cancel the job). Yields the fakes' shared records."""
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()
    return fake_worker(answer=numbered).fakes


@pytest.fixture
def sent_events(monkeypatch):
    seen = []
    monkeypatch.setattr(events, "_send", lambda kind, body: seen.append((kind, body)))
    return seen


def pdf_job(alice, data=None, mode="text", text_layer="ocr") -> Job:
    """A PDF job, OCR'd by default (its pages have a text layer, which `auto` would read instead)."""
    data = data or three_pages()
    checked = check_upload("report.pdf", data, 10_000_000, 100_000_000, 50)
    return create_job(alice, "report.pdf", data, checked, "multi", mode, text_layer=text_layer)


def run(job) -> Job:
    tasks.run_job.apply(args=[job.pk])
    return Job.objects.get(pk=job.pk)


# -- upload ---------------------------------------------------------------------------------


def test_a_pdf_upload_becomes_one_job_with_a_page_row_per_page(post_upload, sent_tasks, alice_client):
    response = post_upload(upload_file("report.pdf", three_pages(), "application/pdf"))

    assert response.status_code == 200, response.content
    job = Job.objects.get()
    assert job.image_format == "PDF" and job.page_count == 3
    assert (job.width, job.height) == (1654, 2339)  # A4 at 200 dpi
    assert [(p.number, p.state) for p in job.pages.all()] == [(1, "pending"), (2, "pending"), (3, "pending")]
    assert job.thumbnail
    thumb = alice_client.get(f"/jobs/{job.pk}/thumbnail.jpg")
    assert thumb.status_code == 200
    assert alice_client.get(f"/jobs/{job.pk}/image")["Content-Type"] == "image/png"


def test_the_api_takes_a_pdf_and_says_how_many_pages_it_has(alice, sent_tasks, django_capture_on_commit_callbacks):
    from tests.web.api_support import api_client

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(alice).post("/api/v1/jobs", {"file": upload_file("r.pdf", three_pages())})

    assert response.status_code == 202
    [job] = response.json()["jobs"]
    assert job["pages"] == 3 and job["page"] is None and job["file"]["format"] == "PDF"


def test_a_pdf_over_the_page_limit_is_refused_with_the_limit(post_upload, sent_tasks, settings):
    settings.MAX_PDF_PAGES = 2

    response = post_upload(upload_file("report.pdf", three_pages()))

    assert response.status_code == 400
    assert "has 3 pages; the limit is 2" in response.json()["refused"][0]["error"]
    assert not Job.objects.exists()


def test_a_pdf_that_needs_a_password_is_refused(post_upload, sent_tasks):
    locked = encrypt(three_pages(), "secret", "owner", "AES-128")

    response = post_upload(upload_file("locked.pdf", locked))

    assert response.status_code == 400
    assert "password" in response.json()["refused"][0]["error"]
    assert not Job.objects.exists()


def test_a_broken_pdf_is_refused(post_upload, sent_tasks):
    response = post_upload(upload_file("broken.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"))

    assert response.status_code == 400
    assert "damaged" in response.json()["refused"][0]["error"]
    assert not Job.objects.exists()


# -- the worker -----------------------------------------------------------------------------


def test_the_worker_reads_the_pages_in_turn_and_reports_each(backend, alice, sent_events):
    job = run(pdf_job(alice))

    assert job.state == "succeeded", job.message
    assert job.text == "text of call 1\n\ntext of call 2\n\ntext of call 3"
    pages = list(job.pages.all())
    assert [p.state for p in pages] == ["succeeded"] * 3
    assert [(p.width, p.height, p.dpi) for p in pages] == [(1654, 2339, 200), (2339, 1654, 200), (1654, 2339, 200)]
    assert [call.size for call in backend.calls] == [(1654, 2339), (2339, 1654), (1654, 2339)]
    assert all(p.image for p in pages) and pages[1].text == "text of call 2"
    assert pages[0].result["page"]["page_number"] == 1
    running = [b["job"] for kind, b in sent_events if kind == "job.status" and b["job"]["state"] == "running"]
    assert [j["page"] for j in running if j["page"]][:1] == [1]
    assert {(j["page"], j["pages"]) for j in running if j["page"]} == {(1, 3), (2, 3), (3, 3)}
    assert sorted({j["progress"] for j in running}) == [0.0, 0.3333, 0.6667, 1.0]
    assert any(j["eta_seconds"] is not None for j in running if j["page"] == 3)
    assert job.progress == 1.0 and job.current_page is None


def test_a_failed_page_does_not_stop_the_others_and_is_named(backend, alice):
    backend.fail = {2}

    job = run(pdf_job(alice))

    assert job.state == "succeeded"
    assert [p.state for p in job.pages.all()] == ["succeeded", "failed", "succeeded"]
    assert "Page 2 of 3 failed" in job.message and "could not read call 2" in job.message
    assert job.text == "text of call 1\n\ntext of call 3"


def test_retry_page_reads_only_the_pages_that_did_not_succeed(backend, alice, alice_client, sent_tasks):
    backend.fail = {2}
    job = run(pdf_job(alice))
    page_html = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Retry page 2" in page_html and "Retry page 1" not in page_html

    response = alice_client.post(f"/jobs/{job.pk}/retry-pages")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == "queued"
    assert [p.state for p in job.pages.all()] == ["succeeded", "pending", "succeeded"]
    job = run(job)

    assert job.state == "succeeded" and job.message == ""
    assert len(backend.calls) == 4  # three the first time, page 2 alone the second
    assert job.text == "text of call 1\n\ntext of call 4\n\ntext of call 3"


def test_a_job_whose_every_page_failed_fails(backend, alice):
    backend.fail = {1, 2, 3}

    job = run(pdf_job(alice))

    assert job.state == "failed"
    assert job.message.startswith("Every page failed. Page 1: The engine could not read call 1.")


def test_a_cancel_stops_the_job_between_pages(backend, alice):
    job = pdf_job(alice)

    def cancel_now(n):
        if n == 1:
            Job.objects.filter(pk=job.pk).update(state="cancelled", message="Cancelled by alice.")

    backend.on_call = cancel_now
    job = run(job)

    assert job.state == "cancelled" and job.message == "Cancelled by alice."
    assert len(backend.calls) == 1
    assert [p.state for p in job.pages.all()] == ["succeeded", "pending", "pending"]


def test_an_image_job_is_one_page(backend, make_job):
    job = run(make_job(with_file=True, mode="text"))

    assert job.state == "succeeded"
    [page] = job.pages.all()
    assert page.state == "succeeded" and not page.image and (page.width, page.height) == (40, 30)
    assert job.text == page.text == "text of call 1"


def test_retrying_a_whole_job_reads_every_page_again(backend, alice):
    job = run(pdf_job(alice))

    jobactions.retry_job(job, alice)

    assert [p.state for p in job.pages.all()] == ["pending"] * 3
    assert run(job).text == "text of call 4\n\ntext of call 5\n\ntext of call 6"


# -- the job page ---------------------------------------------------------------------------


def test_the_job_page_lists_the_pages_with_their_image_and_text(backend, alice, alice_client):
    job = run(pdf_job(alice))

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    fragment = alice_client.get(f"/jobs/{job.pk}/pages/").content.decode()

    for n in (1, 2, 3):
        assert f"/jobs/{job.pk}/pages/{n}/image" in html and f"/jobs/{job.pk}/pages/{n}/image" in fragment
    assert "text of call 2" in fragment and "3 pages" in html
    image = alice_client.get(f"/jobs/{job.pk}/pages/2/image")
    assert image["Content-Type"] == "image/png"
    assert alice_client.get(f"/jobs/{job.pk}/pages/2/text.txt").content.decode() == "text of call 2"
    assert alice_client.get(f"/jobs/{job.pk}/pages/9/image").status_code == 404


def test_the_markdown_of_a_document_holds_every_page(backend, alice, alice_client):
    job = run(pdf_job(alice))

    body = alice_client.get(f"/api/v1/jobs/{job.pk}/result?format=md").content.decode()

    assert "text of call 1" in body and "text of call 3" in body


def test_a_page_still_running_shows_the_pages_done_so_far(backend, alice, alice_client):
    job = pdf_job(alice)
    seen = {}

    def look(n):
        if n == 2:
            seen["fragment"] = alice_client.get(f"/jobs/{job.pk}/pages/").content.decode()

    backend.on_call = look
    run(job)

    assert "text of call 1" in seen["fragment"]
    assert 'data-page="2" data-state="running"' in seen["fragment"]
    assert 'data-page="3" data-state="pending"' in seen["fragment"]


def test_a_pdf_page_image_while_nothing_was_rendered_yet_is_rendered_for_page_one(alice, alice_client, sent_tasks):
    job = pdf_job(alice)

    assert alice_client.get(f"/jobs/{job.pk}/pages/1/image")["Content-Type"] == "image/png"
    assert alice_client.get(f"/jobs/{job.pk}/pages/2/image").status_code == 404


# -- exports --------------------------------------------------------------------------------


LAYOUT_ANSWER = (
    '[{"bbox": [10, 10, 300, 40], "category": "Page-header", "text": "Annual report"}, '
    '{"bbox": [10, 60, 300, 120], "category": "Title", "text": "Results of page PAGE"}, '
    '{"bbox": [10, 130, 300, 200], "category": "Text", "text": "Body of page PAGE."}]'
)


@pytest.fixture
def layout_job(fake_worker, dots_installed, alice):
    """A three-page PDF read in the full layout task by a dots.ocr backend (its answers given):
    transformers, as the planner picks it on the seed card; page 2 fails."""
    cfg = BackendSettings.load()
    cfg.backend = "transformers"
    cfg.save()
    fake_worker(gpu="rtx3060_shared", answer=layout_answer(LAYOUT_ANSWER), fail={2})
    job = run(pdf_job(alice, mode="layout_all"))
    assert job.state == "succeeded", job.message
    return job


def get(client, job, query):
    response = client.get(f"/api/v1/jobs/{job.pk}/result?{query}")
    return response, response.content.decode()


def test_the_whole_document_in_each_format(layout_job, alice_client):
    job = layout_job

    _, md = get(alice_client, job, "format=md")
    _, nohf = get(alice_client, job, "format=md_nohf")
    response, html = get(alice_client, job, "format=html")
    _, txt = get(alice_client, job, "format=txt")
    layout_response, layout = get(alice_client, job, "format=layout")

    assert "Results of page 1" in md and "Results of page 3" in md and "Annual report" in md
    assert "Results of page 3" in nohf and "Annual report" not in nohf
    assert response["Content-Type"] == "text/html; charset=utf-8" and "Body of page 3." in html
    assert "Body of page 1." in txt and "Body of page 3." in txt
    pages = json.loads(layout)["pages"]
    assert [p["page"] for p in pages] == [1, 3]
    assert pages[0]["elements"][1]["bbox"] == [10, 60, 300, 120]  # the page image's own pixels
    assert f"report-{job.pk}-layout.json" in layout_response["Content-Disposition"]


def test_one_page_in_each_format(layout_job, alice_client):
    job = layout_job

    response, md = get(alice_client, job, "format=md&page=3")
    _, txt = get(alice_client, job, "format=txt&page=3")
    _, layout = get(alice_client, job, "format=layout&page=3")
    _, whole = get(alice_client, job, "format=json&page=3")

    assert "Results of page 3" in md and "page 1" not in md
    assert f"report-{job.pk}-page3.md" in response["Content-Disposition"]
    assert "Body of page 3." in txt and "page 1" not in txt
    assert [p["page"] for p in json.loads(layout)["pages"]] == [3]
    assert json.loads(whole)["page"] == 3 and json.loads(whole)["result"]["page"]["page_number"] == 3


@pytest.mark.parametrize(("query", "status", "words"), [
    ("format=md&page=2", 409, "Page 2 of job"),
    ("format=md&page=4", 400, "1 to 3"),
    ("format=md&page=zero", 400, "1 to 3"),
])
def test_a_page_without_a_result_or_out_of_range_is_an_error_that_says_so(layout_job, alice_client, query, status,
                                                                            words):
    response, _ = get(alice_client, layout_job, query)

    assert response.status_code == status
    assert words in response.json()["error"]


def test_the_job_page_offers_each_download_for_the_document_and_each_page(layout_job, alice_client):
    job = layout_job

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    for fmt in ("md", "md_nohf", "html", "txt", "layout", "json"):
        assert f"/api/v1/jobs/{job.pk}/result?format={fmt}\"" in html
        assert f"/api/v1/jobs/{job.pk}/result?format={fmt}&amp;page=3" in html
    assert "format=md&amp;page=2" not in html  # page 2 failed: nothing to download
