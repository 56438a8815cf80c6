"""Every document a team has, through the API, a real Celery worker and the rapidocr engine:
a multi-page TIFF is one job of a page per frame, HEIC and GIF images are read, a born-digital
PDF's text comes from its own text layer in the text task, and `format=pdf` gives a PDF whose
text layer holds the recognized text."""

from __future__ import annotations

import re

import pypdfium2 as pdfium
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.fixtures.documents import ARABIC, born_digital_pdf, gif, heic, tiff_pages
from tests.integration.test_pipeline import wait_until_ended
from tests.web.api_support import api_client

SMALL = (480, 100)  # one line of 40-pixel text: quick to read on a CPU
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def post(client, name: str, data: bytes, **fields) -> dict:
    response = client.post("/api/v1/jobs", {"file": SimpleUploadedFile(name, data), **fields})
    assert response.status_code == 202, response.content
    return response.json()["jobs"][0]


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_a_three_page_tiff_is_one_job_with_each_page_s_text_and_a_searchable_pdf(make_user, celery_worker_process):
    client = api_client(make_user())
    sent = post(client, "fax.tiff", tiff_pages([["Page one"], ["Page two"], ["Page three"]], size=SMALL))
    assert sent["pages"] == 3 and sent["file"]["format"] == "TIFF"

    job = wait_until_ended(sent["id"], timeout=120)

    assert job.state == "succeeded", job.message
    pages = list(job.pages.order_by("number"))
    assert [p.state for p in pages] == ["succeeded"] * 3
    for page, word in zip(pages, ("one", "two", "three"), strict=True):
        assert word in page.text.lower() and page.image and page.source == "ocr"
    per_page = client.get(f"/api/v1/jobs/{job.pk}/result?format=txt&page=2")
    assert "two" in per_page.content.decode().lower()

    response = client.get(f"/api/v1/jobs/{job.pk}/result?format=pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    document = pdfium.PdfDocument(b"".join(response.streaming_content))
    assert len(document) == 3
    extracted = "".join(document[i].get_textpage().get_text_range() for i in range(3))
    assert squeezed(extracted) == squeezed(job.text)

    one = client.get(f"/api/v1/jobs/{job.pk}/result?format=pdf&page=3")
    single = pdfium.PdfDocument(b"".join(one.streaming_content))
    assert len(single) == 1 and squeezed(single[0].get_textpage().get_text_range()) == squeezed(pages[2].text)


def test_heic_and_gif_images_are_read_and_an_animated_gif_says_only_its_first_frame_was(
    make_user, celery_worker_process
):
    client = api_client(make_user())
    photo = post(client, "IMG_0042.HEIC", heic(["Total 1850"], size=SMALL))
    animation = post(client, "notice.gif", gif([["Closed Friday"], ["Second frame"]], size=SMALL))

    photo_job = wait_until_ended(photo["id"])
    gif_job = wait_until_ended(animation["id"])

    assert photo_job.state == "succeeded" and photo_job.image_format == "HEIF", photo_job.message
    assert "1850" in photo_job.text
    assert gif_job.state == "succeeded" and gif_job.image_format == "GIF", gif_job.message
    assert "closed" in gif_job.text.lower() and "second" not in gif_job.text.lower()
    assert "Only the first frame of this animated GIF was read." in gif_job.message


def test_a_born_digital_pdf_in_the_text_task_is_read_from_its_text_layer_in_reading_order(
    make_user, celery_worker_process
):
    client = api_client(make_user())
    data = born_digital_pdf([["Quarterly report 2026", ARABIC], ["Appendix"]])
    sent = post(client, "report.pdf", data, mode="text")

    job = wait_until_ended(sent["id"], timeout=120)

    assert job.state == "succeeded", job.message
    first, second = job.pages.order_by("number")
    assert (first.kind, first.source, second.source) == ("text", "text-layer", "text-layer")
    assert first.text.splitlines() == ["Quarterly report 2026", ARABIC]  # exact, Arabic in logical order
    assert second.text == "Appendix"
    assert "Pages 1, 2 were read from the PDF's own text layer, without OCR." in job.message
    assert job.backend == ""  # no engine was planned or loaded
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["text_layer"] == "auto" and detail["text_layer_pages"] == [1, 2]

    response = client.get(f"/api/v1/jobs/{job.pk}/result?format=pdf")
    searchable = pdfium.PdfDocument(b"".join(response.streaming_content))
    assert squeezed(searchable[0].get_textpage().get_text_range()).count(squeezed(ARABIC)) == 2  # its own and ours
