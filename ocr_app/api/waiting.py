"""Waiting for a job to end without blocking the server: a coroutine that sleeps on the channel
layer (the `job.status` events every page gets) and reads the job's row every POLL_SECONDS as
well, in case an event was missed (Redis blinked) — so it never waits longer than the timeout or
misses the end by more than POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from core import jobstate
from ocr_app import events
from ocr_app.models import Job

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
# Without the channel layer the row is read more often.
POLL_SECONDS_WITHOUT_EVENTS = 0.5


def sync(func):
    """Run a function that touches the database from a coroutine (in a worker thread)."""
    return sync_to_async(func, thread_sensitive=True)


def _state(job_id: int) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("state", flat=True).first()


async def wait_until_ended(job_id: int, timeout: float) -> str | None:
    """Return the job's state once it has ended, or whatever it is when `timeout` seconds passed
    (None if the job is gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    layer, channel = get_channel_layer(), None
    if layer is not None:
        # A plain (not process-local) channel: it works from whatever event loop runs this.
        channel = f"ocrdash.wait.{uuid.uuid4().hex}"
        try:
            await layer.group_add(events.GROUP, channel)
        except Exception as exc:  # no Redis: read the row instead
            log.warning("waiting for job %s without events: %s", job_id, exc)
            channel = None
    try:
        while True:
            state = await sync(_state)(job_id)
            remaining = deadline - loop.time()
            if state is None or state in jobstate.ENDED or remaining <= 0:
                return state
            if channel is None:
                await asyncio.sleep(min(remaining, POLL_SECONDS_WITHOUT_EVENTS))
            else:
                await _until_event(layer, channel, job_id, min(remaining, POLL_SECONDS))
    finally:
        if channel is not None:
            try:
                await layer.group_discard(events.GROUP, channel)
            except Exception:
                log.warning("could not leave the events group", exc_info=True)


async def _until_event(layer, channel: str, job_id: int, seconds: float) -> None:
    """Return when an event says the job ended, or after `seconds`."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), left)
        except TimeoutError:
            return
        except Exception as exc:
            log.warning("the events channel failed while waiting for job %s: %s", job_id, exc)
            await asyncio.sleep(max(0.0, min(left, POLL_SECONDS_WITHOUT_EVENTS)))
            return
        event = message.get("event") or {}
        job = event.get("job") or {}
        if event.get("type") == "job.status" and job.get("id") == job_id and job.get("state") in jobstate.ENDED:
            return
