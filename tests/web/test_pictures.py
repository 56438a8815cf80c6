"""Picture elements cropped from the page image: embedded in the Markdown and HTML downloads as
data: URIs (whole document and one page), served one at a time for the job page, left out
(and nothing else) when the page image is gone."""

from __future__ import annotations

import base64
import io
import re
import uuid

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageDraw

from ocr_app import pageimages
from ocr_app.models import Job, Page
from tests.web.api_support import api_client

pytestmark = pytest.mark.django_db

MD_PICTURE = re.compile(r"!\[Picture\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
HTML_PICTURE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="Picture">')

PICTURE_BOX = (120, 50, 220, 130)
RED, BLUE, GREEN = (200, 30, 30), (20, 40, 220), (30, 160, 60)


@pytest.fixture
def api(alice):
    return api_client(alice)


def page_image(size=(300, 200), box=PICTURE_BOX, colour=RED) -> Image.Image:
    """A white page with a coloured picture, a blue mark in its top-left corner (so a crop that is
    shifted or turned shows) and a black line outside it."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)
    draw.rectangle((box[0] + 5, box[1] + 5, box[0] + 24, box[1] + 24), fill=BLUE if colour != BLUE else GREEN)
    draw.line((0, size[1] - 5, size[0] - 1, size[1] - 5), fill="black", width=3)
    return img


def encoded(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def parsed_page(box=PICTURE_BOX, size=(300, 200), words: str = "chart") -> dict:
    """A page as the worker stores it: header, text, the picture, its caption."""
    return {
        "elements": [
            {"index": 0, "category": "Page-header", "bbox": [0, 0, 300, 20], "text": "Quarterly report"},
            {"index": 1, "category": "Text", "bbox": [10, 25, 290, 45], "text": f"Before the {words}."},
            {"index": 2, "category": "Picture", "bbox": list(box), "text": ""},
            {"index": 3, "category": "Caption", "bbox": [120, 135, 220, 150], "text": f"Figure: the {words}"},
        ],
        "text": f"Quarterly report\nBefore the {words}.\nFigure: the {words}",
        "mode": "layout_all",
        "sent_size": list(size),
        "original_size": list(size),
    }


def new_job(owner, name: str, image_format: str, upload: bytes, page_count: int, **fields) -> Job:
    job = Job(
        owner=owner,
        original_name=name,
        image_format=image_format,
        size_bytes=len(upload),
        width=300,
        height=200,
        sha256=uuid.uuid4().hex * 2,
        page_count=page_count,
        state="succeeded",
        **fields,
    )
    job.upload.save(name, ContentFile(upload), save=False)
    job.save()
    return job


def image_job(owner, upload: bytes, fmt: str = "PNG", page: dict | None = None) -> Job:
    page = page or parsed_page()
    job = new_job(owner, f"scan.{fmt.lower()}", fmt, upload, 1, text=page["text"], result={"page": page})
    Page.objects.create(job=job, number=1, state=Page.SUCCEEDED, text=page["text"], result={"page": page})
    return job


def pdf_job(owner, images: list[Image.Image], pages: list[dict]) -> Job:
    job = new_job(
        owner,
        "report.pdf",
        "PDF",
        b"%PDF-1.7 not read here",
        len(pages),
        text="\n\f\n".join(p["text"] for p in pages),
        result={},
    )
    for number, (img, page) in enumerate(zip(images, pages, strict=True), start=1):
        row = Page(
            job=job,
            number=number,
            state=Page.SUCCEEDED,
            text=page["text"],
            result={"page": page},
            width=img.width,
            height=img.height,
        )
        row.image.save(f"page-{number:04d}.png", ContentFile(encoded(img)), save=False)
        row.save()
    return job


def pngs(pattern: re.Pattern, body: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b64))) for b64 in pattern.findall(body)]


def same_pixels(crop: Image.Image, expected: Image.Image) -> bool:
    return crop.size == expected.size and crop.convert("RGB").tobytes() == expected.convert("RGB").tobytes()


def download(api, job: Job, fmt: str, page: int | None = None) -> str:
    query = {"format": fmt, **({"page": page} if page else {})}
    response = api.get(f"/api/v1/jobs/{job.pk}/result", query)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


# -- downloads of an image job ------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("TIFF", {}), ("WEBP", {"lossless": True})])
def test_the_markdown_download_embeds_the_picture_cropped_from_the_uploaded_image(api, alice, fmt, options):
    img = page_image()
    job = image_job(alice, encoded(img, fmt, **options), fmt)

    md = download(api, job, "md")

    [crop] = pngs(MD_PICTURE, md)
    assert crop.format == "PNG" and crop.size == (100, 80)
    assert same_pixels(crop, img.crop(PICTURE_BOX))
    assert md.index("Before the chart.") < md.index("![Picture](data:image/png;base64,") < md.index("Figure: the")


def test_the_html_download_embeds_the_same_crop_as_an_img(api, alice):
    img = page_image()
    job = image_job(alice, encoded(img))

    html = download(api, job, "html")

    [crop] = pngs(HTML_PICTURE, html)
    assert same_pixels(crop, img.crop(PICTURE_BOX))
    assert '<figure class="el cat-picture" data-index="2"' in html


def test_the_markdown_without_headers_and_footers_keeps_the_picture(api, alice):
    img = page_image()
    job = image_job(alice, encoded(img))

    md = download(api, job, "md_nohf")

    assert "Quarterly report" not in md  # the page header is left out, the picture is not
    [crop] = pngs(MD_PICTURE, md)
    assert same_pixels(crop, img.crop(PICTURE_BOX))


def test_a_photo_turned_by_its_exif_is_cropped_as_the_engine_saw_it(api, alice):
    shown = page_image(size=(200, 300), box=(40, 120, 140, 220))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show": the stored pixels lie on their side
    job = image_job(
        alice,
        encoded(shown.transpose(Image.Transpose.ROTATE_90), exif=exif),
        page=parsed_page(box=(40, 120, 140, 220), size=(200, 300)),
    )

    [crop] = pngs(MD_PICTURE, download(api, job, "md"))

    assert same_pixels(crop, shown.crop((40, 120, 140, 220)))
    assert same_pixels(crop, pageimages.open_page_image(job, 1).crop((40, 120, 140, 220)))  # the worker's view


def test_a_big_picture_is_scaled_down_to_1600_pixels_on_its_longer_side(api, alice):
    box = (0, 0, 2000, 400)
    job = image_job(alice, encoded(page_image(size=(2000, 500), box=box)), page=parsed_page(box, (2000, 500)))

    [crop] = pngs(MD_PICTURE, download(api, job, "md"))

    assert crop.size == (1600, 320)
    assert crop.convert("RGB").getpixel((1500, 300)) == RED


# -- downloads of a PDF -------------------------------------------------------------------------


@pytest.fixture
def two_page_pdf(alice):
    first = page_image(colour=GREEN)
    second = page_image(box=(20, 60, 80, 180), colour=BLUE)
    job = pdf_job(alice, [first, second], [parsed_page(), parsed_page(box=(20, 60, 80, 180), words="map")])
    return job, first.crop(PICTURE_BOX), second.crop((20, 60, 80, 180))


def test_a_page_download_of_a_pdf_has_only_that_pages_picture(api, two_page_pdf):
    job, first_crop, second_crop = two_page_pdf

    md = download(api, job, "md", page=2)
    html = download(api, job, "html", page=1)

    [crop] = pngs(MD_PICTURE, md)
    assert same_pixels(crop, second_crop)
    assert "Before the map." in md and "chart" not in MD_PICTURE.sub("", md)
    [crop] = pngs(HTML_PICTURE, html)
    assert same_pixels(crop, first_crop)
    assert "Before the chart." in html and "map" not in HTML_PICTURE.sub("", html)


def test_the_whole_pdf_download_has_each_pages_picture_in_page_order(api, two_page_pdf):
    job, first_crop, second_crop = two_page_pdf

    for fmt, pattern in [("md", MD_PICTURE), ("md_nohf", MD_PICTURE), ("html", HTML_PICTURE)]:
        first, second = pngs(pattern, download(api, job, fmt))
        assert same_pixels(first, first_crop) and same_pixels(second, second_crop), fmt


def test_a_pdf_page_whose_image_is_gone_loses_only_its_own_picture(api, two_page_pdf):
    job, first_crop, _second = two_page_pdf
    row = job.pages.get(number=2)
    row.image.storage.delete(row.image.name)

    md = download(api, job, "md")

    [crop] = pngs(MD_PICTURE, md)
    assert same_pixels(crop, first_crop)
    assert "Before the map." in md and "Figure: the map" in md


# -- a job whose image is gone ------------------------------------------------------------------


def test_a_job_whose_page_image_is_gone_still_exports_without_the_picture(api, alice, alice_client):
    job = image_job(alice, encoded(page_image()))
    job.upload.storage.delete(job.upload.name)

    for fmt in ("md", "md_nohf", "html"):
        body = download(api, job, fmt)
        assert "Before the chart." in body and "Figure: the chart" in body, fmt
        assert "data:image" not in body and "Picture" not in body, fmt
    assert alice_client.get(reverse("page-picture", args=[job.pk, 1, 2])).status_code == 404


# -- one crop for the job page ------------------------------------------------------------------


def test_the_picture_url_serves_the_crop_as_png(alice, alice_client, two_page_pdf):
    img = page_image()
    job = image_job(alice, encoded(img, "TIFF"), "TIFF")
    pdf, _first, second_crop = two_page_pdf

    response = alice_client.get(f"/jobs/{job.pk}/pages/1/pictures/2.png")
    on_pdf_page = alice_client.get(reverse("page-picture", args=[pdf.pk, 2, 2]))

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert same_pixels(Image.open(io.BytesIO(response.content)), img.crop(PICTURE_BOX))
    assert on_pdf_page.status_code == 200
    assert same_pixels(Image.open(io.BytesIO(on_pdf_page.content)), second_crop)


@pytest.mark.parametrize(("number", "index"), [(1, 1), (1, 3), (1, 99), (2, 2)])
def test_the_picture_url_is_404_where_there_is_no_such_picture(alice, alice_client, number, index):
    job = image_job(alice, encoded(page_image()))

    response = alice_client.get(reverse("page-picture", args=[job.pk, number, index]))

    assert response.status_code == 404


def test_the_picture_url_is_404_for_an_unknown_job(alice_client):
    assert alice_client.get(reverse("page-picture", args=[999, 1, 2])).status_code == 404


def test_the_picture_url_needs_a_login(alice):
    job = image_job(alice, encoded(page_image()))

    response = Client().get(reverse("page-picture", args=[job.pk, 1, 2]))

    assert response.status_code == 302 and "/login" in response["Location"]
