"""The upload page: a file goes in, the job shows up queued and follows the worker live."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import expect

from ocr_app.models import Job
from tests.conftest import text_image

pytestmark = pytest.mark.browser

# Records, in the page, every state and queue place the rows of "Your recent jobs" show.
WATCH_ROWS = """() => {
  window.__marker = 1;
  window.__seen = [];
  const body = document.querySelector("#my-jobs tbody");
  new MutationObserver(() => {
    body.querySelectorAll("tr[data-job-id]").forEach((tr) => {
      const state = tr.querySelector('[data-field="state"]').textContent.trim();
      const position = tr.querySelector('[data-field="queue_position"]').textContent.trim();
      const last = window.__seen.filter((s) => s.id === tr.dataset.jobId).pop();
      if (!last || last.state !== state || last.position !== position) {
        window.__seen.push({ id: tr.dataset.jobId, state: state, position: position });
      }
    });
  }).observe(body, { subtree: true, childList: true, characterData: true });
}"""

# Drops a file on the drop zone as a browser does: dragenter, dragover, drop.
DROP_FILE = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: "image/png" }));
  const zone = document.getElementById("dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }
}"""


def main_frame_navigations(page) -> list[str]:
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: frame.parent_frame is None and navigations.append(frame.url))
    return navigations


@pytest.mark.django_db(transaction=True)
def test_it_shows_recognized_text_without_a_reload(logged_in_page, wait_until_live, worker_held):
    page, user = logged_in_page("alice")
    page.goto("/upload/")
    wait_until_live(page)
    page.evaluate(WATCH_ROWS)
    navigations = main_frame_navigations(page)

    row = page.locator("#my-jobs tbody tr[data-job-id]")
    with worker_held():
        page.set_input_files(
            "#id_files",
            files=[
                {
                    "name": "invoice.png",
                    "mimeType": "image/png",
                    "buffer": text_image(["Invoice number 4711", "paid in full"]),
                }
            ],
        )
        # At once, before the worker takes it: queued, with its place in the queue.
        expect(row).to_have_count(1)
        expect(row.locator("a.name")).to_have_text("invoice.png")
        expect(row.locator('[data-field="state"]')).to_have_text("queued")
        expect(row.locator('[data-field="queue_position"]')).to_have_text("#1 in queue")
        expect(page.locator("#queue tbody tr", has_text="invoice.png")).to_contain_text("queued")

    expect(row.locator('[data-field="state"]')).to_have_text("succeeded")
    expect(row.locator('[data-field="text_preview"]')).to_contain_text("4711")
    expect(row.locator('[data-field="queue_position"]')).to_have_text("")

    seen = page.evaluate("window.__seen")
    assert [s["state"] for s in seen] in (
        ["queued", "running", "succeeded"],
        ["queued", "succeeded"],  # the "running" moment may be too short to be drawn
    ), seen
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert navigations == [], f"the page navigated: {navigations}"
    # Nothing is waiting any more, and the upload refused nothing.
    expect(page.locator("#queue tbody tr")).to_have_count(0)
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("#upload-errors li")).to_have_count(0)

    job = Job.objects.get(owner=user)
    assert job.state == "succeeded"
    row.locator("a.name").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job.pk}/$"))
    expect(page.locator("h1.name")).to_have_text("invoice.png")
    expect(page.locator("#job [data-field=state]")).to_have_text("succeeded")
    expect(page.locator("#text")).to_contain_text("4711")
    expect(page.locator("#text")).to_contain_text("paid in full")
    expect(page.locator("#text-pending")).to_be_hidden()
    assert page.locator("#boxes polygon").count() >= 1
    # The boxes lie over the image, which the browser could show.
    page.wait_for_function("document.getElementById('page-image').complete")
    assert page.evaluate("document.getElementById('page-image').naturalWidth") == 900
    image_box = page.locator("#page-image").bounding_box()
    svg_box = page.locator("#boxes").bounding_box()
    assert svg_box == pytest.approx(image_box, abs=1)


@pytest.mark.django_db(transaction=True)
def test_it_queues_a_dropped_file(logged_in_page, wait_until_live, worker_held):
    page, user = logged_in_page("alice")
    page.goto("/upload/")
    wait_until_live(page)
    png = base64.b64encode(text_image(["Dropped here"], size=(500, 120))).decode()

    with worker_held():
        page.evaluate(DROP_FILE, ["dropped.png", png])
        row = page.locator("#my-jobs tbody tr[data-job-id]")
        expect(row).to_have_count(1)
        expect(row.locator("a.name")).to_have_text("dropped.png")
        expect(row.locator('[data-field="state"]')).to_have_text("queued")
        expect(row.locator('[data-field="queue_position"]')).to_have_text("#1 in queue")
    expect(page.locator("#dropzone")).not_to_have_class(re.compile(r"\bover\b"))
    assert Job.objects.get(owner=user).original_name == "dropped.png"
    # Let the worker finish it inside this test.
    expect(row.locator('[data-field="state"]')).to_have_text("succeeded")


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_file_that_is_not_an_image(logged_in_page):
    page, _ = logged_in_page("alice")
    page.goto("/upload/")

    page.set_input_files(
        "#id_files",
        files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"just some text, no picture"}],
    )

    refusal = page.locator("#upload-errors li")
    expect(refusal).to_have_count(1)
    expect(refusal).to_contain_text("x.png")
    expect(refusal).to_contain_text("not an image")
    expect(page.locator("#my-jobs tbody tr")).to_have_count(0)
    expect(page.locator("#my-jobs-empty")).to_be_visible()
    expect(page.locator("#queue tbody tr")).to_have_count(0)
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_refuses_too_many_files_before_sending_any(logged_in_page):
    page, _ = logged_in_page("alice")
    page.goto("/upload/")
    most = int(page.locator("#upload-form").get_attribute("data-max-files"))
    uploads = []
    page.on("request", lambda request: uploads.append(request.url) if request.method == "POST" else None)

    png = text_image(["x"], size=(60, 40))
    page.set_input_files(
        "#id_files", files=[{"name": f"p{i}.png", "mimeType": "image/png", "buffer": png} for i in range(most + 1)]
    )

    expect(page.locator("#upload-errors li")).to_contain_text(f"{most + 1} files at once is too many")
    assert uploads == [] and Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_many_files_go_in_requests_that_fit_the_limit_and_one_too_large_is_refused_by_name(
    logged_in_page, wait_until_live, worker_held
):
    page, user = logged_in_page("alice")
    page.goto("/upload/")
    wait_until_live(page)
    small = [text_image([f"Batch {n}"], size=(240, 60)) for n in range(3)]
    big = text_image(["Too big"], size=(900, 900))
    # Limits of this page: a request holds one small file (and its form), no file may be as big as `big`.
    page.evaluate(
        "([request, upload]) => { const f = document.getElementById('upload-form');"
        " f.dataset.maxRequest = request; f.dataset.maxUpload = upload; }",
        [max(map(len, small)) + 20_000, len(big) - 1],
    )
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))

    with worker_held():
        page.set_input_files("#id_files", files=[
            *({"name": f"batch-{n}.png", "mimeType": "image/png", "buffer": data} for n, data in enumerate(small)),
            {"name": "huge.png", "mimeType": "image/png", "buffer": big},
        ])  # fmt: skip
        expect(page.locator("#my-jobs tbody tr[data-job-id]")).to_have_count(3)
        refusal = page.locator("#upload-errors li")
        expect(refusal).to_have_count(1)
        expect(refusal).to_contain_text("huge.png")
        expect(refusal).to_contain_text("It was not sent.")
    assert len(posts) == 3, posts  # one request per file that fits, none for the one too large
    assert sorted(Job.objects.filter(owner=user).values_list("original_name", flat=True)) == [
        "batch-0.png", "batch-1.png", "batch-2.png"
    ]  # fmt: skip
    for state in page.locator('#my-jobs [data-field="state"]').all():
        expect(state).to_have_text("succeeded", timeout=60_000)
