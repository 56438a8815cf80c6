"""Multi-page TIFFs and born-digital PDFs in the worker (in-process, fake engines): a TIFF is read
like a PDF, page by page with a retry of one page; a PDF's text-layer pages never reach the engine
unless asked; the searchable PDF download of a job whose original was removed says so."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ocr_app.models import Job
from ocr_app.queueing import create_job
from ocr_app.validation import check_upload
from tests.fixtures.documents import ARABIC, born_digital_pdf, tiff_pages
from tests.web.test_documents import backend, run  # noqa: F401  (the fixture, and running a job)

pytestmark = pytest.mark.django_db


def job_of(alice, name: str, data: bytes, mode: str = "text", text_layer: str | None = None) -> Job:
    checked = check_upload(name, data, 10_000_000, 100_000_000, 50)
    return create_job(alice, name, data, checked, "multi", mode, text_layer=text_layer)


def test_a_multi_page_tiff_is_read_page_by_page_and_one_page_retried_alone(backend, alice, alice_client):  # noqa: F811
    backend.fail = {2}
    job = run(job_of(alice, "fax.tiff", tiff_pages([["one"], ["two"], ["three"]], size=(320, 90))))

    assert job.is_document and job.page_count == 3
    assert [p.state for p in job.pages.all()] == ["succeeded", "failed", "succeeded"]
    assert [call.size for call in backend.calls] == [(320, 90)] * 3
    assert all(p.image for p in job.pages.all() if p.state == "succeeded")
    assert "Retry page 2" in alice_client.get(f"/jobs/{job.pk}/").content.decode()
    page_three = alice_client.get(f"/jobs/{job.pk}/pages/3/image")
    assert page_three.status_code == 200 and page_three["Content-Type"] == "image/png"

    assert alice_client.post(f"/jobs/{job.pk}/retry-pages").status_code == 302
    job = run(Job.objects.get(pk=job.pk))

    assert job.state == "succeeded" and len(backend.calls) == 4
    assert job.text == "text of call 1\n\ntext of call 4\n\ntext of call 3"
    assert alice_client.get(f"/api/v1/jobs/{job.pk}/result?format=txt&page=2").content == b"text of call 4"


@pytest.mark.parametrize(
    ("mode", "text_layer", "engine_calls", "source"),
    [
        ("text", None, 0, "text-layer"),  # auto, the default: the text task reads the text layer
        ("layout_all", None, 2, "ocr"),  # auto: layouts need the model's boxes and categories
        ("text", "ocr", 2, "ocr"),
        ("layout_all", "text-layer", 0, "text-layer"),
    ],
)
def test_text_layer_pages_reach_the_engine_only_when_asked(backend, alice, mode, text_layer, engine_calls, source):  # noqa: F811
    data = born_digital_pdf([["Board minutes", ARABIC], ["Actions"]])
    job = run(job_of(alice, "minutes.pdf", data, mode, text_layer))

    assert job.state == "succeeded", job.message
    assert len(backend.calls) == engine_calls
    assert [p.source for p in job.pages.all()] == [source, source]
    if source == "text-layer":
        assert job.pages.get(number=1).text.splitlines() == ["Board minutes", ARABIC]
        assert "read from the PDF's own text layer" in job.message
        assert job.backend == "" and backend.created == []  # no engine planned, made or loaded


def test_the_searchable_pdf_of_a_job_whose_upload_was_removed_is_a_410_that_says_when(backend, alice, alice_client):  # noqa: F811
    job = run(job_of(alice, "minutes.pdf", born_digital_pdf([["Board minutes"]])))
    job.upload.delete(save=False)
    Job.objects.filter(pk=job.pk).update(pruned={"original": timezone.now().isoformat()})

    response = alice_client.get(f"/api/v1/jobs/{job.pk}/result?format=pdf")

    assert response.status_code == 410
    assert response.json()["code"] == "pruned"
