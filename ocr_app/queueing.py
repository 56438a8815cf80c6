"""Creating jobs and sending them to the worker."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction

from dashboard.celery import app as celery_app
from ocr_app import events
from ocr_app.models import Job
from ocr_app.validation import CheckedImage, make_thumbnail
from workers.queues import GPU_QUEUE

TASK_NAME = "workers.tasks.run_job"


def send_to_worker(job: Job, announce: bool = True) -> None:
    """Only after the row is committed (the worker must find the job it is told about), and
    after the "queued" event, so that pages never see the worker's "running" first."""

    def go():
        if announce:
            events.publish_job(job)
        queued_at = job.queued_at.isoformat() if job.queued_at else None
        celery_app.send_task(TASK_NAME, args=[job.pk], kwargs={"queued_at": queued_at}, queue=GPU_QUEUE)

    transaction.on_commit(go)


def create_job(owner, name: str, data: bytes, checked: CheckedImage, language: str) -> Job:
    with transaction.atomic():
        job = Job(
            owner=owner,
            original_name=name[:255],
            image_format=checked.image_format,
            size_bytes=checked.size_bytes,
            width=checked.width,
            height=checked.height,
            sha256=checked.sha256,
            language=language,
        )
        job.upload.save(_safe_filename(name), ContentFile(data), save=False)
        job.thumbnail.save(f"{checked.sha256[:16]}.jpg", ContentFile(make_thumbnail(data)), save=False)
        job.save()
        send_to_worker(job)
    return job


def _safe_filename(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "._-" else "_" for c in name.rsplit("/", 1)[-1])
    return keep.strip("._") or "upload"
