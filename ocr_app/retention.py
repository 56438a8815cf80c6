"""Retention: what an ended job keeps, and for how long.

Four parts, each kept forever unless its setting gives a number of days, counted from the day the
job ended: the uploaded file (OCRDASH_KEEP_ORIGINALS_DAYS), the rendered page images of a PDF
(OCRDASH_KEEP_PAGE_IMAGES_DAYS), the thumbnail (OCRDASH_KEEP_THUMBNAILS_DAYS) and the recognized text
and layout (OCRDASH_KEEP_RESULTS_DAYS). A worker applies them once an hour; `manage.py prune` does it
at once (`--dry-run`: only say what would go). A job records what was removed and when
(`Job.pruned`), and its page and the API say so. Files are deleted only when no other job names them
(a reused result shares page images): ocr_app/files.py. Queued and running jobs are never pruned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import jobstate
from ocr_app import files
from ocr_app.models import Job, Page

log = logging.getLogger(__name__)

ORIGINAL, PAGES, THUMBNAIL, RESULT = "original", "pages", "thumbnail", "result"
# part → (setting, what it is in words)
PARTS: dict[str, tuple[str, str]] = {
    ORIGINAL: ("KEEP_ORIGINALS_DAYS", "the uploaded file"),
    PAGES: ("KEEP_PAGE_IMAGES_DAYS", "the rendered page images"),
    THUMBNAIL: ("KEEP_THUMBNAILS_DAYS", "the thumbnail"),
    RESULT: ("KEEP_RESULTS_DAYS", "the recognized text and layout"),
}
BATCH = 200


def days(part: str) -> int | None:
    return getattr(settings, PARTS[part][0])


def enabled() -> bool:
    return any(days(part) for part in PARTS)


@dataclass
class PartReport:
    part: str
    days: int | None
    jobs: int = 0
    files: int = 0
    bytes: int = 0
    shared: int = 0  # files left in place because another job still names them


@dataclass
class Report:
    dry_run: bool
    parts: list[PartReport] = field(default_factory=list)


def due(part: str, now: datetime | None = None):
    """Ended jobs whose `part` is older than its retention and not removed yet."""
    kept = days(part)
    if not kept:
        return Job.objects.none()
    cutoff = (now or timezone.now()) - timedelta(days=kept)
    return Job.objects.filter(state__in=jobstate.ENDED, finished_at__lt=cutoff).exclude(pruned__has_key=part)


def _file_names(part: str, jobs: list[Job]) -> list[str]:
    if part == ORIGINAL:
        return [j.upload.name for j in jobs if j.upload]
    if part == THUMBNAIL:
        return [j.thumbnail.name for j in jobs if j.thumbnail]
    if part == PAGES:
        return list(Page.objects.filter(job__in=jobs).exclude(image="").values_list("image", flat=True))
    return []


def _size(name: str) -> int:
    try:
        return default_storage.size(name)
    except OSError:
        return 0


def _forget(part: str, jobs: list[Job], stamp: str) -> None:
    """The rows stop naming the part (database only, one short transaction)."""
    ids = [j.pk for j in jobs]
    with transaction.atomic():
        if part == ORIGINAL:
            Job.objects.filter(pk__in=ids).update(upload="")
        elif part == THUMBNAIL:
            Job.objects.filter(pk__in=ids).update(thumbnail="")
        elif part == PAGES:
            Page.objects.filter(job_id__in=ids).update(image="")
        elif part == RESULT:
            Job.objects.filter(pk__in=ids).update(text="", text_preview="", result=None)
            Page.objects.filter(job_id__in=ids).update(text="", result=None)
        for job in jobs:
            job.pruned = {**job.pruned, part: stamp}
            Job.objects.filter(pk=job.pk).update(pruned=job.pruned)


def prune(dry_run: bool = False, now: datetime | None = None) -> Report:
    """Apply the retention settings; with `dry_run`, only count what would be removed."""
    now = now or timezone.now()
    report = Report(dry_run=dry_run)
    for part in PARTS:
        row = PartReport(part, days(part))
        report.parts.append(row)
        queryset = due(part, now).order_by("pk")
        last = 0
        while True:
            jobs = list(queryset.filter(pk__gt=last)[:BATCH])
            if not jobs:
                break
            last = jobs[-1].pk
            names = _file_names(part, jobs)
            row.jobs += len(jobs)
            if dry_run:
                gone_with = {j.pk for j in jobs}
                for name in dict.fromkeys(names):
                    if _named_elsewhere(name, gone_with, part):
                        row.shared += 1
                    else:
                        row.files += 1
                        row.bytes += _size(name)
                continue
            sizes = {name: _size(name) for name in names}
            _forget(part, jobs, now.isoformat())
            deleted = files.delete_unreferenced(*names)
            row.files += len(deleted)
            row.bytes += sum(sizes[name] for name in deleted)
            row.shared += len(set(names) - set(deleted))
        if row.jobs and not dry_run:
            log.info("retention: removed %s of %d job(s) (%d file(s), %d bytes)", PARTS[part][1], row.jobs,
                     row.files, row.bytes)
    return report


def _named_elsewhere(name: str, leaving: set[int], part: str) -> bool:
    """Whether a row other than the ones this part of `leaving` clears still names `name`."""
    jobs = Job.objects.filter(Q(upload=name) | Q(thumbnail=name))
    pages = Page.objects.filter(image=name)
    if part == ORIGINAL:
        jobs = jobs.exclude(pk__in=leaving, upload=name)
    elif part == THUMBNAIL:
        jobs = jobs.exclude(pk__in=leaving, thumbnail=name)
    elif part == PAGES:
        pages = pages.exclude(job_id__in=leaving)
    return jobs.exists() or pages.exists()


def describe(job: Job) -> list[dict]:
    """What retention removed from this job, for its page: [{"part", "what", "at", "days"}]."""
    out = []
    for part, (_setting, what) in PARTS.items():
        stamp = (job.pruned or {}).get(part)
        if stamp:
            out.append({"part": part, "what": what, "at": _parse(stamp), "days": days(part)})
    return out


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return None


def removed_message(job: Job, part: str) -> str | None:
    """A sentence for a request that needs `part` of a job it no longer has, else None."""
    stamp = (job.pruned or {}).get(part)
    if not stamp:
        return None
    when = _parse(stamp)
    on = f" on {when:%Y-%m-%d}" if when else ""
    setting, what = PARTS[part]
    kept = days(part)
    period = f" (kept {kept} days, OCRDASH_{setting})" if kept else f" (OCRDASH_{setting})"
    return f"Job {job.pk}: {what} was removed{on} by the retention settings{period}."
