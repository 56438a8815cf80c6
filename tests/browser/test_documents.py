"""A born-digital PDF uploaded in the browser: the job page says which pages were read from the
PDF's own text layer, and its "Searchable PDF" button downloads a PDF whose text is the job's."""

from __future__ import annotations

import re

import pypdfium2 as pdfium
import pytest
from playwright.sync_api import expect

from ocr_app.models import Job
from tests.fixtures.documents import ARABIC, born_digital_pdf

pytestmark = pytest.mark.browser


@pytest.mark.django_db(transaction=True)
def test_the_job_page_names_the_text_layer_pages_and_offers_the_searchable_pdf(logged_in_page):
    page, _user = logged_in_page("alice")
    page.goto("/upload/")
    page.select_option("#id_mode", "text")
    page.set_input_files(
        "#id_files",
        files=[{"name": "minutes.pdf", "mimeType": "application/pdf",
                "buffer": born_digital_pdf([["Board minutes 2026", ARABIC], ["Actions agreed"]])}],
    )  # fmt: skip
    row = page.locator("#my-jobs tbody tr[data-job-id]")
    expect(row.locator('[data-field="state"]')).to_have_text("succeeded", timeout=30_000)
    job = Job.objects.get(original_name="minutes.pdf")

    page.goto(job.get_absolute_url())
    expect(page.locator("#page-source")).to_contain_text("Pages 1, 2 read from the PDF's own text layer, without OCR")
    expect(page.locator("#pages .page-source")).to_have_count(2)
    button = page.locator("#download-pdf")
    expect(button).to_be_visible()
    expect(button).to_have_text("Searchable PDF")

    with page.expect_download() as download:
        button.click()
    assert re.fullmatch(rf"minutes-{job.pk}\.pdf", download.value.suggested_filename)
    document = pdfium.PdfDocument(download.value.path().read_bytes())
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    assert "Board minutes 2026" in text and ARABIC in text and "Actions agreed" in text
