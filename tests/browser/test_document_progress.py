"""A PDF's job page shows which page is being read, with an ETA, and each page as it finishes."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import jobstate
from ocr_app.models import Job, Page
from tests.browser.conftest import off_the_loop

pytestmark = pytest.mark.browser


@pytest.fixture
def pdf_job(monkeypatch):
    from ocr_app import queueing
    from ocr_app.validation import check_upload
    from tests.unit.test_pdf import A4, build_pdf

    monkeypatch.setattr(queueing, "send_to_worker", lambda job: None)

    def make(owner):
        data = build_pdf([{"size": A4, "lines": [f"Page {n}"]} for n in (1, 2, 3)])
        checked = check_upload("book.pdf", data, 10**7, 10**8, 50)
        return off_the_loop(queueing.create_job, owner, "book.pdf", data, checked, "multi", "text")

    return make


def start_page(job: Job, number: int, publish) -> None:
    Page.objects.filter(job=job, number=number).update(state=Page.RUNNING)
    Job.objects.filter(pk=job.pk).update(current_page=number)
    job.current_page = number
    publish(job)


def finish_page(job: Job, number: int, publish) -> None:
    Page.objects.filter(job=job, number=number).update(state=Page.SUCCEEDED, text=f"words of page {number}",
                                                       seconds=42.0)
    job.progress = number / 3
    Job.objects.filter(pk=job.pk).update(progress=job.progress)
    publish(job)


@pytest.mark.django_db(transaction=True)
def test_the_job_page_shows_the_page_being_read_and_each_finished_page(logged_in_page, wait_until_live, pdf_job,
                                                                        publish):
    page, user = logged_in_page("alice")
    job = pdf_job(user)
    page.goto(f"/jobs/{job.pk}/")
    wait_until_live(page)
    progress = page.locator("#job [data-field=page_progress]")
    expect(page.locator("#pages li")).to_have_count(3)

    assert job.move_to(jobstate.RUNNING)
    start_page(job, 1, publish)
    expect(progress).to_have_text("0 of 3 pages done, 1 running")
    expect(page.locator('#pages li[data-page="1"]')).to_have_attribute("data-state", "running")

    finish_page(job, 1, publish)
    start_page(job, 2, publish)
    expect(progress).to_have_text("1 of 3 pages done, 1 running · about 84 s left")
    expect(page.locator('#pages li[data-page="1"]')).to_have_attribute("data-state", "succeeded")
    expect(page.locator('#pages li[data-page="1"] pre')).to_have_text("words of page 1")
    expect(page.locator('#pages li[data-page="2"]')).to_have_attribute("data-state", "running")
    expect(page.locator('#pages li[data-page="3"]')).to_have_attribute("data-state", "pending")
