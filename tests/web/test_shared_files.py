"""Jobs that share files: a reused result points at the first job's page images. "Run again" writes
new files, and a file is deleted only when no job names it any more."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from ocr_app import files
from ocr_app.models import Job
from ocr_app.queueing import create_job
from ocr_app.validation import check_upload
from tests.unit.test_pdf import A4, build_pdf
from tests.web.test_documents import backend  # noqa: F401  (a fixture: an engine that answers at once)
from workers import tasks

pytestmark = pytest.mark.django_db


PDF = build_pdf([{"size": A4, "lines": [f"Page {n}"]} for n in (1, 2, 3)])


def document(owner, data: bytes = PDF) -> Job:
    checked = check_upload("report.pdf", data, 10_000_000, 100_000_000, 50)
    return create_job(owner, "report.pdf", data, checked, "multi", "text")


def page_files(job: Job) -> list[str]:
    return [p.image.name for p in job.pages.order_by("number")]


@pytest.mark.usefixtures("backend")
def test_run_again_on_a_job_that_reused_a_document_leaves_the_first_jobs_pages(
    alice, alice_client, sent_tasks, media_root
):
    first = document(alice)
    tasks.run_job.apply(args=[first.pk])
    first_pages = page_files(first)
    second = document(alice)
    assert second.reused_from_id == first.pk and page_files(second) == first_pages  # shared, by design

    assert alice_client.post(f"/jobs/{second.pk}/run-again").status_code == 302
    tasks.run_job.apply(args=[second.pk])

    second.refresh_from_db()
    assert second.state == "succeeded"
    assert all(page_files(second)) and set(page_files(second)).isdisjoint(first_pages)  # new files
    for name in first_pages:
        assert default_storage.exists(name)
    for number in (1, 2, 3):
        response = alice_client.get(f"/jobs/{first.pk}/pages/{number}/image")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
    # Run again once more: its own previous files are no one else's, and go.
    before = page_files(second)
    Job.objects.filter(pk=second.pk).update(state="succeeded")
    alice_client.post(f"/jobs/{second.pk}/run-again")
    tasks.run_job.apply(args=[second.pk])
    assert not any(default_storage.exists(name) for name in before)
    assert all(default_storage.exists(name) for name in first_pages)


def test_a_file_is_deleted_only_when_no_job_or_page_names_it(make_job, media_root):
    job = make_job(with_file=True)
    stray = default_storage.save("pages/stray.png", ContentFile(b"png"))

    assert files.delete_unreferenced(job.upload.name, job.thumbnail.name, stray) == [stray]
    assert default_storage.exists(job.upload.name) and default_storage.exists(job.thumbnail.name)
    assert not default_storage.exists(stray)


@pytest.mark.usefixtures("backend")
def test_deleting_jobs_in_the_admin_takes_their_files_but_not_the_ones_another_job_shares(
    alice, admin_client, sent_tasks, media_root, django_capture_on_commit_callbacks
):
    first = document(alice)
    tasks.run_job.apply(args=[first.pk])
    second = document(alice)
    first_own = [first.upload.name, first.thumbnail.name]
    shared = page_files(first)
    assert second.reused_from_id == first.pk and page_files(second) == shared and all(shared)
    assert all(default_storage.exists(name) for name in first_own + shared)

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(f"/admin/ocr_app/job/{first.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302 and not Job.objects.filter(pk=first.pk).exists()
    assert not any(default_storage.exists(name) for name in first_own)
    assert all(default_storage.exists(name) for name in shared), "the second job still shows these pages"

    second_own = [second.upload.name, second.thumbnail.name]
    with django_capture_on_commit_callbacks(execute=True):  # the bulk action, as on the list
        answer = admin_client.post(
            "/admin/ocr_app/job/", {"action": "delete_selected", "_selected_action": [second.pk], "post": "yes"}
        )
    assert answer.status_code == 302 and not Job.objects.exists()
    assert not any(default_storage.exists(name) for name in second_own + shared)
