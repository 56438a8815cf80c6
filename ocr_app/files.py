"""Stored files: room for new ones, and deleting one only when no job refers to it any more.

Jobs share files: a job that reuses another's result points at the same page images. So a file is
deleted only once no job or page row names it (`delete_unreferenced`), and whatever replaces a
job's file is written under a new name. A job or page row that is deleted, however (the admin, its
bulk action, a deleted account's jobs going with it), takes its files along once the deletion is
committed (`connect`): the same rule, so a file another job still names stays.
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete

from ocr_app.models import Job, Page
from ocr_app.validation import human_bytes

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class DiskFull(Exception):
    """The data folder has too little free space to store an upload; str() says so in words."""


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes() -> int:
    return shutil.disk_usage(_existing(Path(settings.MEDIA_ROOT))).free


def check_free_space(incoming: int = 0) -> None:
    """Raises DiskFull when storing `incoming` more bytes would leave less than OCRDASH_MIN_FREE_DISK_MB."""
    keep = settings.MIN_FREE_DISK_MB * MIB
    free = free_bytes()
    if free - incoming < keep:
        raise DiskFull(
            f"The server's disk is nearly full: {human_bytes(max(free, 0))} free in the data folder, and "
            f"ocrdash keeps at least {human_bytes(keep)} free. Nothing was stored; uploads are refused until "
            "an administrator frees space (or sets a retention period for old files)."
        )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_while_writing() -> DiskFull:
    return DiskFull(
        "The server's disk filled up while the file was being stored. Nothing was stored; uploads are refused "
        "until an administrator frees space."
    )


def is_referenced(name: str) -> bool:
    """Whether any job (upload, thumbnail) or page (rendered image) names this stored file."""
    if not name:
        return False
    return (
        Job.objects.filter(Q(upload=name) | Q(thumbnail=name)).exists() or Page.objects.filter(image=name).exists()
    )


def delete_unreferenced(*names: str, storage=None) -> list[str]:
    """Delete each stored file that no row names any more; returns the names deleted."""
    storage = storage or default_storage
    deleted = []
    for name in dict.fromkeys(n for n in names if n):
        if is_referenced(name):
            continue
        try:
            storage.delete(name)
        except OSError:
            log.warning("could not delete %s", name, exc_info=True)
            continue
        deleted.append(name)
    return deleted


def delete_stored(*names: str, storage=None) -> None:
    """Delete files stored for a job that was never committed (no row can name them)."""
    storage = storage or default_storage
    for name in names:
        if name:
            try:
                storage.delete(name)
            except OSError:
                log.warning("could not delete %s", name, exc_info=True)


def _row_deleted(sender, instance, using=None, **kwargs) -> None:
    names = [instance.image.name] if sender is Page else [instance.upload.name, instance.thumbnail.name]
    names = [n for n in names if n]
    if names:
        transaction.on_commit(lambda: delete_unreferenced(*names), using=using)


def connect() -> None:
    post_delete.connect(_row_deleted, sender=Job, dispatch_uid="ocrdash-job-files")
    post_delete.connect(_row_deleted, sender=Page, dispatch_uid="ocrdash-page-files")
