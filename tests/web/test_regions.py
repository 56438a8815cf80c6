"""Reading a region of a page (the grounding task) from the job page and the API, and the layout
document the job page draws a page from."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image

from ocr_app.models import Job, Page
from tests.web.api_support import api_client, error_of
from tests.web.test_pictures import encoded, image_job, page_image, parsed_page, pdf_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(alice):
    return image_job(alice, encoded(page_image()))


def post_region(client, job: Job, **body):
    return client.post(reverse("job-region", args=[job.pk]), body, content_type="application/json")


def test_a_drawn_region_queues_a_grounding_job_for_the_user_who_drew_it(
    client, bob, source, sent_tasks, django_capture_on_commit_callbacks
):
    client.force_login(bob)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_region(client, source, page=1, bbox=[10.4, 25.6, 290, 45])

    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert job.owner == bob and job.mode == "grounding"
    assert job.region == [10, 25, 290, 45]  # whole pixels that still hold the drawn box
    assert job.state == "queued" and body["state"] == "queued" and body["reused"] is False
    assert body["url"] == f"/jobs/{job.pk}/" and body["text_url"] == f"/jobs/{job.pk}/text.txt"
    assert [t["args"] for t in sent_tasks] == [[job.pk]]
    with job.upload.open("rb") as fh, source.upload.open("rb") as original:
        assert fh.read() == original.read()  # an image job's region is read on the image itself
    assert Job.objects.get(pk=source.pk).state == "succeeded"  # the source is left as it was


def test_a_box_drawn_past_the_edge_is_clamped_to_the_page(alice_client, source, sent_tasks):
    response = post_region(alice_client, source, page=1, bbox=[250, 150, 900, -40])

    assert response.status_code == 201
    assert Job.objects.get(pk=response.json()["id"]).region == [250, 0, 300, 150]


def test_a_box_on_a_photo_turned_by_its_exif_is_in_the_pixels_shown(alice_client, alice, sent_tasks):
    img = page_image()  # 300 × 200 as stored; orientation 6 shows it turned, 200 × 300
    exif = Image.Exif()
    exif[0x0112] = 6
    job = image_job(alice, encoded(img, "JPEG", exif=exif.tobytes()), "JPEG")

    response = post_region(alice_client, job, page=1, bbox=[150, 250, 190, 290])

    assert response.status_code == 201, response.content
    assert Job.objects.get(pk=response.json()["id"]).region == [150, 250, 190, 290]


@pytest.mark.parametrize(
    ("bbox", "says"),
    [
        ([1, 2, 3], "four numbers"),
        ("left,top", "four numbers"),
        ([1, 2, "x", 4], "four numbers"),
        (None, "four numbers"),
        ([10, 10, 12, 80], "at least 4×4 pixels"),
        ([400, 300, 500, 400], "at least 4×4 pixels of the 300×200 page"),
    ],
)
def test_a_bad_box_is_refused_with_the_reason_and_nothing_is_queued(alice_client, source, sent_tasks, bbox, says):
    before = Job.objects.count()

    response = post_region(alice_client, source, page=1, bbox=bbox)

    assert response.status_code == 400
    assert says in response.json()["error"]
    assert Job.objects.count() == before and sent_tasks == []


def test_a_page_that_does_not_exist_is_refused(alice_client, source, sent_tasks):
    response = post_region(alice_client, source, page=3, bbox=[0, 0, 50, 50])

    assert response.status_code == 400
    assert "Page 3 does not exist" in response.json()["error"]


def test_a_region_of_a_pdf_page_reads_that_page_as_rendered(alice_client, alice, sent_tasks):
    first, second = page_image(), page_image(size=(320, 240))
    job = pdf_job(alice, [first, second], [parsed_page(), parsed_page(size=(320, 240), words="map")])

    response = post_region(alice_client, job, page=2, bbox=[0, 0, 100, 100])

    assert response.status_code == 201
    made = Job.objects.get(pk=response.json()["id"])
    assert made.original_name == "report-page2.png"
    assert (made.width, made.height, made.image_format) == (320, 240, "PNG")
    with made.upload.open("rb") as fh:
        assert Image.open(io.BytesIO(fh.read())).tobytes() == second.tobytes()


def test_a_pdf_page_not_rendered_yet_is_refused(alice_client, alice, sent_tasks):
    job = pdf_job(alice, [page_image()], [parsed_page()])
    row = job.pages.get(number=1)
    row.image.delete(save=True)

    response = post_region(alice_client, job, page=1, bbox=[0, 0, 100, 100])

    assert response.status_code == 400
    assert "has not been rendered yet" in response.json()["error"]


def test_the_same_region_read_before_is_reused_at_once(
    alice_client, source, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = post_region(alice_client, source, page=1, bbox=[10, 25, 290, 45]).json()
    Job.objects.filter(pk=first["id"]).update(state="succeeded", text="Before the chart.")
    Page.objects.filter(job_id=first["id"]).update(state=Page.SUCCEEDED)  # as the worker leaves it

    with django_capture_on_commit_callbacks(execute=True):
        again = post_region(alice_client, source, page=1, bbox=[10, 25, 290, 45]).json()

    assert again["state"] == "succeeded" and again["reused"] is True
    assert again["text"] == "Before the chart."
    assert len(sent_tasks) == 1
    other = post_region(alice_client, source, page=1, bbox=[10, 25, 200, 45]).json()
    assert other["state"] == "queued"  # another box is another result


def test_the_region_endpoint_answers_only_post(alice_client, source):
    assert alice_client.get(reverse("job-region", args=[source.pk])).status_code == 405


# -- the API ---------------------------------------------------------------------------------


def test_the_api_reads_a_region_and_answers_with_the_new_job(bob, source, sent_tasks):
    response = api_client(bob).post(
        f"/api/v1/jobs/{source.pk}/region", {"page": 1, "bbox": [120, 50, 220, 130]}, content_type="application/json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mode"] == "grounding" and body["region"] == [120, 50, 220, 130]
    assert body["owner"] == "bob" and body["state"] == "queued"
    assert body["urls"]["self"].endswith(f"/api/v1/jobs/{body['id']}")


def test_the_api_refuses_a_bad_box_with_field_errors(alice, source, sent_tasks):
    api = api_client(alice)

    short = api.post(f"/api/v1/jobs/{source.pk}/region", {"bbox": [1, 2, 3]}, content_type="application/json")
    tiny = api.post(f"/api/v1/jobs/{source.pk}/region", {"bbox": [0, 0, 2, 2]}, content_type="application/json")
    missing = api.post("/api/v1/jobs/999999/region", {"bbox": [0, 0, 50, 50]}, content_type="application/json")

    assert short.status_code == 400 and "bbox" in error_of(short)["field_errors"]
    assert tiny.status_code == 400 and "at least 4×4" in error_of(tiny)["error"]
    assert missing.status_code == 404
    assert sent_tasks == []


def test_an_upload_asking_for_grounding_is_told_how_to_read_a_region(alice):
    from tests.web.conftest import upload_file

    response = api_client(alice).post(
        "/api/v1/jobs", {"file": upload_file("a.png", encoded(page_image())), "mode": "grounding"}
    )

    assert response.status_code == 400
    assert "POST /api/v1/jobs/{id}/region" in error_of(response)["error"]


# -- the layout document ---------------------------------------------------------------------


def test_the_layout_document_has_the_pages_elements_and_rendered_html(alice_client, source):
    doc = alice_client.get(reverse("page-layout", args=[source.pk, 1])).json()

    assert (doc["page"], doc["pages"], doc["state"]) == (1, 1, "succeeded")
    assert (doc["width"], doc["height"]) == (300, 200)
    assert doc["image_url"] == reverse("page-image", args=[source.pk, 1])
    assert [e["category"] for e in doc["elements"]] == ["Page-header", "Text", "Picture", "Caption"]
    assert doc["elements"][1]["bbox"] == [10, 25, 290, 45]
    assert '<div class="el cat-text" data-index="1"' in doc["html"]
    picture = reverse("page-picture", args=[source.pk, 1, 2])
    assert f'<img src="{picture}" alt="Picture">' in doc["html"]


def test_a_page_still_being_read_has_no_elements_yet(alice_client, alice):
    job = pdf_job(alice, [page_image(), page_image()], [parsed_page(), parsed_page(words="map")])
    job.pages.filter(number=2).update(state="running", result=None)

    doc = alice_client.get(reverse("page-layout", args=[job.pk, 2])).json()
    done = alice_client.get(reverse("page-layout", args=[job.pk, 1])).json()

    assert doc["state"] == "running" and doc["elements"] == [] and doc["html"] == ""
    assert done["state"] == "succeeded" and "Before the chart." in done["html"]
    assert alice_client.get(reverse("page-layout", args=[job.pk, 3])).status_code == 404
