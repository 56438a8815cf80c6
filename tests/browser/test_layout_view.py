"""The job page's layout view: boxes in each category's colour over the page, hover shows the
text, click copies it, the rendered result beside it (tables, typeset formulas), and a region
drawn on the page is read by the worker and its text shown."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from core import jobstate
from core.dots.parse import parse_output
from ocr_app.models import Job
from tests.browser.conftest import off_the_loop
from tests.conftest import text_image

pytestmark = pytest.mark.browser

ANSWER = [
    {"bbox": [30, 20, 600, 70], "category": "Title", "text": "# Quarterly report"},
    {"bbox": [30, 90, 860, 130], "category": "Text", "text": "Revenue grew in every region."},
    {"bbox": [30, 140, 400, 190], "category": "Formula", "text": "$$E = mc^2$$"},
    {"bbox": [420, 140, 860, 230], "category": "Table",
     "text": "<table><tr><td>North</td><td>12</td></tr><tr><td>South</td><td>9</td></tr></table>"},
]


def layout_result(size=(900, 240)) -> dict:
    page = parse_output(json.dumps(ANSWER), "layout_all", sent_size=size, original_size=size)
    return {"text": page.text, "page": page.to_dict(), "image_size": list(size), "lines": []}


@pytest.mark.django_db(transaction=True)
def test_the_layout_view_draws_boxes_in_category_colours_with_hover_and_copy(
    logged_in_page, make_job, publish, wait_until_live
):
    page, user = logged_in_page("alice")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    job = make_job(user, "report.png", ["Quarterly report"])
    result = layout_result()
    off_the_loop(job.move_to, jobstate.RUNNING, backend="transformers")
    off_the_loop(job.move_to, jobstate.SUCCEEDED, text=result["text"], text_preview=result["text"][:100],
                 result=result, progress=1.0)

    page.goto(job.get_absolute_url())
    boxes = page.locator("#boxes polygon")
    expect(boxes).to_have_count(4)
    for category in ("title", "text", "formula", "table"):
        expect(page.locator(f"#boxes polygon.cat-{category}")).to_have_count(1)
    strokes = page.evaluate(
        "() => [...document.querySelectorAll('#boxes polygon')].map(p => getComputedStyle(p).stroke)"
    )
    assert len(set(strokes)) == 4, f"each category has its own colour: {strokes}"
    legend = page.locator("#legend li")
    expect(legend).to_have_count(11)

    # The box of the Text element sits where the element is on the page: the boxes' layer covers
    # the image exactly and is laid out in the page's pixels.
    expect(page.locator("#boxes polygon.cat-text")).to_have_attribute("points", "30,90 860,90 860,130 30,130")
    expect(page.locator("#boxes")).to_have_attribute("viewBox", "0 0 900 240")
    assert page.locator("#boxes").bounding_box() == pytest.approx(page.locator("#page-image").bounding_box(), abs=1)

    # Hover shows the category and the text; the rendered block is marked.
    page.locator("#boxes polygon.cat-text").hover()
    tip = page.locator("#box-tip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("Text")
    expect(tip).to_contain_text("Revenue grew in every region.")
    expect(page.locator('#rendered [data-index="1"]')).to_have_class("el cat-text hover")

    # Click copies the text.
    page.locator("#boxes polygon.cat-text").click()
    expect(page.locator("#copy-status")).to_contain_text("Copied the Text text")
    assert page.evaluate("navigator.clipboard.readText()") == "Revenue grew in every region."

    # The rendered result: headings, the table as a table, the formula typeset by KaTeX.
    rendered = page.locator("#rendered")
    expect(rendered.locator("h1")).to_have_text("Quarterly report")
    expect(rendered.locator("table td").first).to_have_text("North")
    expect(rendered.locator(".katex").first).to_be_visible()
    expect(rendered.locator(".katex-error")).to_have_count(0)

    # The plain text is one tab away.
    page.click("#tab-text")
    expect(page.locator("#text")).to_be_visible()
    expect(rendered).to_be_hidden()
    expect(page.locator("#text")).to_contain_text("Revenue grew in every region.")


@pytest.mark.django_db(transaction=True)
def test_a_region_drawn_on_the_page_returns_its_text(logged_in_page, wait_until_live):
    from ocr_app import queueing
    from ocr_app.validation import check_image

    page, user = logged_in_page("alice")
    data = text_image(["Invoice number 4711", "paid in full"])
    checked = check_image("invoice.png", data, 10**7, 10**8)
    job = off_the_loop(queueing.create_job, user, "invoice.png", data, checked, "multi")

    page.goto(job.get_absolute_url())
    wait_until_live(page)
    expect(page.locator("#job [data-field=state]")).to_have_text("succeeded")
    expect(page.locator("#boxes polygon").first).to_be_attached()

    # The second line is drawn at y = 30 + 72 in a 900 × 240 image, 40 px high.
    page.click("#draw-region")
    expect(page.locator("#draw-region")).to_have_attribute("aria-pressed", "true")
    image = page.locator("#page-image").bounding_box()
    scale = image["width"] / 900
    page.mouse.move(image["x"] + 15 * scale, image["y"] + 95 * scale)
    page.mouse.down()
    page.mouse.move(image["x"] + 420 * scale, image["y"] + 150 * scale, steps=5)
    page.mouse.up()

    region = page.locator("#region-result")
    expect(region).to_be_visible()
    expect(region.locator('[data-region="text"]')).to_have_text("paid in full")
    expect(region.locator('[data-region="copy"]')).to_be_visible()
    expect(page.locator("#draw-region")).to_have_attribute("aria-pressed", "false")

    made = off_the_loop(lambda: Job.objects.exclude(pk=job.pk).get())
    assert made.mode == "grounding"
    assert made.owner_id == user.pk
    x1, y1, x2, y2 = made.region
    assert x1 == pytest.approx(15, abs=3) and y1 == pytest.approx(95, abs=3)
    assert x2 == pytest.approx(420, abs=3) and y2 == pytest.approx(150, abs=3)
    assert "4711" not in made.text
