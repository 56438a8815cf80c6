"""The job's state machine through the model, and the queue positions derived from it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core import jobstate
from core.jobstate import IllegalTransition
from ocr_app.models import Job, queued_jobs_in_order

pytestmark = pytest.mark.django_db

LEGAL = [
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "failed"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "queued"),  # its worker process died: queued again (ocr_app/recovery.py)
    ("succeeded", "queued"),
    ("failed", "queued"),
    ("cancelled", "queued"),
]
ILLEGAL = [
    (old, new)
    for old in jobstate.STATES
    for new in jobstate.STATES
    if (old, new) not in LEGAL
]


def test_it_runs_a_job_from_queued_to_succeeded(make_job):
    job = make_job()

    assert job.move_to("running", backend="rapidocr")
    assert job.move_to("succeeded", text="hello", progress=1.0)

    job.refresh_from_db()
    assert job.state == "succeeded"
    assert job.backend == "rapidocr"
    assert job.text == "hello"
    assert job.started_at is not None
    assert job.finished_at >= job.started_at


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_it_allows_each_legal_move(make_job, old, new):
    job = make_job(state=old)

    assert job.move_to(new) is True

    assert job.state == new
    assert Job.objects.get(pk=job.pk).state == new


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_it_refuses_each_illegal_move(make_job, old, new):
    job = make_job(state=old)

    with pytest.raises(IllegalTransition) as raised:
        job.move_to(new, message="should not be written")

    assert raised.value.old == old
    assert raised.value.new == new
    fresh = Job.objects.get(pk=job.pk)
    assert fresh.state == old
    assert fresh.message == ""
    assert job.state == old


def test_it_stamps_start_and_finish_times(make_job):
    job = make_job()
    before = timezone.now()

    job.move_to("running")
    started = Job.objects.get(pk=job.pk).started_at
    job.move_to("failed", message="the engine broke")

    fresh = Job.objects.get(pk=job.pk)
    assert started >= before
    assert fresh.finished_at >= started
    assert fresh.message == "the engine broke"


def test_it_clears_the_last_run_when_a_job_is_queued_again(make_job):
    job = make_job(created_at=timezone.now() - timedelta(hours=1))
    job.move_to("running")
    job.move_to("failed", message="out of memory", progress=0.5)
    before = timezone.now()

    assert job.move_to("queued")

    fresh = Job.objects.get(pk=job.pk)
    assert fresh.state == "queued"
    assert fresh.started_at is None and fresh.finished_at is None
    assert fresh.message == "" and fresh.progress == 0.0
    assert fresh.queued_at >= before  # back of the queue
    assert fresh.created_at < before  # but the upload time is kept


def test_it_gives_way_when_someone_else_moved_the_job_first(make_job):
    job = make_job()
    # Another process (a user cancelling) moves the row after this object was read.
    Job.objects.filter(pk=job.pk).update(state="cancelled")

    assert job.move_to("running", backend="rapidocr") is False

    fresh = Job.objects.get(pk=job.pk)
    assert fresh.state == "cancelled"
    assert fresh.backend == ""
    assert fresh.started_at is None
    assert job.state == "queued"  # the object is left as it was read
    assert job.started_at is None


def test_it_keeps_a_cancel_that_raced_with_the_worker_finishing(make_job):
    job = make_job()
    job.move_to("running")
    Job.objects.filter(pk=job.pk).update(state="cancelled", finished_at=timezone.now())

    assert job.move_to("succeeded", text="late result") is False

    fresh = Job.objects.get(pk=job.pk)
    assert fresh.state == "cancelled"
    assert fresh.text == ""


def test_it_numbers_the_queue_from_one_for_the_next_job(make_job):
    now = timezone.now()
    later = make_job(created_at=now)
    first = make_job(created_at=now - timedelta(seconds=10))
    second = make_job(created_at=now - timedelta(seconds=5))

    assert [first.queue_position(), second.queue_position(), later.queue_position()] == [1, 2, 3]
    assert list(queued_jobs_in_order()) == [first, second, later]


def test_it_orders_jobs_queued_at_the_same_moment_by_id(make_job):
    now = timezone.now()
    a, b, c = make_job(created_at=now), make_job(created_at=now), make_job(created_at=now)

    assert [a.queue_position(), b.queue_position(), c.queue_position()] == [1, 2, 3]


def test_it_moves_everyone_up_when_the_job_ahead_starts(make_job):
    now = timezone.now()
    a, b, c = (make_job(created_at=now + timedelta(seconds=i)) for i in range(3))

    a.move_to("running")

    assert a.queue_position() is None
    assert [b.queue_position(), c.queue_position()] == [1, 2]


def test_it_moves_jobs_behind_up_when_one_in_the_middle_is_cancelled(make_job):
    now = timezone.now()
    a, b, c = (make_job(created_at=now + timedelta(seconds=i)) for i in range(3))

    b.move_to("cancelled")

    assert [a.queue_position(), b.queue_position(), c.queue_position()] == [1, None, 2]


def test_it_counts_no_ended_or_running_job_in_the_queue(make_job):
    now = timezone.now()
    for i, state in enumerate(["running", "succeeded", "failed", "cancelled"]):
        make_job(state=state, created_at=now - timedelta(minutes=10 - i))
    job = make_job(created_at=now)

    assert job.queue_position() == 1


def test_it_sends_a_retried_job_to_the_back_of_the_queue(make_job):
    now = timezone.now()
    old = make_job(created_at=now - timedelta(minutes=5))
    old.move_to("running")
    old.move_to("failed")
    waiting = make_job(created_at=now - timedelta(minutes=1))

    old.move_to("queued")

    assert waiting.queue_position() == 1
    assert old.queue_position() == 2
