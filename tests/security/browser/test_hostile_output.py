"""Hostile model output through the worker's real path (the vLLM backend asks an OpenAI-compatible
server, here a double that answers with the hostile elements; the worker parses and stores them),
then every page that shows it opened in real Chromium: the job page (rendered result with KaTeX,
plain text, the layout view's boxes hovered and clicked), the history, and each download. The test
fails on any dialog, any Content-Security-Policy violation, any request to another origin, and any
script error."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from ocr_app.api.results import FORMATS
from ocr_app.models import BackendSettings, Job
from tests.browser.conftest import off_the_loop
from tests.conftest import text_image
from tests.doubles.openai_server import OpenAIServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EVIL = "http://evil.example"

# What a model could be made to write (by a page crafted to make it, or by a model gone wrong).
HOSTILE_OUTPUT = [
    ("title-img-onerror", "Title", "# <img src=x onerror=alert('title')>Quarterly report"),
    ("script-tag", "Text", "Before <script>alert('text')</script> after"),
    ("markdown-javascript-link", "Text", "[click me](javascript:alert('md'))"),
    ("markdown-entity-javascript-link", "Text", "[click](&#106;avascript:alert('entity'))"),
    ("markdown-remote-image", "Text", f"![tracker]({EVIL}/pixel.png)"),
    ("data-html-url", "Text", "<a href=\"data:text/html,<script>alert('data')</script>\">open</a>"),
    ("iframe", "Text", "<iframe src=\"data:text/html,<script>alert('iframe')</script>\"></iframe>"),
    ("style-remote", "Text", f"<style>body {{ background: url({EVIL}/bg.png) }}</style>styled"),
    ("svg-onload", "Caption", "<svg onload=alert('svg')><circle r=5></circle></svg>"),
    ("mxss-math", "Footnote", "<math><mtext><table><mglyph><style><img src=x onerror=alert('mxss')>"),
    ("details-ontoggle", "List-item", "<details open ontoggle=alert('details')>x</details>"),
    ("attribute-breakout", "Page-footer", "\"><script>alert('attr')</script><img src=x onerror=alert(1)>"),
    ("table-handlers", "Table",
     "<table><tr><td onclick=\"alert('td')\"><script>alert('table')</script><img src=x onerror=alert('img')></td>"
     f"<td style=\"background:url({EVIL}/t.png)\"><a href=\"javascript:alert('a')\">x</a></td>"
     "<td><form action=\"" + EVIL + "\"><input name=q autofocus onfocus=alert('focus')></form></td></tr></table>"),
    ("katex-href", "Formula", "$$\\href{javascript:alert('katex')}{click}$$"),
    ("katex-url-and-graphics", "Formula",
     f"$$\\url{{javascript:alert(2)}} \\includegraphics[height=1em]{{{EVIL}/k.png}}$$"),
    ("inline-katex-href", "Text", "Inline $\\href{javascript:alert('inline')}{math}$ and $x<y$ text"),
    # Markdown that a regular expression misses but a CommonMark viewer reads as a script link.
    ("markdown-definition-in-quote", "Text", "> [q]: javascript:alert('quote')\n\n[q]"),
    ("markdown-definition-in-list", "Text", "- [l]: javascript:alert('list')\n\n[l]"),
    ("markdown-label-over-two-lines", "Text", "[split\nlabel]: javascript:alert('split')\n\n[split label]"),
    ("markdown-escaped-colon", "Text", "[esc](javascript\\:alert('escaped'))"),
    ("markdown-reference-image", "Text", "![ref][img]\n\n[img]: javascript:alert('img')"),
    ("markdown-definition-after-a-list-item", "List-item", "[x\n]: javascript:alert('lazy')\n\n[x]"),
    ("picture", "Picture", ""),
]  # fmt: skip


def hostile_answer() -> str:
    elements = []
    for n, (_key, category, text) in enumerate(HOSTILE_OUTPUT):
        top = 20 + 30 * n
        element = {"bbox": [20, top, 860, top + 26], "category": category}
        if category != "Picture":
            element["text"] = text
        elements.append(element)
    return json.dumps(elements)


class Watch:
    """Everything a page must not do, collected over a whole session in the browser."""

    def __init__(self, page, origin: str):
        self.origin = origin
        self.dialogs: list[str] = []
        self.violations: list[str] = []
        self.foreign: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", self._console)
        page.on("request", self._request)
        page.context.on("page", lambda popup: self.foreign.append(f"a new window: {popup.url}"))

    def _dialog(self, dialog):
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message):
        if "Content Security Policy" in message.text or "CSPV" in message.text:
            self.violations.append(message.text)

    def _request(self, request):
        scheme = urlsplit(request.url).scheme
        if scheme in ("data", "blob", "about"):
            return
        if not request.url.startswith(self.origin + "/"):
            self.foreign.append(request.url)

    def assert_clean(self, where: str):
        assert not self.dialogs, f"{where}: a dialog opened: {self.dialogs}"
        assert not self.violations, f"{where}: CSP violations: {self.violations}"
        assert not self.foreign, f"{where}: requests to another origin: {self.foreign}"


def wait_until_ended(job_id: int, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = off_the_loop(Job.objects.get, pk=job_id)
        if job.state in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")


def use_vllm_at(url: str) -> None:
    cfg = BackendSettings.load()
    cfg.backend, cfg.vllm_url, cfg.allow_vllm = "vllm", url, True
    cfg.save()


def open_in_browser(page, url: str) -> str:
    """Go to `url`; "shown" when the browser shows it, "downloaded" when it saves it instead."""
    try:
        page.goto(url)
    except PlaywrightError as exc:
        if "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc):
            return "downloaded"
        raise
    return "shown"


def test_the_suite_counts_its_hostile_model_outputs():
    assert len({key for key, _c, _t in HOSTILE_OUTPUT}) == len(HOSTILE_OUTPUT)
    print(f"\nhostile model outputs: {len(HOSTILE_OUTPUT)}")


def test_hostile_model_output_runs_nothing_and_loads_nothing_on_any_page(logged_in_page, live_server_and_worker):
    double = OpenAIServer(answer=hostile_answer()).start()
    try:
        off_the_loop(use_vllm_at, double.url)
        page, user = logged_in_page("alice")
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        watch = Watch(page, live_server_and_worker.url)
        # Capture violations the console might word differently, from every document.
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSPV ' + e.violatedDirective + ' ' + e.blockedURI));"
        )

        page.goto("/upload/")
        page.set_input_files("#id_files", files=[
            {"name": "report.png", "mimeType": "image/png", "buffer": text_image(["Report"], size=(900, 800))}
        ])  # fmt: skip
        row = page.locator("#my-jobs tbody tr[data-job-id]")
        expect(row).to_have_count(1)
        job = wait_until_ended(int(row.get_attribute("data-job-id")))
        assert job.state == "succeeded", job.message
        assert double.requests, "the worker asked the model server"
        watch.assert_clean("upload page")

        # The job page: the rendered result (KaTeX typesets the formulas), the plain text, the boxes.
        page.goto(job.get_absolute_url())
        rendered = page.locator("#rendered")
        expect(rendered.locator(".katex").first).to_be_visible()
        expect(rendered).to_contain_text("Before")
        expect(rendered.locator("table td").first).to_be_visible()
        assert rendered.locator("script, iframe, img[src='x'], svg, style, form, details, a[href]").count() == 0
        assert page.locator("[onerror], [onclick], [onload], [ontoggle], [onfocus]").count() == 0
        boxes = page.locator("#boxes polygon")
        expect(boxes).to_have_count(len(HOSTILE_OUTPUT))
        for n in range(len(HOSTILE_OUTPUT)):
            boxes.nth(n).hover()
            expect(page.locator("#box-tip")).to_be_visible()
        boxes.nth(1).click()
        expect(page.locator("#copy-status")).to_contain_text("Copied")
        page.locator("#tab-text").click()
        expect(page.locator("#text")).to_contain_text("<script>alert('text')</script>")  # shown as text
        page.wait_for_timeout(500)
        watch.assert_clean("job page")

        # The history, searched for the job by its text.
        page.goto("/history/?q=Before")
        expect(page.locator("#history tbody tr[data-job-id]")).to_have_count(1)
        watch.assert_clean("history")

        # Each download, opened as a link would be.
        shown = {}
        for fmt in FORMATS:
            shown[fmt] = open_in_browser(page, f"/api/v1/jobs/{job.pk}/result?format={fmt}")
            page.wait_for_timeout(300)
            watch.assert_clean(f"the {fmt} download")
        for url in (f"/jobs/{job.pk}/text.txt", f"/jobs/{job.pk}/result.json", f"/jobs/{job.pk}/pages/1/layout.json",
                    f"/jobs/{job.pk}/image", f"/jobs/{job.pk}/pages/1/pictures/{len(HOSTILE_OUTPUT) - 1}.png"):
            shown[url] = open_in_browser(page, url)
            watch.assert_clean(url)
        assert shown["html"] == "shown", "the HTML download is meant to be read in the browser"
        # The HTML download showed the hostile text as text, inside its sandbox.
        open_in_browser(page, f"/api/v1/jobs/{job.pk}/result?format=html")
        expect(page.locator("body")).to_contain_text("<script>alert('text')</script>")
        assert page.evaluate("() => { try { return document.cookie === '' && !window.localStorage; } "
                             "catch (e) { return true; } }"), "the download runs in an opaque origin"
        watch.assert_clean("the HTML download, again")
    finally:
        double.stop()
