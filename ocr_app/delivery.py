"""Every job committed as queued reaches the broker (Redis), whatever failed at the moment it was sent.

The web process commits the job, then sends its task (`queueing.send_to_worker`). That send can be
lost: Redis is down or restarting, Redis restarted without its data, the web process died between
the commit and the send, or a worker took the message and died before it started the job. So each
worker's main process compares, every RECOVERY_SWEEP_SECONDS, the jobs queued in the database for
longer than RESEND_AFTER_SECONDS with the task messages in Redis (the queues and the messages
workers hold unacknowledged), and sends again the ones Redis does not know (`resend_lost`). A
duplicate is harmless: a task names the job's `queued_at`, a stale one is dropped, and only one
task can move a job from queued to running.

Before a job is made at all, `require_broker` checks that Redis answers: while it does not, uploads
are refused with 503 and Retry-After, and nothing is stored.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from core import jobstate
from core.queues import FIRST, GPU_QUEUE, NEW, RUN_JOB_TASK, priority_keys, worker_queue
from dashboard.celery import app as celery_app
from ocr_app.models import Job

log = logging.getLogger(__name__)

TASK_NAME = RUN_JOB_TASK
# Seconds a client is told to wait before sending again while the broker does not answer.
RETRY_AFTER_SECONDS = 30
BROKER_DOWN = (
    "The job queue (Redis) does not answer, so no job can be queued right now. Nothing was stored; "
    f"send the files again in {RETRY_AFTER_SECONDS} seconds. If this lasts, tell an administrator."
)
# kombu's Redis transport: messages a worker took but has not acknowledged wait in a hash, with
# the time they were taken in a sorted set.
_UNACKED, _UNACKED_INDEX = "unacked", "unacked_index"
# Candidates looked at per round, oldest first: the rest wait for the next round.
MAX_PER_ROUND = 1000


class BrokerUnavailable(Exception):
    """Redis does not answer: no job can be queued now."""

    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, message: str = BROKER_DOWN):
        super().__init__(message)


def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=3, socket_connect_timeout=2)


def require_broker() -> None:
    """Raises BrokerUnavailable unless Redis answers a ping within two seconds."""
    client = _client()
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        log.warning("the broker does not answer: %s", exc)
        raise BrokerUnavailable() from None
    finally:
        client.close()


def send_now(job: Job, first: bool = False) -> bool:
    """Send the job's task (`first`: ahead of the new jobs); False (logged) when the broker does not
    take it: `resend_lost` sends it later."""
    queued_at = job.queued_at.isoformat() if job.queued_at else None
    try:
        celery_app.send_task(TASK_NAME, args=[job.pk], kwargs={"queued_at": queued_at}, queue=GPU_QUEUE,
                             priority=FIRST if first else NEW)
    except Exception as exc:  # kombu's OperationalError, redis errors, a full socket buffer...
        log.warning("job %s is queued but its task could not be sent (%s); it is sent again when Redis answers",
                    job.pk, exc)
        return False
    return True


def task_key(job: Job) -> tuple[int, str | None]:
    """What a task message says about its job: the id and when the job joined the queue."""
    return job.pk, job.queued_at.isoformat() if job.queued_at else None


def _decode(raw: bytes | str) -> tuple[int, str | None] | None:
    """(job id, queued_at) of one run_job message as kombu stores it in Redis, else None."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # the unacknowledged hash keeps [message, exchange, routing key]
            message = message[0]
        if message.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs = json.loads(body)[:2]
        return int(args[0]), (kwargs or {}).get("queued_at")
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _queue_keys(client: redis.Redis) -> list[str]:
    """Every Redis list that may hold a task: the shared queue's and each worker's, per priority."""
    names = {GPU_QUEUE, *(k.decode() for k in client.scan_iter(match=worker_queue("*"), count=500))}
    return sorted({key for name in names for key in priority_keys(name)})


def messages_in_broker(client: redis.Redis) -> tuple[set, dict]:
    """(keys of the messages waiting in a queue, {key: when a worker took it} for unacknowledged ones)."""
    waiting: set = set()
    for key in _queue_keys(client):
        for raw in client.lrange(key, 0, -1):
            found = _decode(raw)
            if found:
                waiting.add(found)
    taken_at = {tag.decode(): score for tag, score in client.zrange(_UNACKED_INDEX, 0, -1, withscores=True)}
    held: dict = {}
    for tag, raw in client.hgetall(_UNACKED).items():
        found = _decode(raw)
        if found:
            held[found] = max(held.get(found, 0.0), taken_at.get(tag.decode(), 0.0))
    return waiting, held


def lost_sends(older_than: float, now: float | None = None) -> list[Job]:
    """Queued jobs older than `older_than` seconds whose task Redis does not hold (or holds only in
    the hands of a worker that took it over RUNNER_LOST_SECONDS ago and never started it)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    candidates = list(
        Job.objects.filter(state=jobstate.QUEUED, queued_at__lte=cutoff)
        .select_related("owner")
        .order_by("queued_at", "id")[:MAX_PER_ROUND]
    )
    if not candidates:
        return []
    client = _client()
    try:
        waiting, held = messages_in_broker(client)
    finally:
        client.close()
    now = now if now is not None else time.time()
    lost = []
    for job in candidates:
        key = task_key(job)
        if key in waiting:
            continue
        if key in held and now - held[key] < settings.RUNNER_LOST_SECONDS:
            continue
        lost.append(job)
    return lost


def resend_lost(older_than: float | None = None) -> int:
    """Send again every queued job Redis lost; returns how many were sent."""
    older_than = settings.RESEND_AFTER_SECONDS if older_than is None else older_than
    sent = 0
    for job in lost_sends(older_than):
        if send_now(job, first=job.retries > 0):
            sent += 1
    if sent:
        log.warning("sent %d queued job(s) again: the broker did not hold their tasks", sent)
    return sent
