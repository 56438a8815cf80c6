"""The one place that publishes to the websocket groups.

Every event travels through the channel layer to group GROUP and reaches the
browser as JSON of one shape:

    {"type": "job.status", "job": {
        "id": 12, "state": "running", "progress": 0.0, "queue_position": null,
        "message": "", "backend": "rapidocr", "owner": "alice", "name": "scan.png",
        "text_preview": "", "url": "/jobs/12/", "mode": "layout_all",
        "page": 7, "pages": 23, "eta_seconds": 96.0, "reused_from": null}}

`job.status` is sent on every state change and progress step, by the web
process (new job) or by the worker, which sends one as each page starts and
ends. `page` is the page being read (1-based; null unless running), `pages`
the job's page count (1 for an image), `progress` the share of pages done,
and `eta_seconds` the time left for the pages not done yet, from the mean
seconds of the pages done so far (null unless running with a page done).
`reused_from` is the job whose result a job took instead of running (else null). When a job leaves the queue, the jobs
still waiting get a `job.status` each with their new position.

`gpu.sample` is sent about once a second by the GPU monitor; its body is
documented in core/gpu.py (`sample_to_event`).

`backend.status` is sent by a worker when its backend changes state:

    {"type": "backend.status", "worker": "gpu@host", "gpu_index": 0, "state": "loading",
     "backend": "rapidocr", "detail": "Downloading … 40%", "progress": 0.4,
     "memory_bytes": 0, "plan": {...} | null}

state is one of "unloaded", "loading", "ready", "failed".
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from core import jobstate
from ocr_app.models import Job, Page, queued_jobs_in_order

log = logging.getLogger(__name__)

GROUP = "ocrdash.events"
# Position updates are sent for this many waiting jobs at most; pages beyond reload.
MAX_POSITION_UPDATES = 200


def job_payload(job: Job, queue_position: int | None = None) -> dict:
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
    _send("job.status", {"job": job_payload(job, position)})


def publish_gpu_sample(body: dict) -> None:
    _send("gpu.sample", body)


def publish_backend_status(body: dict) -> None:
    _send("backend.status", body)


def publish_queue_positions() -> None:
    """After a job leaves the queue, tell every waiting job its new place."""
    waiting = queued_jobs_in_order().select_related("owner")[:MAX_POSITION_UPDATES]
    for position, job in enumerate(waiting, start=1):
        _send("job.status", {"job": job_payload(job, position)})
