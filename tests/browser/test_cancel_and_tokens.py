"""The Cancel button on a job's page and in the history, followed live by every open page; the profile
page that makes API tokens."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ocr_app.models import ApiToken, Job
from tests.browser.conftest import off_the_loop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_owner_cancels_a_queued_job_from_its_page(logged_in_page, make_job, wait_until_live, artifacts_dir):
    page, alice = logged_in_page("alice")
    job = make_job(alice, "to-cancel.png")
    page.goto(f"/jobs/{job.pk}/")
    wait_until_live(page)
    button = page.locator("#job .cancel-job button")
    expect(button).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "job-cancel-button.png"))

    with page.expect_navigation():
        button.click()

    expect(page.locator("#job [data-field=state]")).to_have_text("cancelled")
    expect(page.locator(".messages")).to_contain_text(f"Job {job.pk} (to-cancel.png) was cancelled.")
    expect(page.locator("#job .cancel-job")).to_have_count(0)
    assert off_the_loop(lambda: Job.objects.get(pk=job.pk).state) == "cancelled"


def test_a_cancel_elsewhere_hides_the_button_live(logged_in_page, make_job, wait_until_live, make_user):
    page, alice = logged_in_page("alice")
    job = make_job(alice, "watched.png")
    page.goto("/history/")
    wait_until_live(page)
    row = page.locator(f"tr[data-job-id='{job.pk}']")
    expect(row.locator(".cancel-job button")).to_be_visible()

    def cancel_as_staff():
        from ocr_app.jobactions import cancel_job

        staff = make_user("carol", is_staff=True)
        cancel_job(Job.objects.select_related("owner").get(pk=job.pk), staff)

    off_the_loop(cancel_as_staff)

    expect(row.locator("[data-field=state]")).to_have_text("cancelled")
    expect(row.locator(".cancel-job button")).to_be_hidden()
    expect(row.locator("[data-field=message]")).to_have_text("Cancelled by carol.")


def test_the_profile_page_makes_a_token_and_shows_the_key_once(logged_in_page, artifacts_dir):
    page, alice = logged_in_page("alice")
    page.click("header >> text=alice")
    expect(page).to_have_url(re.compile(r"/profile/$"))

    page.fill("input[name=name]", "nightly scans")
    with page.expect_navigation():
        page.click("text=Create token")

    key = page.locator("#new-token-key").input_value()
    assert key.startswith("ocrd_")
    assert off_the_loop(lambda: ApiToken.objects.get(user=alice).key_hash) == ApiToken.hash_key(key)
    expect(page.locator("#tokens")).to_contain_text("nightly scans")
    page.screenshot(path=str(artifacts_dir / "profile-tokens.png"), full_page=True)
    page.goto("/profile/")
    expect(page.locator("#new-token-key")).to_have_count(0)

    with page.expect_navigation():
        page.click("#tokens >> text=Revoke")
    expect(page.locator("#tokens")).to_contain_text("revoked")


def test_the_footer_leads_to_the_api_docs_served_offline(logged_in_page):
    page, _ = logged_in_page("alice")
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url))

    page.click("footer >> text=API")

    expect(page.locator(".swagger-ui")).to_contain_text("ocrdash API")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/jobs")
    base = page.url.split("/api/docs/")[0]
    assert all(url.startswith(base) for url in requests_seen), [u for u in requests_seen if not u.startswith(base)]
