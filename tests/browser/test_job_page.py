"""A job's page follows the job live, and a reload shows what the database holds."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import jobstate
from ocr_app import events
from tests.browser.conftest import off_the_loop

pytestmark = pytest.mark.browser

RESULT = {
    "text": "Hello world\nsecond line",
    "lines": [
        {"text": "Hello world", "box": [[30, 30], [260, 30], [260, 80], [30, 80]], "score": 0.98},
        {"text": "second line", "box": [[30, 102], [250, 102], [250, 150], [30, 150]], "score": 0.97},
    ],
    "image_size": [900, 240],
}

# Records every text the state badge shows from now on.
WATCH_BADGE = """() => {
  window.__badges = [];
  const badge = document.querySelector("#job [data-field=state]");
  new MutationObserver(() => window.__badges.push(badge.textContent)).observe(
    badge, { childList: true, characterData: true, subtree: true });
}"""


@pytest.mark.django_db(transaction=True)
def test_it_follows_the_job_live_and_a_reload_shows_the_database(
    logged_in_page, wait_until_live, make_job, publish
):
    page, user = logged_in_page("alice")
    job = make_job(user, "letter.png", ["Hello world", "second line"])

    page.goto(job.get_absolute_url())
    badge = page.locator("#job [data-field=state]")
    expect(badge).to_have_text("queued")
    expect(page.locator("#job dd[data-field=queue_position]")).to_have_text("#1 in queue")
    expect(page.locator("#text-pending")).to_be_visible()
    expect(page.locator("#job [data-field=progress]")).to_be_hidden()
    wait_until_live(page)
    page.evaluate("window.__marker = 1")

    job.move_to(jobstate.RUNNING, backend="rapidocr")
    publish(job)

    expect(badge).to_have_text("running")
    expect(badge).to_have_class("state state-running")
    expect(page.locator("#job [data-field=progress]")).to_be_visible()
    expect(page.locator("#job dd[data-field=backend]")).to_have_text("rapidocr")
    expect(page.locator("#job dd[data-field=queue_position]")).to_have_text("—")
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"

    # A reload in the middle reads the state from the database.
    page.reload()
    expect(badge).to_have_text("running")
    expect(page.locator("#job [data-field=progress]")).to_be_visible()
    expect(page.locator("#text-pending")).to_be_visible()
    wait_until_live(page)
    page.evaluate("window.__marker = 2")

    job.move_to(
        jobstate.SUCCEEDED, text=RESULT["text"], text_preview=RESULT["text"], result=RESULT, progress=1.0
    )
    publish(job)

    expect(badge).to_have_text("succeeded")
    expect(badge).to_have_class("state state-succeeded")
    expect(page.locator("#text")).to_have_text(RESULT["text"])
    expect(page.locator("#text-pending")).to_be_hidden()
    expect(page.locator("#boxes polygon")).to_have_count(2)
    expect(page.locator("#job [data-field=progress]")).to_be_hidden()
    expect(page.locator("#job dd[data-field=ran_seconds]")).to_contain_text(" s")
    assert page.evaluate("window.__marker") == 2, "the page was reloaded"

    # The boxes can be hidden and shown again.
    page.uncheck("#show-boxes")
    expect(page.locator("#boxes")).to_be_hidden()
    page.check("#show-boxes")
    expect(page.locator("#boxes")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_it_does_not_go_back_when_an_old_event_arrives_late(
    logged_in_page, wait_until_live, make_job, publish
):
    page, user = logged_in_page("alice")
    job = make_job(user, "late.png")
    stale = events.job_payload(job, 1)  # what the upload announced, still on its way
    job.move_to(jobstate.RUNNING, backend="rapidocr")

    page.goto(job.get_absolute_url())
    wait_until_live(page)
    badge = page.locator("#job [data-field=state]")
    expect(badge).to_have_text("running")
    page.evaluate(WATCH_BADGE)

    # Events reach the page from the web server and the worker; the upload's "queued" may come
    # after the worker's "running". The page asks the database instead of going back.
    with page.expect_response(lambda r: r.url.endswith(f"/jobs/{job.pk}/status.json")):
        off_the_loop(events._send, "job.status", {"job": stale})
    expect(badge).to_have_text("running")
    expect(page.locator("#job dd[data-field=queue_position]")).to_have_text("—")
    assert "queued" not in page.evaluate("window.__badges"), "the page went back to queued for a moment"

    # A job that is really queued again (a retry) does go back.
    job.move_to(jobstate.FAILED, message="The worker stopped while this job ran.")
    publish(job)
    expect(badge).to_have_text("failed")
    job.move_to(jobstate.QUEUED)
    publish(job)
    expect(badge).to_have_text("queued")
    expect(page.locator("#job dd[data-field=queue_position]")).to_have_text("#1 in queue")
