"""The history page: every job of the team, with its owner, searchable."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import jobstate

pytestmark = pytest.mark.browser


def finish(job, text: str) -> None:
    job.move_to(jobstate.RUNNING, backend="rapidocr")
    job.move_to(jobstate.SUCCEEDED, text=text, text_preview=text[:200], progress=1.0, result={"lines": []})


@pytest.mark.django_db(transaction=True)
def test_it_lists_the_team_s_jobs_and_filters_them(logged_in_page, make_user, make_job, artifacts_dir):
    page, alice = logged_in_page("alice")
    bob = make_user("bob")
    finish(
        make_job(alice, "invoice-2024-03.png", ["Invoice number 4711"]), "Invoice number 4711\npaid in full"
    )
    make_job(alice, "receipt.png", ["Receipt"])
    make_job(bob, "contract.png", ["Contract"]).move_to(jobstate.RUNNING, backend="rapidocr")
    failed = make_job(bob, "notes.png", ["Notes"])
    failed.move_to(
        jobstate.FAILED, message="The OCR engine failed (RuntimeError: out of memory). Your upload is kept."
    )
    finish(make_job(bob, "menu.png", ["Lunch menu"]), "Lunch menu\nsoup of the day")

    page.goto("/history/")
    rows = page.locator("#history tbody tr[data-job-id]")
    expect(rows).to_have_count(5)
    # Newest first, each with its owner.
    expect(rows.locator("a.name")).to_have_text(
        ["menu.png", "notes.png", "contract.png", "receipt.png", "invoice-2024-03.png"]
    )
    owners = rows.locator("td:nth-child(4)")
    expect(owners).to_have_text(["bob", "bob", "bob", "alice", "alice"])
    expect(rows.filter(has_text="notes.png")).to_contain_text("out of memory")
    expect(rows.filter(has_text="invoice-2024-03.png")).to_contain_text("paid in full")
    page.screenshot(path=artifacts_dir / "history.png", full_page=True)

    # The search reads the recognized text, not only file names.
    page.fill("input[name=q]", "4711")
    with page.expect_navigation():
        page.click(".filters button[type=submit]")
    expect(rows.locator("a.name")).to_have_text(["invoice-2024-03.png"])
    assert "q=4711" in page.url

    page.fill("input[name=q]", "")
    page.fill("input[name=owner]", "bob")
    page.select_option("select[name=state]", "succeeded")
    with page.expect_navigation():
        page.click(".filters button[type=submit]")
    expect(rows.locator("a.name")).to_have_text(["menu.png"])

    page.fill("input[name=owner]", "")
    page.fill("input[name=q]", "no such words")
    page.select_option("select[name=state]", "")
    with page.expect_navigation():
        page.click(".filters button[type=submit]")
    expect(rows).to_have_count(0)
    expect(page.locator("#history td.empty")).to_have_text("No jobs match these filters.")

    page.click("text=Clear")
    expect(rows).to_have_count(5)
