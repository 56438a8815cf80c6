"""Pictures of the upload page and of a job's page for the README (docs/).

Not part of the normal run (deselected by the "screenshots" mark): `pytest -m screenshots tests/browser`.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import jobstate
from tests.browser.conftest import ROOT
from tests.conftest import text_image

pytestmark = [pytest.mark.browser, pytest.mark.screenshots]

DOCS = ROOT / "docs"
# Larger files are not worth keeping in the repository.
MAX_BYTES = 250_000

LETTER = [
    "ACME Office Supplies",
    "Invoice number 4711",
    "Date: 12 March 2024",
    "Paper, 5 boxes        42.50",
    "Toner cartridges      118.00",
    "Total due             160.50",
    "Paid in full - thank you",
]


def save(page, name: str) -> None:
    path = DOCS / name
    page.screenshot(path=path, type="jpeg" if name.endswith(".jpg") else "png")
    assert path.stat().st_size < MAX_BYTES, f"{path} is {path.stat().st_size} bytes"


@pytest.mark.django_db(transaction=True)
def test_it_takes_the_readme_screenshots(logged_in_page, wait_until_live, make_user, make_job, publish):
    DOCS.mkdir(exist_ok=True)
    page, alice = logged_in_page("alice")
    bob, carol = make_user("bob"), make_user("carol")
    page.goto("/upload/")
    wait_until_live(page)

    page.set_input_files(
        "#id_files",
        files=[
            {
                "name": "invoice-4711.png",
                "mimeType": "image/png",
                "buffer": text_image(LETTER, (900, 620), font_size=32),
            }
        ],
    )
    row = page.locator("#my-jobs tbody tr", has_text="invoice-4711.png")
    expect(row.locator('[data-field="state"]')).to_have_text("succeeded", timeout=60_000)

    # The team's jobs around it: one running, two waiting (kept from the worker).
    running = make_job(bob, "contract-scan.png", ["Service contract", "between the parties"])
    running.move_to(jobstate.RUNNING, backend="rapidocr", progress=0.4)
    publish(running)
    publish(make_job(carol, "meeting-notes.jpg", ["Meeting notes"]))
    publish(make_job(alice, "receipt-march.png", ["Receipt"]))
    expect(page.locator("#queue tbody tr")).to_have_count(3)
    save(page, "screenshot-upload.png")

    row.locator("a.name").click()
    expect(page.locator("#text")).to_contain_text("4711")
    expect(page.locator("#boxes polygon").first).to_be_attached()
    page.locator("#boxes polygon").nth(1).hover()
    expect(page.locator("#box-tip")).to_be_visible()
    save(page, "screenshot-job.png")
