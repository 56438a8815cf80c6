"""dots.mocr's results in real Chromium, through the worker's real path (the vLLM backend asks a model
server double that answers as dots.mocr would): scene text drawn as its four-cornered outlines on the
photo, a question asked on its page answered as text, and an SVG carrying every hostile fragment of
tests/security/hostile.py (a <script>, event handlers, foreignObject, javascript: and external
references) shown beside the image as an <img> only: nothing runs, nothing is fetched from another
origin, no dialog opens."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ocr_app.models import BackendSettings
from tests.browser.conftest import off_the_loop
from tests.conftest import text_image
from tests.doubles.openai_server import OpenAIServer
from tests.security.browser.test_hostile_output import Watch, wait_until_ended
from tests.security.hostile import HOSTILE_SVG

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCENE = "(56, 28), (476, 40), (470, 112), (50, 100) OPEN 24 HOURS\n(84, 168), (392, 168), (392, 224), (84, 224) Coffee"


def hostile_svg() -> str:
    fragments = "".join(fragment for _name, fragment, _banned in HOSTILE_SVG if fragment)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 560 280" onload="document.title=\'svg-ran\'">'
        "<script>document.title='svg-ran';alert('svg')</script>"
        f'<rect width="560" height="280" fill="#f4f4f4"/><text x="20" y="40">Chart</text>{fragments}'
        '<path d="M0 280 L560 0" stroke="#0057b8'  # cut off at the token limit
    )


def use_model_at(url: str, repo: str) -> None:
    cfg = BackendSettings.load()
    cfg.backend, cfg.vllm_url, cfg.allow_vllm, cfg.model = "vllm", url, True, repo
    cfg.save()


def upload(page, mode: str) -> int:
    page.goto("/upload/")
    page.select_option("#id_mode", mode)
    page.set_input_files("#id_files", files=[
        {"name": f"{mode}.png", "mimeType": "image/png", "buffer": text_image(["OPEN 24 HOURS"], size=(560, 280))}
    ])  # fmt: skip
    row = page.locator(f"#my-jobs tbody tr[data-job-id]:has-text('{mode}.png')")
    expect(row).to_have_count(1)
    job = wait_until_ended(int(row.get_attribute("data-job-id")))
    assert job.state == "succeeded", job.message
    return job.pk


def test_scene_outlines_are_drawn_and_a_hostile_svg_is_shown_only_as_an_image(logged_in_page, live_server_and_worker):
    double = OpenAIServer(answer=SCENE).start()
    try:
        off_the_loop(use_model_at, double.url, "rednote-hilab/dots.mocr")
        page, _user = logged_in_page("alice")
        watch = Watch(page, live_server_and_worker.url)
        page.add_init_script(
            "document.addEventListener('securitypolicyviolation', e => "
            "console.error('CSPV ' + e.violatedDirective + ' ' + e.blockedURI));"
        )

        scene_job = upload(page, "scene_spotting")
        page.goto(f"/jobs/{scene_job}/")
        outlines = page.locator("#boxes polygon")
        expect(outlines).to_have_count(2)
        # The model saw 560×280 as it is: the outline keeps its four corners, not a rectangle.
        assert outlines.first.get_attribute("points") == "56,28 476,40 470,112 50,100"
        outlines.first.hover()
        expect(page.locator("#box-tip")).to_contain_text("OPEN 24 HOURS")
        expect(page.locator("#rendered")).to_contain_text("Coffee")

        # A question asked on the photo's page: the answer arrives under the form as text, and the
        # markup in the question and in the answer is shown, never run.
        double.answer = "It says <b>OPEN</b><script>document.title='answer-ran'</script> 24 HOURS"
        page.fill("#ask-question", "What does the <img src=x onerror=alert(1)> sign say?")
        page.click("#ask-form button[type=submit]")
        asked = page.locator("#ask-result")
        expect(asked.locator('[data-ask="text"]')).to_contain_text("It says <b>OPEN</b><script>", timeout=30_000)
        expect(asked.locator('[data-ask="title"]')).to_contain_text("<img src=x onerror=alert(1)>")
        assert asked.locator("script, img, b").count() == 0
        assert page.title() != "answer-ran"

        double.answer = hostile_svg()
        off_the_loop(use_model_at, double.url, "rednote-hilab/dots.mocr-svg")
        svg_job = upload(page, "image_to_svg")
        assert not [r.problems for r in double.requests if r.problems], "each request as dots.mocr's client sends it"
        title = page.title()
        page.goto(f"/jobs/{svg_job}/")
        drawing = page.locator("#svg-image")
        expect(drawing).to_be_visible()
        expect(drawing).to_have_js_property("complete", True)
        assert drawing.evaluate("img => img.naturalWidth") > 0, "the SVG draws as an image"
        assert page.locator("#svg-result svg, #svg-result script, #svg-result foreignObject").count() == 0
        page.wait_for_timeout(500)
        assert page.title() != "svg-ran" and title != "svg-ran"
        watch.assert_clean("the SVG job's page")

        # Opened on its own, the SVG is sandboxed: still nothing runs.
        page.goto(f"/api/v1/jobs/{svg_job}/result?format=svg")
        page.wait_for_timeout(300)
        assert page.title() != "svg-ran"
        watch.assert_clean("the SVG download")
    finally:
        double.stop()
