"""The one place that publishes to the websocket groups.

Every event travels through the channel layer to group GROUP and reaches the browser as JSON; the
shapes are typed in core/events.py (JobStatus, GpuSample, BackendStatus) and shown in
docs/architecture.md ("Events").

`job.status` is sent on every state change and progress step, by the web process (new job) or by
the worker, which sends one as each page starts and ends. When a job leaves the queue, the jobs
still waiting get a `job.status` each with their new position. `gpu.sample` is sent about once a
second by the GPU monitor; `backend.status` by a worker when its backend changes state, and by the
admin when the backend settings change.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from core import jobstate
from core.events import (
    BACKEND_STATUS,
    GPU_SAMPLE,
    JOB_STATUS,
    BackendSettingsNotice,
    BackendStatus,
    GpuSample,
    JobStatus,
)
from ocr_app.models import Job, Page, queued_jobs_in_order

log = logging.getLogger(__name__)

GROUP = "ocrdash.events"
# Position updates are sent for this many waiting jobs at most; pages beyond reload.
MAX_POSITION_UPDATES = 200


def job_payload(job: Job, queue_position: int | None = None) -> JobStatus:
    return {
        "id": job.pk,
        "state": job.state,
        "progress": round(job.progress, 4),
        "queue_position": queue_position if job.state == jobstate.QUEUED else None,
        "message": job.message,
        "backend": job.backend,
        "language": job.language,
        "owner": job.owner.get_username(),
        "name": job.original_name,
        "text_preview": job.text_preview,
        "waited_seconds": job.waited_seconds,
        "ran_seconds": job.ran_seconds,
        "url": job.get_absolute_url(),
        "mode": job.mode,
        "page": job.current_page if job.state == jobstate.RUNNING else None,
        "pages": job.page_count,
        **_page_counts(job),
        "reused_from": job.reused_from_id,
    }


def _page_counts(job: Job) -> dict:
    """Pages done and running, and the time left at the rate measured so far. Pages run several at
    once, so the rate is the pages ended per second since the first of this run started (not the
    mean seconds of one page, which would count the pages in parallel as if in a row)."""
    counts = {"pages_done": round(job.progress * job.page_count), "pages_running": 0, "eta_seconds": None}
    if job.pk is None or job.state != jobstate.RUNNING:
        return counts  # from the row alone: the lists of jobs ask no more of the database
    rows = list(Page.objects.filter(job_id=job.pk).values_list("state", "started_at", "finished_at", "seconds"))
    ended = [(s, f, sec) for state, s, f, sec in rows if state in (Page.SUCCEEDED, Page.FAILED)]
    counts["pages_done"] = len(ended)
    counts["pages_running"] = sum(1 for row in rows if row[0] == Page.RUNNING)
    if not ended:
        return counts
    left = sum(1 for row in rows if row[0] not in (Page.SUCCEEDED, Page.FAILED))
    # This attempt's pages only: a retried job keeps the pages an earlier attempt read.
    since = job.started_at
    mine = [f for s, f, _ in ended if since and s and f and s >= since]
    begun = [row[1] for row in rows if since and row[1] and row[1] >= since]
    if mine and begun and max(mine) > min(begun):
        counts["eta_seconds"] = round(left * (max(mine) - min(begun)).total_seconds() / len(mine), 1)
        return counts
    seconds = [sec for _, _, sec in ended if sec is not None]  # pages without times: their own seconds
    if seconds:
        counts["eta_seconds"] = round(sum(seconds) / len(seconds) * left, 1)
    return counts


def _send(event_type: str, body: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "broadcast", "event": {"type": event_type, **body}})
    except Exception:
        # A live page missing one update is better than a job failing because Redis blinked.
        log.exception("could not publish %s", event_type)


def user_group(user_id) -> str:
    """The group of one user's open websockets."""
    return f"ocrdash.user.{user_id}"


def publish_session_check(user_id) -> None:
    """Ask every open websocket of this user to check its session again now (a logout, a new
    password, a deactivation): one whose session ended closes."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "session.check"})
    except Exception:
        # The periodic check closes the socket a little later.
        log.exception("could not ask user %s's websockets to check their session", user_id)


def publish_job(job: Job) -> None:
    position = job.queue_position() if job.state == jobstate.QUEUED else None
    _send(JOB_STATUS, {"job": job_payload(job, position)})


def publish_gpu_sample(body: GpuSample) -> None:
    _send(GPU_SAMPLE, body)


def publish_backend_status(body: BackendStatus | BackendSettingsNotice) -> None:
    _send(BACKEND_STATUS, body)


def publish_queue_positions() -> None:
    """After a job leaves the queue, tell every waiting job its new place."""
    waiting = queued_jobs_in_order().select_related("owner")[:MAX_POSITION_UPDATES]
    for position, job in enumerate(waiting, start=1):
        _send(JOB_STATUS, {"job": job_payload(job, position)})
