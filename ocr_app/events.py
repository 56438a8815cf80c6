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
        "eta_seconds": _eta_seconds(job),
        "reused_from": job.reused_from_id,
    }


def _eta_seconds(job: Job) -> float | None:
    if job.state != jobstate.RUNNING or job.pk is None:
        return None
    rows = list(Page.objects.filter(job_id=job.pk).values_list("state", "seconds"))
    done = [seconds for state, seconds in rows if state in (Page.SUCCEEDED, Page.FAILED) and seconds is not None]
    if not done:
        return None
    left = sum(1 for state, _ in rows if state not in (Page.SUCCEEDED, Page.FAILED))
    return round(sum(done) / len(done) * left, 1)


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
