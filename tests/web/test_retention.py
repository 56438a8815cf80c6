"""Retention: every file and result is kept forever by default; with OCRDASH_KEEP_*_DAYS set, the parts
of jobs that ended longer ago are removed (by the worker's hourly round and `manage.py prune`, which
can say first what it would remove), and the job's page and the API say what went and when."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from ocr_app import retention
from ocr_app.models import Job, Page
from tests.web.api_support import api_client, error_of
from workers import tasks

pytestmark = pytest.mark.django_db

ALL_PARTS = ("KEEP_ORIGINALS_DAYS", "KEEP_PAGE_IMAGES_DAYS", "KEEP_THUMBNAILS_DAYS", "KEEP_RESULTS_DAYS")


@pytest.fixture
def keep_30_days(settings):
    for name in ALL_PARTS:
        setattr(settings, name, 30)


def ended_document(make_job, days_ago: float, state: str = "succeeded", text: str = "old text") -> Job:
    """A two-page PDF job that ended `days_ago` days ago, with its upload, thumbnail and page images."""
    job = make_job(with_file=True, image_format="PDF", page_count=2)
    for number in (1, 2):
        page = Page(job=job, number=number, state=Page.SUCCEEDED, text=f"{text} {number}", result={"n": number})
        page.image.save(f"page-{number:04d}.png", ContentFile(b"png"), save=False)
        page.save()
    job.move_to("running")
    job.move_to(state, text=text, text_preview=text, result={"pages": 2},
                finished_at=timezone.now() - timedelta(days=days_ago))
    return job


def stored(job: Job) -> list[str]:
    job.refresh_from_db()
    names = [job.upload.name, job.thumbnail.name, *(p.image.name for p in job.pages.all())]
    return [n for n in names if n]


def test_everything_is_kept_forever_by_default(make_job):
    job = ended_document(make_job, days_ago=3650)
    names = stored(job)
    out = StringIO()

    call_command("prune", stdout=out)

    assert "Nothing to do: every OCRDASH_KEEP_*_DAYS setting is unset" in out.getvalue()
    assert retention.prune().parts and all(p.jobs == 0 for p in retention.prune().parts)
    assert stored(job) == names and all(default_storage.exists(n) for n in names)


def test_it_removes_the_parts_of_jobs_that_ended_before_their_retention(make_job, keep_30_days):
    old = ended_document(make_job, days_ago=40)
    recent = ended_document(make_job, days_ago=10, text="recent")
    running = make_job(with_file=True)
    running.move_to("running", started_at=timezone.now() - timedelta(days=90))
    old_files, recent_files = stored(old), stored(recent)

    report = retention.prune()

    assert {p.part: (p.jobs, p.files) for p in report.parts} == {
        "original": (1, 1), "pages": (1, 2), "thumbnail": (1, 1), "result": (1, 0)}
    old.refresh_from_db()
    assert stored(old) == [] and not any(default_storage.exists(n) for n in old_files)
    assert old.text == "" and old.text_preview == "" and old.result is None
    assert list(old.pages.values_list("text", "result")) == [("", None), ("", None)]
    assert set(old.pruned) == {"original", "pages", "thumbnail", "result"}
    assert stored(recent) == recent_files and Job.objects.get(pk=recent.pk).text == "recent"
    assert stored(running) and Job.objects.get(pk=running.pk).pruned == {}
    # Done is done: the next round finds nothing more.
    assert all(p.jobs == 0 for p in retention.prune().parts)


def test_each_part_has_its_own_retention(make_job, settings):
    settings.KEEP_PAGE_IMAGES_DAYS = 7
    job = ended_document(make_job, days_ago=8)

    retention.prune()

    job.refresh_from_db()
    assert set(job.pruned) == {"pages"}
    assert job.upload and job.thumbnail and job.text == "old text"
    assert not any(p.image for p in job.pages.all())


def test_a_dry_run_says_what_would_go_and_removes_nothing(make_job, keep_30_days):
    job = ended_document(make_job, days_ago=40)
    names = stored(job)
    out = StringIO()

    call_command("prune", "--dry-run", stdout=out)

    text = out.getvalue()
    assert "the uploaded file (older than 30 days): would remove from 1 job(s), 1 file(s)" in text
    assert "the rendered page images (older than 30 days): would remove from 1 job(s), 2 file(s)" in text
    assert "Dry run: nothing was removed." in text
    assert stored(job) == names and Job.objects.get(pk=job.pk).pruned == {}


def test_a_page_image_another_job_still_uses_is_kept(make_job, settings):
    settings.KEEP_PAGE_IMAGES_DAYS = 30
    old = ended_document(make_job, days_ago=40)
    reusing = make_job(image_format="PDF", page_count=2, reused_from=old)
    for page in old.pages.all():
        Page.objects.create(job=reusing, number=page.number, state=Page.SUCCEEDED, image=page.image.name)
    reusing.move_to("running")
    reusing.move_to("succeeded")
    shared = [p.image.name for p in old.pages.all()]

    report = retention.prune()

    pages = next(p for p in report.parts if p.part == "pages")
    assert (pages.jobs, pages.files, pages.shared) == (1, 0, 2)
    assert all(default_storage.exists(n) for n in shared)
    assert [p.image.name for p in reusing.pages.all()] == shared


def test_the_job_page_and_the_api_say_what_was_removed(make_job, keep_30_days, alice, alice_client):
    job = ended_document(make_job, days_ago=40)
    retention.prune()

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Removed by the retention settings:" in page
    for what in ("the uploaded file", "the rendered page images", "the thumbnail", "the recognized text and layout"):
        assert what in page
    assert "(kept 30 days)" in page

    api = api_client(alice)
    detail = api.get(f"/api/v1/jobs/{job.pk}").json()
    assert set(detail["pruned"]) == {"original", "pages", "thumbnail", "result"}
    result = api.get(f"/api/v1/jobs/{job.pk}/result?format=txt")
    assert result.status_code == 410
    assert error_of(result)["code"] == "pruned"
    assert "the recognized text and layout was removed on" in error_of(result)["error"]
    assert "OCRDASH_KEEP_RESULTS_DAYS" in error_of(result)["error"]

    original = alice_client.get(f"/jobs/{job.pk}/original")
    assert original.status_code == 410 and b"the uploaded file was removed on" in original.content
    # Every download of what went answers 410 with the sentence, never an empty 200 (nor a 404).
    for url, what in (
        ("pages/2/image", "the rendered page images"),
        ("thumbnail.jpg", "the thumbnail"),
        ("text.txt", "the recognized text and layout"),
        ("result.json", "the recognized text and layout"),
        ("pages/1/text.txt", "the recognized text and layout"),
        ("pages/1/pictures/1.png", "the recognized text and layout"),
    ):
        gone = alice_client.get(f"/jobs/{job.pk}/{url}")
        assert gone.status_code == 410, url
        assert f"Job {job.pk}: {what} was removed on" in gone.content.decode(), url
        assert gone["Content-Type"].startswith("text/plain") and gone["X-Content-Type-Options"] == "nosniff"
    for fmt in ("md", "html", "json"):
        assert api.get(f"/api/v1/jobs/{job.pk}/result?format={fmt}").status_code == 410
    # The job page offers no dead links: it says why they are not there.
    assert f"/jobs/{job.pk}/text.txt" not in page and f"/jobs/{job.pk}/original" not in page
    assert "No downloads of the result: it was removed by the retention settings." in page
    assert "The original file was removed by the retention settings." in page


def test_run_again_says_the_upload_was_removed(make_job, settings, alice_client):
    settings.KEEP_ORIGINALS_DAYS = 30
    job = ended_document(make_job, days_ago=40)
    retention.prune()

    response = alice_client.post(f"/jobs/{job.pk}/run-again", follow=True)

    assert "the uploaded file was removed on" in response.content.decode()
    assert "Upload the file again to read it." in response.content.decode()
    assert Job.objects.get(pk=job.pk).state == "succeeded"


def test_a_job_whose_result_was_removed_is_not_reused(make_job, settings):
    from ocr_app.queueing import reusable_job

    settings.KEEP_RESULTS_DAYS = 30
    job = ended_document(make_job, days_ago=40)
    Job.objects.filter(pk=job.pk).update(cache_key="k")
    assert reusable_job("k").pk == job.pk

    retention.prune()

    assert reusable_job("k") is None


@pytest.mark.django_db(transaction=True)  # the round closes stale connections, as its thread must
def test_the_workers_round_applies_retention_once_an_hour(make_job, keep_30_days, redis_client, monkeypatch):
    monkeypatch.setattr(tasks.recovery, "sweep", lambda *a, **k: {})
    monkeypatch.setattr(tasks.delivery, "resend_lost", lambda *a, **k: 0)
    redis_client.delete("ocrdash:upkeep:prune")
    first = ended_document(make_job, days_ago=40)

    tasks.upkeep_round("gpu@here")
    second = ended_document(make_job, days_ago=40)
    tasks.upkeep_round("gpu@here")  # within the hour: not again

    assert set(Job.objects.get(pk=first.pk).pruned) == {"original", "pages", "thumbnail", "result"}
    assert Job.objects.get(pk=second.pk).pruned == {}
    assert 3500 < redis_client.ttl("ocrdash:upkeep:prune") <= 3600
    redis_client.delete("ocrdash:upkeep:prune")
