"""Creating jobs and sending them to the worker.

A job is made in two steps: `stage_job` stores the upload and its thumbnail (outside any database
transaction: on SQLite a transaction holds the one write lock for its whole length, and the
worker must be able to write meanwhile), then `commit_job` saves the rows in a short transaction
and sends the task once they are committed. `create_job` does both for one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import PurePath

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core import backends, jobstate, textlayer
from core.dots.prompts import LAYOUT_ALL
from ocr_app import delivery, events, files, serving
from ocr_app.models import BackendSettings, Job, Page
from ocr_app.validation import CheckedImage, make_thumbnail

# The exit status of a web process stopped by the fault-injection hook below.
FAULT_EXIT_STATUS = 70


def send_to_worker(job: Job, announce: bool = True, first: bool = False) -> None:
    """Only after the row is committed (the worker must find the job it is told about), and
    after the "queued" event, so that pages never see the worker's "running" first. A send that
    fails leaves the job queued; the workers' sweep (ocr_app/delivery.py) sends it again.
    `first`: ahead of the new jobs (a job queued again after its worker process died)."""

    def go():
        if getattr(settings, "FAULT_EXIT_BEFORE_SEND", False):
            # Fault injection for tests/faults only (tests/settings.py): the process dies between
            # the commit and the send, as a web process killed at that moment would.
            os._exit(FAULT_EXIT_STATUS)
        if announce:
            events.publish_job(job)
        delivery.send_now(job, first=first)

    transaction.on_commit(go)


def cache_key(
    sha256: str,
    mode: str,
    language: str,
    cfg: BackendSettings | None = None,
    region: list[int] | None = None,
    text_layer: str = textlayer.AUTO,
    question: str = "",
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
        # The language is the CPU engine's: it does not change what dots.ocr reads ("auto" may run either).
        "language": "" if backends.runs_dots(cfg.backend) else language,
    }
    if region is not None:
        facts["region"] = list(region)
    if text_layer != textlayer.AUTO:  # so keys made before the option stay the same for auto
        facts["text_layer"] = text_layer
    if question:
        facts["question"] = question
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def stage_job(
    owner,
    name: str,
    data: bytes,
    checked: CheckedImage,
    language: str,
    mode: str = LAYOUT_ALL,
    region: list[int] | None = None,
    thumbnail: bytes | None = None,
    text_layer: str | None = None,
    question: str = "",
) -> Job:
    """A new, unsaved job for an upload, with its file and thumbnail stored. Raises UploadRefused
    (the file cannot be previewed) or files.DiskFull, with nothing left on disk. `thumbnail`: one
    made already (validation.make_thumbnail). `text_layer`: how a PDF's own text is used
    (core/textlayer.py; default OCRDASH_PDF_TEXT_LAYER)."""
    text_layer = text_layer or settings.PDF_TEXT_LAYER
    if thumbnail is None:
        thumbnail = make_thumbnail(data, name)
    files.check_free_space(len(data) + len(thumbnail))
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
        question=question,
        page_count=checked.pages,
        text_layer=text_layer,
        cache_key=cache_key(checked.sha256, mode, language, region=region, text_layer=text_layer, question=question),
    )
    job.staged_page_kinds = list(checked.page_kinds)  # for commit_job's Page rows
    try:
        job.upload.save(stored_name(name, checked.image_format), ContentFile(data), save=False)
        job.thumbnail.save(f"{checked.sha256[:16]}.jpg", ContentFile(thumbnail), save=False)
    except OSError as exc:
        discard_staged(job)
        if files.is_disk_full(exc):
            raise files.disk_full_while_writing() from None
        raise
    return job


def discard_staged(*jobs: Job) -> None:
    """Delete what stage_job stored for jobs that were not committed."""
    files.delete_stored(*(name for job in jobs for name in (job.upload.name, job.thumbnail.name)))


def commit_job(job: Job, reuse: bool = True) -> Job:
    """Save a staged job: queued (its task sent once committed), or, when a job that succeeded had
    the same file and settings (and `reuse`), succeeded at once with that job's result. Database
    only: several may share one caller's transaction."""
    with transaction.atomic():
        source = reusable_job(job.cache_key) if reuse else None
        if source is not None:
            _take_result(job, source)
            transaction.on_commit(lambda: events.publish_job(job))
            return job
        job.save()
        kinds = getattr(job, "staged_page_kinds", [])
        Page.objects.bulk_create(
            Page(job=job, number=n, kind=kinds[n - 1] if n <= len(kinds) else "") for n in range(1, job.page_count + 1)
        )
        send_to_worker(job)
    return job


def create_job(
    owner,
    name: str,
    data: bytes,
    checked: CheckedImage,
    language: str,
    mode: str = LAYOUT_ALL,
    reuse: bool = True,
    region: list[int] | None = None,
    text_layer: str | None = None,
    question: str = "",
) -> Job:
    """A new job for an upload (see stage_job and commit_job). `region` is the box a grounding job reads,
    `question` what a question job asks."""
    job = stage_job(owner, name, data, checked, language, mode, region, text_layer=text_layer, question=question)
    try:
        return commit_job(job, reuse)
    except BaseException:
        discard_staged(job)
        raise


def reusable_job(key: str) -> Job | None:
    """The latest job with this file and settings whose every page was read: a job that succeeded with
    some pages failed is no result to hand on (its failures would be copied as if they were this job's)."""
    unread_page = Page.objects.filter(job=OuterRef("pk")).exclude(state=Page.SUCCEEDED)
    return (
        Job.objects.filter(cache_key=key, state=jobstate.SUCCEEDED, pruned={})
        .exclude(cache_key="")
        .exclude(Exists(unread_page))
        .order_by("-finished_at", "-id")
        .first()
    )


def _take_result(job: Job, source: Job) -> None:
    """Finish `job` (not saved yet) with the result and pages of `source`."""
    now = timezone.now()
    job.state = jobstate.SUCCEEDED
    job.reused_from_id = source.reused_from_id or source.pk  # the job that really ran it
    # The result only: never the source's message (faults it met, memory fallbacks, retries), which
    # tells its own run's story, not this job's.
    for name in ("backend", "plan", "text", "text_preview", "result", "progress", "page_count"):
        setattr(job, name, getattr(source, name))
    job.message = f"The result of job {job.reused_from_id}, which read the same file with the same settings."
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
            kind=p.kind,
            source=p.source,
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
