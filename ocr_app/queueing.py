"""Creating jobs and sending them to the worker."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import PurePath

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from dashboard.celery import app as celery_app
from ocr_app import events, jobstate, serving
from ocr_app.models import BackendSettings, Job, Page
from ocr_app.validation import CheckedImage, make_thumbnail
from workers.dots.prompts import LAYOUT_ALL
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


# Backends that run dots.ocr: the language (rapidocr's) does not change their result.
DOTS_BACKENDS = {"vllm", "transformers", "cpu"}


def cache_key(
    sha256: str, mode: str, language: str, cfg: BackendSettings | None = None, region: list[int] | None = None
) -> str:
    """What decides a result: the same file read with the same settings gives the same text."""
    cfg = cfg or BackendSettings.load()
    facts = {
        "sha256": sha256,
        "backend": cfg.backend,
        "mode": mode,
        "model": cfg.model,
        "revision": cfg.revision,
        "max_pixels": cfg.max_pixels,
        "language": "" if cfg.backend in DOTS_BACKENDS else language,
    }
    if region is not None:
        facts["region"] = list(region)
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def create_job(
    owner,
    name: str,
    data: bytes,
    checked: CheckedImage,
    language: str,
    mode: str = LAYOUT_ALL,
    reuse: bool = True,
    region: list[int] | None = None,
) -> Job:
    """A new job for an upload: queued for the worker, or, when a job that succeeded had the same
    file and settings (and `reuse`), succeeded at once with that job's result. `region` is the
    box a grounding job reads."""
    key = cache_key(checked.sha256, mode, language, region=region)
    with transaction.atomic():
        job = Job(
            owner=owner,
            original_name=display_name(name)[:255],
            image_format=checked.image_format,
            size_bytes=checked.size_bytes,
            width=checked.width,
            height=checked.height,
            sha256=checked.sha256,
            language=language,
            mode=mode,
            region=list(region) if region is not None else None,
            page_count=checked.pages,
            cache_key=key,
        )
        job.upload.save(stored_name(name, checked.image_format), ContentFile(data), save=False)
        job.thumbnail.save(f"{checked.sha256[:16]}.jpg", ContentFile(make_thumbnail(data)), save=False)
        source = reusable_job(key) if reuse else None
        if source is not None:
            _take_result(job, source)
            transaction.on_commit(lambda: events.publish_job(job))
            return job
        job.save()
        Page.objects.bulk_create(Page(job=job, number=n) for n in range(1, checked.pages + 1))
        send_to_worker(job)
    return job


def reusable_job(key: str) -> Job | None:
    return (
        Job.objects.filter(cache_key=key, state=jobstate.SUCCEEDED)
        .exclude(cache_key="")
        .order_by("-finished_at", "-id")
        .first()
    )


def _take_result(job: Job, source: Job) -> None:
    """Finish `job` (not saved yet) with the result and pages of `source`."""
    now = timezone.now()
    job.state = jobstate.SUCCEEDED
    job.reused_from_id = source.reused_from_id or source.pk  # the job that really ran it
    for name in ("backend", "plan", "text", "text_preview", "result", "message", "progress", "page_count"):
        setattr(job, name, getattr(source, name))
    job.queued_at = job.started_at = job.finished_at = now
    job.save()
    Page.objects.bulk_create(
        Page(
            job=job,
            number=p.number,
            state=p.state,
            image=p.image.name,
            width=p.width,
            height=p.height,
            dpi=p.dpi,
            result=p.result,
            text=p.text,
            message=p.message,
            seconds=p.seconds,
            started_at=p.started_at,
            finished_at=p.finished_at,
        )
        for p in source.pages.order_by("number")
    )


def stored_name(name: str, image_format: str) -> str:
    """The name the upload is stored under: the user's name reduced to ASCII letters, digits, `-`
    and `_`, and the extension of the format detected at upload (never the user's extension)."""
    stem = PurePath(name.replace("\\", "/").rsplit("/", 1)[-1]).stem
    keep = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in stem)[:60].strip("_")
    return f"{keep or 'upload'}.{serving.extension(image_format)}"


def display_name(name: str) -> str:
    """The user's file name as pages show it: without control or bidi-override characters (an
    RTL override makes "gnp.exe" read as "exe.png")."""
    cleaned = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cs") and c not in BIDI_CONTROLS)
    return cleaned.strip() or "upload"


BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
