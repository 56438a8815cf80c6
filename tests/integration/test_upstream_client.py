"""dots.ocr's own client (its request shape and post-processing: tests/integration/upstream_client.py),
pointed at ocrdash's /v1 with an API token as its key, on the real server and worker (rapidocr, the
backend a machine without a GPU runs): the default layout prompt is answered with layout JSON that
upstream's post-processing reads, for an image and a PDF, and it writes the layout JSON and the
Markdown; the layout-only prompt gets boxes without text; the names upstream sends for the model
are accepted."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from core.dots.prompts import PROMPTS
from ocr_app.models import ApiToken
from tests.conftest import text_image
from tests.integration import upstream_client as upstream

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LAYOUT_ALL = PROMPTS["layout_all"]  # upstream's prompt_layout_all_en, byte for byte (tests/unit/test_mocr_prompts.py)


@pytest.fixture
def base_url(asgi_server, celery_worker_process, django_user_model, monkeypatch):
    user = django_user_model.objects.create_user(username="upstream", password="pw-123456789")
    monkeypatch.setenv("API_KEY", ApiToken.create_for(user, "dots.ocr parser")[1])
    return asgi_server.url + "/v1"


def pdf_with_pages(path, pages: list[list[str]]) -> None:
    import fitz

    doc = fitz.open()
    for lines in pages:
        page = doc.new_page(width=420, height=200)
        for i, line in enumerate(lines):
            page.insert_text((30, 50 + 40 * i), line, fontsize=20)
    doc.save(path)
    doc.close()


def test_upstreams_parser_writes_layout_json_and_markdown_for_an_image(base_url, tmp_path):
    image = Image.open(io.BytesIO(text_image(["Invoice 2026", "Total 42 EUR"], size=(700, 260))))
    result = upstream.parse_single_image(image, LAYOUT_ALL, tmp_path, "invoice", base_url, model_name="model")

    assert result["filtered"] is False, result["response"]
    cells = json.loads(result["layout_info_path"].read_text())
    assert [c["category"] for c in cells] == ["Text", "Text"]
    assert [c["text"] for c in cells] == ["Invoice 2026", "Total 42 EUR"]
    # Back in the image's own pixels after upstream's scaling: the words were drawn at x=30, y=30 and y=102.
    assert cells[0]["bbox"][0] in range(20, 45) and cells[0]["bbox"][1] in range(25, 45)
    assert cells[1]["bbox"][1] in range(95, 120) and all(0 <= v <= 700 for c in cells for v in c["bbox"][::2])
    assert result["md_content_path"].read_text() == "Invoice 2026\n\nTotal 42 EUR"


def test_upstreams_parser_writes_layout_json_and_markdown_for_each_page_of_a_pdf(base_url, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf_with_pages(pdf, [["First page 11"], ["Second page 22"]])
    pages = upstream.load_images_from_pdf(pdf)
    written = [
        upstream.parse_single_image(
            page, LAYOUT_ALL, tmp_path, f"report_page_{i}", base_url, model_name="rednote-hilab/dots.ocr"
        )
        for i, page in enumerate(pages)
    ]

    assert [w["filtered"] for w in written] == [False, False]
    assert [w["md_content_path"].read_text() for w in written] == ["First page 11", "Second page 22"]
    for page, w in zip(pages, written, strict=True):
        (cell,) = json.loads(w["layout_info_path"].read_text())
        x1, y1, x2, y2 = cell["bbox"]
        assert 0 <= x1 < x2 <= page.width and 0 <= y1 < y2 <= page.height


def test_the_layout_only_prompt_gets_boxes_without_text_under_a_catalog_models_name(base_url, tmp_path):
    image = Image.open(io.BytesIO(text_image(["Only boxes"], size=(500, 160))))
    result = upstream.parse_single_image(
        image, PROMPTS["layout_only"], tmp_path, "boxes", base_url, model_name="dots.ocr", layout_only=True
    )

    assert result["filtered"] is False
    (cell,) = result["cells"]
    assert cell["category"] == "Text" and "text" not in cell
    x1, y1, x2, y2 = cell["bbox"]  # around the words, drawn from (30, 30) on a 500×160 image
    assert x1 <= 30 < x2 <= 500 and y1 <= 40 < y2 <= 160
