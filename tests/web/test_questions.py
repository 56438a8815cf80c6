"""Asking a question about a job's page ("Ask about this image" on the job page, and
POST /api/v1/jobs/{id}/question): a question job of the asker's on the page's image, refused for a
model that cannot answer, an empty or too long question, and a document page not read yet."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from PIL import Image

from core.dots.prompts import MAX_QUESTION_CHARS
from ocr_app.models import Job
from tests.web.api_support import api_client, error_of
from tests.web.test_mocr_tasks import choose_model, run
from tests.web.test_pictures import encoded, image_job, page_image, parsed_page, pdf_job

pytestmark = pytest.mark.django_db

HOSTILE_QUESTION = '<script>alert("x")</script><img src=x onerror=alert(1)> What is the total?'


@pytest.fixture
def source(alice):
    return image_job(alice, encoded(page_image()))


@pytest.fixture
def mocr():
    choose_model("rednote-hilab/dots.mocr")


def ask(client, job: Job, **body):
    return client.post(reverse("job-question", args=[job.pk]), body, content_type="application/json")


def test_a_question_from_the_job_page_queues_a_question_job_for_the_asker(
    client, bob, source, mocr, sent_tasks, django_capture_on_commit_callbacks
):
    client.force_login(bob)

    with django_capture_on_commit_callbacks(execute=True):
        response = ask(client, source, page=1, question="  What is the total?  ")

    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert (job.owner, job.mode, job.question) == (bob, "question", "What is the total?")
    assert body["state"] == "queued" and body["question"] == "What is the total?"
    assert body["text_url"] == f"/jobs/{job.pk}/text.txt"
    assert [t["args"] for t in sent_tasks] == [[job.pk]]
    with job.upload.open("rb") as fh, source.upload.open("rb") as original:
        assert fh.read() == original.read()
    assert Job.objects.get(pk=source.pk).state == "succeeded"  # the source is left as it was


def test_the_answer_is_the_question_jobs_text(alice_client, source, mocr, fake_worker, dots_installed):
    from tests.doubles.fake_backend import task_answer

    fake_worker(gpu="rtx3060_shared", answer=task_answer)
    made = ask(alice_client, source, page=1, question="What is the total?").json()

    assert run(made["id"]).state == "succeeded"
    answer = alice_client.get(made["text_url"]).content.decode()
    assert answer == "The total is 42 EUR. (asked: What is the total?)"


@pytest.mark.parametrize(
    ("question", "says"),
    [
        ("", "needs the question"),
        ("   \n\t ", "needs the question"),
        (None, "needs the question"),
        (["a list"], "needs the question"),
        ("x" * (MAX_QUESTION_CHARS + 1), f"the limit is {MAX_QUESTION_CHARS:,}"),
    ],
)
def test_an_empty_or_too_long_question_is_refused_and_nothing_is_queued(
    alice_client, source, mocr, sent_tasks, question, says
):
    response = ask(alice_client, source, page=1, question=question)

    assert response.status_code == 400
    assert says in response.json()["error"]
    assert Job.objects.count() == 1 and sent_tasks == []


def test_a_model_that_cannot_answer_is_refused_naming_the_models_that_can(alice_client, source, sent_tasks):
    response = ask(alice_client, source, page=1, question="What is the total?")  # the default: dots.ocr

    assert response.status_code == 400
    error = response.json()["error"]
    assert "dots.mocr" in error and "the configured model is dots.ocr" in error
    assert Job.objects.count() == 1 and sent_tasks == []


def test_a_document_page_not_read_yet_is_refused(alice_client, alice, mocr, sent_tasks):
    job = pdf_job(alice, [page_image(), page_image()], [parsed_page(), parsed_page(words="map")])
    job.pages.get(number=2).image.delete(save=True)

    missing = ask(alice_client, job, page=2, question="What is on it?")
    beyond = ask(alice_client, job, page=9, question="What is on it?")

    assert missing.status_code == 400 and "has not been rendered yet" in missing.json()["error"]
    assert beyond.status_code == 400 and "Page 9 does not exist" in beyond.json()["error"]
    assert sent_tasks == []


def test_a_document_page_rendered_ahead_but_not_read_yet_is_refused(alice_client, alice, mocr, sent_tasks):
    job = pdf_job(alice, [page_image(), page_image()], [parsed_page(), parsed_page(words="map")])
    job.pages.filter(number=2).update(state="running")  # its image is there, its reading is not done

    response = ask(alice_client, job, page=2, question="What is on it?")

    assert response.status_code == 400
    assert response.json()["error"] == "Page 2 has not been read yet: ask once the worker has read it."
    assert ask(alice_client, job, page=1, question="What is on it?").status_code == 201


def test_a_question_about_a_pdf_page_asks_about_that_page_as_rendered(alice_client, alice, mocr, sent_tasks):
    second = page_image(size=(320, 240))
    job = pdf_job(alice, [page_image(), second], [parsed_page(), parsed_page(size=(320, 240), words="map")])

    response = ask(alice_client, job, page=2, question="Which city is on the map?")

    assert response.status_code == 201, response.content
    made = Job.objects.get(pk=response.json()["id"])
    assert made.original_name == "report-page2.png" and made.mode == "question"
    with made.upload.open("rb") as fh:
        assert Image.open(io.BytesIO(fh.read())).tobytes() == second.tobytes()


def test_a_body_that_is_not_an_object_is_refused(alice_client, source, mocr):
    url = reverse("job-question", args=[source.pk])

    assert alice_client.post(url, "[1, 2]", content_type="application/json").status_code == 400
    assert alice_client.post(url, "{", content_type="application/json").json()["error"] == "The body is not valid JSON."
    assert alice_client.get(url).status_code == 405


def test_a_question_carrying_markup_is_shown_escaped_on_the_new_jobs_page(alice_client, source, mocr, sent_tasks):
    made = ask(alice_client, source, page=1, question=HOSTILE_QUESTION).json()

    page = alice_client.get(made["url"]).content.decode()

    assert "<script>alert" not in page and "<img src=x onerror" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_job_page_offers_the_form_only_when_the_model_can_answer(alice_client, source):
    page = alice_client.get(reverse("job-detail", args=[source.pk])).content.decode()
    assert 'id="ask-form"' in page and 'id="ask-question"' not in page
    assert "needs dots.mocr" in page

    choose_model("rednote-hilab/dots.mocr")
    page = alice_client.get(reverse("job-detail", args=[source.pk])).content.decode()
    assert f'action="{reverse("job-question", args=[source.pk])}"' in page
    assert f'maxlength="{MAX_QUESTION_CHARS}"' in page and 'id="ask-refused"' not in page


# -- the API ---------------------------------------------------------------------------------


def test_the_api_asks_a_question_and_answers_201_with_the_new_job(bob, source, mocr, sent_tasks):
    response = api_client(bob).post(
        f"/api/v1/jobs/{source.pk}/question", {"page": 1, "question": "What is the total?"},
        content_type="application/json",
    )  # fmt: skip

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["mode"], body["question"], body["owner"], body["state"]) == (
        "question", "What is the total?", "bob", "queued",
    )  # fmt: skip
    assert body["urls"]["self"].endswith(f"/api/v1/jobs/{body['id']}")


def test_the_api_refuses_bad_questions_with_field_errors(alice, source, sent_tasks):
    api = api_client(alice)
    url = f"/api/v1/jobs/{source.pk}/question"

    wrong_model = api.post(url, {"question": "Why?"}, content_type="application/json")
    choose_model("rednote-hilab/dots.mocr")
    empty = api.post(url, {"question": "  "}, content_type="application/json")
    huge = api.post(url, {"question": "x" * (MAX_QUESTION_CHARS + 1)}, content_type="application/json")
    absent = api.post(url, {"page": 1}, content_type="application/json")
    missing = api.post("/api/v1/jobs/999999/question", {"question": "Why?"}, content_type="application/json")

    assert wrong_model.status_code == 400 and "dots.mocr" in error_of(wrong_model)["error"]
    for refused in (empty, huge, absent):
        assert refused.status_code == 400 and "question" in error_of(refused)["field_errors"]
    assert "2000" in str(error_of(huge)["field_errors"]["question"])
    assert missing.status_code == 404
    assert Job.objects.count() == 1 and sent_tasks == []
