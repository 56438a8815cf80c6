"""The one place that joins Job rows to backends.

The worker runs with concurrency 1 and keeps the last backend loaded between jobs (loading
dots.ocr takes minutes), until the plan changes, an admin frees the GPU, or it sat idle
for OCRDASH_BACKEND_IDLE_UNLOAD seconds (the GPU is shared: give memory back).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_after_setup, worker_ready
from django.conf import settings
from PIL import Image, ImageOps

from ocr_app import events, jobstate, livestate
from ocr_app.models import Job
from workers.backends import create_backend
from workers.backends.base import BackendError, JobCancelled, OcrBackend
from workers.gpu import read_snapshot
from workers.gpupeak import GpuPeak

log = logging.getLogger(__name__)

# The cancel flag is read from the database at most this often while a job runs.
CANCEL_POLL_SECONDS = 1.0


def control_queue(hostname: str) -> str:
    """Each worker also listens on a queue of its own, for orders meant for it alone."""
    return f"ocrdash.control.{hostname}"


class BackendHolder:
    """The backend this worker process keeps loaded, and its state as the dashboard shows it."""

    def __init__(self):
        self.backend: OcrBackend | None = None
        self.key: str | None = None
        self.plan: dict | None = None
        self.hostname = ""
        self.lock = threading.RLock()
        self.idle_timer: threading.Timer | None = None

    def publish(self, state: str, detail: str = "", progress: float | None = None) -> None:
        body = {
            "worker": self.hostname,
            "state": state,
            "backend": (self.plan or {}).get("backend", ""),
            "detail": detail,
            "progress": progress,
            "memory_bytes": self.backend.memory_estimate() if self.backend and state == "ready" else 0,
            "plan": self.plan,
        }
        try:
            livestate.update_worker(self.hostname, backend_status=body)
        except Exception:
            log.warning("could not record the backend state in Redis", exc_info=True)
        events.publish_backend_status(body)

    def ensure(self, plan: dict, progress) -> OcrBackend:
        key = repr(sorted(plan.items()))
        with self.lock:
            self._cancel_idle_timer()
            if self.backend is not None and self.key == key and self.backend.loaded:
                return self.backend
            if self.backend is not None and self.plan and self.plan.get("backend") != plan.get("backend"):
                self.unload("switching backend")
            if self.backend is None:
                self.backend = create_backend(plan["backend"])
            self.plan, self.key = plan, key
            self.publish("loading", f"Loading {plan['backend']}")
            try:
                self.backend.load(plan, progress=progress)
            except Exception as exc:
                self.publish("failed", str(exc))
                raise
            self.publish("ready")
            return self.backend

    def unload(self, reason: str) -> bool:
        with self.lock:
            self._cancel_idle_timer()
            if self.backend is None:
                return False
            log.info("unloading %s: %s", self.backend.name, reason)
            self.backend.unload()
            self.backend, self.key = None, None
            self.publish("unloaded", reason)
            return True

    def start_idle_timer(self) -> None:
        seconds = settings.BACKEND_IDLE_UNLOAD
        if seconds <= 0 or self.backend is None:
            return
        with self.lock:
            self._cancel_idle_timer()
            self.idle_timer = threading.Timer(seconds, self.unload, args=(f"idle for {seconds} s",))
            self.idle_timer.daemon = True
            self.idle_timer.start()

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None


HOLDER = BackendHolder()


def plan_for(job: Job) -> dict:
    return {
        "backend": "rapidocr",
        "language": job.language or settings.OCRDASH_OCR_LANGUAGE,
        "model_dir": str(settings.OCRDASH_MODEL_DIR),
        "allow_download": settings.OCRDASH_ALLOW_MODEL_DOWNLOAD,
    }


class _Progress:
    """Relays a backend's progress (e.g. a model download) to the job's page and the dashboard."""

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
        HOLDER.publish("loading", message, fraction)


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


def _ours(pid: int, role: str | None) -> bool:
    return role in ("worker", "vllm") or pid == os.getpid()


@shared_task(name="workers.tasks.run_job", bind=True, acks_late=True)
def run_job(self, job_id: int) -> str:
    try:
        job = Job.objects.select_related("owner").get(pk=job_id)
    except Job.DoesNotExist:
        log.warning("job %s is gone; nothing to do", job_id)
        return "missing"
    HOLDER.hostname = self.request.hostname or HOLDER.hostname
    if job.state != jobstate.QUEUED:
        return "skipped"  # cancelled while waiting, or already done
    plan = plan_for(job)
    if not job.move_to(jobstate.RUNNING, backend=plan["backend"], worker=self.request.hostname or ""):
        return "skipped"  # cancelled between the read and the move
    events.publish_job(job)
    events.publish_queue_positions()

    peak = GpuPeak(read_snapshot, settings.GPU_INDEX, _ours)
    try:
        with peak:
            backend = HOLDER.ensure(plan, _Progress(job))
            if job.message:
                job.message = ""
            page = open_page_image(job)
            result = backend.ocr(page, "text", _CancelFlag(job.pk))
    except JobCancelled:
        job.refresh_from_db()
        events.publish_job(job)
        return "cancelled"
    except BackendError as exc:
        return _fail(job, str(exc), peak)
    except SoftTimeLimitExceeded:
        limit = settings.JOB_TIME_LIMIT
        return _fail(job, f"The job took longer than the limit of {limit} seconds and was stopped.", peak)
    except Exception as exc:  # the worker must go on with the next job, whatever happened
        log.exception("job %s failed", job_id)
        return _fail(
            job,
            f"The OCR engine failed ({type(exc).__name__}: {exc}). Your upload is kept; "
            "try again, and tell an administrator if it keeps failing.",
            peak,
        )
    finally:
        HOLDER.start_idle_timer()

    data = result.as_json()
    data["image_size"] = list(page.size)
    moved = job.move_to(
        jobstate.SUCCEEDED,
        text=result.text,
        text_preview=result.text[:200],
        result=data,
        progress=1.0,
        message="" if result.text.strip() else "No text was found on this image.",
        gpu_free_at_start_bytes=peak.free_at_start,
        peak_gpu_bytes=peak.peak(result.details.get("peak_gpu_bytes")),
    )
    if not moved:
        job.refresh_from_db()  # cancelled while the engine ran: keep the cancel
    events.publish_job(job)
    return job.state


@shared_task(name="workers.tasks.unload_backend", bind=True)
def unload_backend(self, reason: str = "asked to free the GPU") -> dict:
    """Sent to one worker's own queue by the GPU memory manager."""
    HOLDER.hostname = self.request.hostname or HOLDER.hostname
    unloaded = HOLDER.unload(reason)
    emptied = _empty_allocator_cache()
    if not unloaded:
        HOLDER.publish("unloaded", reason)
    return {"unloaded": unloaded, "emptied_cache": emptied, "at": time.time()}


def _empty_allocator_cache() -> bool:
    """Give cached CUDA blocks back to the driver, where torch is loaded at all."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.empty_cache()
    return True


@celeryd_after_setup.connect
def listen_on_own_control_queue(sender, instance, **kwargs) -> None:
    instance.app.amqp.queues.select_add(control_queue(sender))


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", "") or ""
    HOLDER.hostname = hostname
    livestate.update_worker(hostname, pids=[os.getpid()], gpu_index=settings.GPU_INDEX)
    HOLDER.publish("unloaded", "worker started")
    fail_jobs_orphaned_by_a_previous_run(hostname)


def fail_jobs_orphaned_by_a_previous_run(hostname: str) -> None:
    """A worker that died mid-job left it "running"; say so instead of leaving it hanging."""
    for job in Job.objects.filter(state=jobstate.RUNNING, worker=hostname).select_related("owner"):
        _fail(job, "The worker stopped while this job ran. Your upload is kept; run it again.")


def _fail(job: Job, message: str, peak: GpuPeak | None = None) -> str:
    fields = {"message": message}
    if peak is not None:
        fields.update(gpu_free_at_start_bytes=peak.free_at_start, peak_gpu_bytes=peak.peak())
    if not job.move_to(jobstate.FAILED, **fields):
        job.refresh_from_db()
    events.publish_job(job)
    return jobstate.FAILED
