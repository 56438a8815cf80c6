"""A job committed as queued reaches the broker: the workers' round compares the queued jobs with the
task messages in the real Redis (as kombu stores them) and sends again the ones Redis lost."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO

import pytest
import redis
from celery import Celery
from django.core.management import call_command
from django.utils import timezone

from ocr_app import delivery
from ocr_app.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(settings, redis_server):
    """A Redis database of its own, so no worker of another test takes these messages."""
    url = redis_server.rsplit("/", 1)[0] + "/7"
    settings.CELERY_BROKER_URL = url
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def send_for_real(broker_url: str, job: Job, queue: str = "gpu", queued_at: str | None = None) -> None:
    """The message the web process sends, through Celery and kombu themselves."""
    app = Celery(broker=broker_url, set_as_current=False)  # the project's app stays the current one
    try:
        app.send_task(delivery.TASK_NAME, args=[job.pk],
                      kwargs={"queued_at": queued_at or job.queued_at.isoformat()}, queue=queue)
    finally:
        app.close()


def queued(make_job, seconds_ago: float = 60) -> Job:
    job = make_job()
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(seconds=seconds_ago))
    return Job.objects.get(pk=job.pk)


def test_it_sends_again_only_the_queued_jobs_redis_does_not_hold(make_job, broker, settings, sent_tasks):
    waiting, in_own_queue, lost, stale, young = (queued(make_job) for _ in range(5))
    Job.objects.filter(pk=young.pk).update(queued_at=timezone.now())
    url = settings.CELERY_BROKER_URL
    send_for_real(url, waiting)
    send_for_real(url, in_own_queue, queue="ocrdash.worker.gpu@other")
    send_for_real(url, stale, queued_at=(stale.queued_at - timedelta(minutes=5)).isoformat())  # before a retry

    assert delivery.resend_lost(older_than=15) == 2

    assert sorted(t["args"][0] for t in sent_tasks) == sorted([lost.pk, stale.pk])
    assert all(t["kwargs"]["queued_at"] for t in sent_tasks)


def test_a_task_a_worker_took_counts_as_held_until_that_worker_is_taken_for_lost(make_job, broker, settings,
                                                                                sent_tasks):
    settings.RUNNER_LOST_SECONDS = 30
    job = queued(make_job)
    send_for_real(settings.CELERY_BROKER_URL, job)
    raw = broker.rpop("gpu")  # a worker took it: kombu keeps it unacknowledged, with the time it was taken
    broker.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", "gpu"]))
    broker.zadd("unacked_index", {"tag-1": time.time() - 5})

    assert delivery.resend_lost(older_than=15) == 0

    broker.zadd("unacked_index", {"tag-1": time.time() - 60})  # taken a minute ago, never started
    assert delivery.resend_lost(older_than=15) == 1
    assert [t["args"] for t in sent_tasks] == [[job.pk]]


def test_it_needs_no_redis_round_trip_when_nothing_waits(broker, settings, monkeypatch, sent_tasks):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # would fail if asked

    assert delivery.resend_lost(older_than=15) == 0


def test_the_start_command_sends_the_jobs_a_fresh_redis_lost(make_job, broker, sent_tasks):
    job = queued(make_job, seconds_ago=1)
    out = StringIO()

    call_command("requeue_waiting_jobs", stdout=out)

    assert [t["args"] for t in sent_tasks] == [[job.pk]]
    assert "Sent 1 waiting job(s) to the worker again." in out.getvalue()


def test_require_broker_says_when_redis_does_not_answer(settings, broker):
    delivery.require_broker()  # answers
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(delivery.BrokerUnavailable, match="The job queue \\(Redis\\) does not answer"):
        delivery.require_broker()
