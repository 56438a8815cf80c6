"""The one place that joins Job rows to backends.

The worker runs with concurrency 1 and keeps the last backend loaded between
jobs, so the second job does not pay for loading again.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready
from django.conf import settings
from PIL import Image, ImageOps

from ocr_app import events, jobstate
from ocr_app.models import Job
from workers.backends import create_backend
from workers.backends.base import BackendError, JobCancelled, OcrBackend

log = logging.getLogger(__name__)

_loaded: dict[str, OcrBackend] = {}
# The cancel flag is read from the database at most this often while a job runs.
CANCEL_POLL_SECONDS = 1.0


def backend_for(name: str) -> OcrBackend:
    if name not in _loaded:
        for other in list(_loaded):
            _loaded.pop(other).unload()
        _loaded[name] = create_backend(name)
    return _loaded[name]


def plan_for(job: Job) -> dict:
    return {
        "language": job.language or settings.OCRDASH_OCR_LANGUAGE,
        "model_dir": str(settings.OCRDASH_MODEL_DIR),
        "allow_download": settings.OCRDASH_ALLOW_MODEL_DOWNLOAD,
    }


class _Progress:
    """Relays a backend's progress (e.g. a model download) to the job's page."""

    def __init__(self, job: Job):
        self.job = job
        self.last_sent = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - self.last_sent < 0.5 and done < total:
            return
        self.last_sent = now
        fraction = done / total if total else 0.0
        Job.objects.filter(pk=self.job.pk).update(message=message, progress=fraction)
        self.job.message, self.job.progress = message, fraction
        events.publish_job(self.job)


class _CancelFlag:
    def __init__(self, job_id: int):
        self.job_id = job_id
        self.checked_at = 0.0
        self.cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.checked_at >= CANCEL_POLL_SECONDS:
            self.checked_at = now
            self.cancelled = Job.objects.filter(pk=self.job_id, state=jobstate.CANCELLED).exists()
        return self.cancelled


def open_page_image(job: Job) -> Image.Image:
    with job.upload.open("rb") as fh:
        img = Image.open(fh)
        img.load()
    # What a person sees: camera photos carry their rotation in EXIF.
    return ImageOps.exif_transpose(img)


@shared_task(name="workers.tasks.run_job", bind=True, acks_late=True)
def run_job(self, job_id: int) -> str:
    try:
        job = Job.objects.select_related("owner").get(pk=job_id)
    except Job.DoesNotExist:
        log.warning("job %s is gone; nothing to do", job_id)
        return "missing"
    if job.state != jobstate.QUEUED:
        return "skipped"  # cancelled while waiting, or already done
    if not job.move_to(jobstate.RUNNING, backend="rapidocr", worker=self.request.hostname or ""):
        return "skipped"  # cancelled between the read and the move
    events.publish_job(job)
    events.publish_queue_positions()

    try:
        backend = backend_for("rapidocr")
        backend.load(plan_for(job), progress=_Progress(job))
        if job.message:
            job.message = ""
        page = open_page_image(job)
        result = backend.ocr(page, "text", _CancelFlag(job.pk))
    except JobCancelled:
        job.refresh_from_db()
        events.publish_job(job)
        return "cancelled"
    except BackendError as exc:
        return _fail(job, str(exc))
    except SoftTimeLimitExceeded:
        limit = settings.JOB_TIME_LIMIT
        return _fail(job, f"The job took longer than the limit of {limit} seconds and was stopped.")
    except Exception as exc:  # the worker must go on with the next job, whatever happened
        log.exception("job %s failed", job_id)
        return _fail(
            job,
            f"The OCR engine failed ({type(exc).__name__}: {exc}). Your upload is kept; "
            "try again, and tell an administrator if it keeps failing.",
        )

    data = result.as_json()
    data["image_size"] = list(page.size)
    moved = job.move_to(
        jobstate.SUCCEEDED,
        text=result.text,
        text_preview=result.text[:200],
        result=data,
        progress=1.0,
        message="" if result.text.strip() else "No text was found on this image.",
    )
    if not moved:
        job.refresh_from_db()  # cancelled while the engine ran: keep the cancel
    events.publish_job(job)
    return job.state


@worker_ready.connect
def fail_jobs_orphaned_by_a_previous_run(sender=None, **kwargs) -> None:
    """A worker that died mid-job left it "running"; say so instead of leaving it hanging."""
    hostname = getattr(sender, "hostname", "") or ""
    for job in Job.objects.filter(state=jobstate.RUNNING, worker=hostname).select_related("owner"):
        _fail(job, "The worker stopped while this job ran. Your upload is kept; run it again.")


def _fail(job: Job, message: str) -> str:
    if not job.move_to(jobstate.FAILED, message=message):
        job.refresh_from_db()
    events.publish_job(job)
    return jobstate.FAILED
