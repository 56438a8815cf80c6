"""A running job whose worker process is gone is queued again (its retries counted) or failed with
what happened; a slow notice cannot undo a newer attempt. The processes themselves are killed in
tests/faults; here the decisions are checked one by one, against the database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from core import jobstate
from ocr_app import recovery
from ocr_app.models import Job, Page
from workers import tasks

pytestmark = pytest.mark.django_db

ME = "gpu@here"


def running(make_job, attempts=1, **fields) -> Job:
    """A job as a worker leaves it mid-page: running attempt `attempts`, page 2 of 3 being read."""
    job = make_job(page_count=3, **fields)
    Page.objects.bulk_create(Page(job=job, number=n) for n in (1, 2, 3))
    job.pages.filter(number=1).update(state=Page.SUCCEEDED, text="one")
    job.pages.filter(number=2).update(state=Page.RUNNING)
    fields = {"worker": ME, "worker_pid": 999_999_999 - 1, "heartbeat_at": timezone.now(), "current_page": 2,
              "attempts": attempts, **fields}
    job.move_to(jobstate.RUNNING, **{k: v for k, v in fields.items() if k != "page_count"})
    return job


def test_it_words_how_a_pool_process_died():
    assert recovery.cause_of_worker_lost("Worker exited prematurely: signal 9 (SIGKILL) Job: 3.") == (
        "the worker process was killed (SIGKILL, most often: the machine ran out of memory)", True)
    assert recovery.cause_of_worker_lost("Worker exited prematurely: signal 11 (SIGSEGV) Job: 0.") == (
        "the worker process crashed (SIGSEGV)", True)
    assert recovery.cause_of_worker_lost("Worker exited prematurely: exitcode 3 Job: 0.") == (
        "the worker process exited unexpectedly (exit code 3)", True)
    # A stop is not the job's fault: it does not use up a retry.
    assert recovery.cause_of_worker_lost("Worker exited prematurely: signal 15 (SIGTERM) Job: 0.")[1] is False


def test_a_job_whose_process_died_is_queued_again_with_its_retry_counted_and_sent(make_job, sent_tasks, settings,
                                                                                 django_capture_on_commit_callbacks):
    settings.JOB_RETRIES = 1
    job = running(make_job)
    place = job.queued_at

    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.recover(job, "the worker process was killed (SIGKILL)") == "queued"

    job.refresh_from_db()
    assert job.state == "queued" and job.retries == 1 and job.worker_pid is None and job.current_page is None
    assert job.last_fault == "the worker process was killed (SIGKILL) while reading page 2 of 3"
    assert job.message == (
        "Queued again (retry 1 of 1): the worker process was killed (SIGKILL) while reading page 2 of 3."
    )
    # The page that was being read waits again; the page already read keeps its result.
    assert list(job.pages.values_list("state", "text")) == [("succeeded", "one"), ("pending", ""), ("pending", "")]
    # Back at the place it had reached in the queue, and sent ahead of the new jobs.
    assert job.queued_at == place + timedelta(microseconds=1)
    assert [(t["args"], t["priority"]) for t in sent_tasks] == [([job.pk], 0)]
    assert sent_tasks[0]["kwargs"] == {"queued_at": job.queued_at.isoformat()}


def test_after_its_retries_a_job_fails_and_says_what_happened(make_job, sent_tasks, settings):
    settings.JOB_RETRIES = 1
    job = running(make_job, attempts=2, retries=1)

    assert recovery.recover(job, "the worker process was killed (SIGKILL)") == "failed"

    job.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert job.message.startswith(
        "The job failed: the worker process was killed (SIGKILL) while reading page 2 of 3. It was tried 2 times"
    )
    assert "Your upload is kept" in job.message
    assert job.pages.get(number=2).state == "failed"
    assert job.pages.get(number=2).message == (
        "The page was not read: the worker process was killed (SIGKILL) while reading page 2 of 3."
    )
    assert sent_tasks == []


def test_with_no_retries_allowed_the_first_death_fails_the_job(make_job, sent_tasks, settings):
    settings.JOB_RETRIES = 0
    job = running(make_job)

    assert recovery.recover(job, "the worker process was killed (SIGKILL)") == "failed"
    assert "It was tried 1 time;" in Job.objects.get(pk=job.pk).message


def test_a_stopped_worker_queues_its_job_again_without_using_a_retry(make_job, sent_tasks, settings):
    settings.JOB_RETRIES = 1
    job = running(make_job, attempts=2, retries=1)

    assert recovery.recover(job, "the worker was stopped", counts=False) == "queued"

    job.refresh_from_db()
    assert job.state == "queued" and job.retries == 1
    assert job.message == "Queued again: the worker was stopped while reading page 2 of 3."


def test_a_notice_about_an_older_attempt_does_not_touch_the_newer_one(make_job, sent_tasks):
    job = running(make_job, attempts=1)
    seen = Job.objects.get(pk=job.pk)  # what a slow notice read about attempt 1
    Job.objects.filter(pk=job.pk).update(attempts=2)  # meanwhile attempt 2 started

    assert recovery.recover(seen, "the worker process was killed (SIGKILL)") == "moved"
    assert Job.objects.get(pk=job.pk).state == "running" and sent_tasks == []


def test_a_cancelled_job_is_left_cancelled(make_job, sent_tasks):
    job = running(make_job)
    job.move_to(jobstate.CANCELLED, message="Cancelled by alice.")

    assert recovery.recover_after_worker_lost(job.pk, ME, "Worker exited prematurely: signal 9 (SIGKILL)") is None
    assert Job.objects.get(pk=job.pk).state == "cancelled"


def test_a_process_of_this_worker_is_alive_only_while_it_is_its_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert recovery.is_ours(child.pid, os.getpid())
        assert recovery.is_ours(os.getpid(), os.getpid())  # the solo pool runs jobs in the main process
        assert not recovery.is_ours(child.pid, os.getppid())  # someone else's child
    finally:
        child.kill()
        child.wait()
    assert not recovery.is_ours(child.pid, os.getpid())
    assert not recovery.is_ours(None, os.getpid())


def test_it_tells_a_running_job_whose_process_is_gone(make_job, settings):
    settings.RUNNER_LOST_SECONDS, settings.RECOVERY_SWEEP_SECONDS = 30, 5
    now = timezone.now()
    own = running(make_job)  # its pid is no child of this process
    own_just_now = running(make_job)
    other_alive = running(make_job, worker="gpu@there")
    other_silent = running(make_job, worker="gpu@there")
    Job.objects.filter(pk=own.pk).update(heartbeat_at=now - timedelta(seconds=11))
    Job.objects.filter(pk=other_silent.pk).update(heartbeat_at=now - timedelta(seconds=31))
    jobs = {j.pk: j for j in Job.objects.all()}

    def gone(job, **kw):
        return recovery.runner_gone(jobs[job.pk], ME, os.getpid(), now, **kw)

    assert gone(own) == "the worker process reading it ended (killed, crashed, or its worker restarted)"
    assert gone(own_just_now) is None  # Celery's own report (with the signal) comes first
    assert gone(own_just_now, starting=True) is not None  # a worker starting again: no report will come
    assert gone(other_alive) is None
    assert gone(other_silent).startswith("its worker gpu@there stopped answering (no sign of life for over 30 s")


def test_a_round_keeps_its_own_live_jobs_alive_and_recovers_the_rest(make_job, sent_tasks, settings):
    settings.RUNNER_LOST_SECONDS = 30
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        old = timezone.now() - timedelta(minutes=5)
        alive = running(make_job, worker_pid=child.pid, heartbeat_at=old)
        dead_worker = running(make_job, worker="gpu@gone", heartbeat_at=old)
        counts = recovery.sweep(ME, os.getpid())
    finally:
        child.kill()
        child.wait()

    assert counts == {"alive": 1, "recovered": 1}
    alive.refresh_from_db()
    assert alive.state == "running" and alive.heartbeat_at > old
    dead_worker.refresh_from_db()
    assert dead_worker.state == "queued" and "its worker gpu@gone stopped answering" in dead_worker.last_fault


@pytest.fixture
def worker_named_me():
    """This process as the worker ME (its backend holder knows the name Celery gave it)."""
    with tasks.use_holder(tasks.worker_holder()) as holder:
        holder.hostname = ME
        yield holder


def test_celerys_worker_lost_report_recovers_the_job_in_the_main_process(make_job, sent_tasks, worker_named_me):
    from billiard.exceptions import WorkerLostError

    job = running(make_job)

    tasks.on_task_failure(sender=tasks.run_job, task_id="t", args=[job.pk],
                          exception=WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 0."))

    job.refresh_from_db()
    assert job.state == "queued" and job.retries == 1
    assert job.last_fault.startswith("the worker process was killed (SIGKILL")


def test_a_hard_time_limit_fails_the_job_instead_of_leaving_it_running(make_job, sent_tasks, worker_named_me, settings):
    from celery.exceptions import TimeLimitExceeded

    settings.JOB_TIME_LIMIT = 60
    job = running(make_job)

    tasks.on_task_failure(sender=tasks.run_job, task_id="t", args=[job.pk], exception=TimeLimitExceeded(90))

    job.refresh_from_db()
    assert job.state == "failed"
    assert job.message == "The job took longer than the limit of 60 seconds and was stopped while reading page 2 of 3."


def test_a_task_handed_out_again_for_a_job_its_dead_worker_left_running_recovers_it(make_job, sent_tasks, settings):
    settings.RUNNER_LOST_SECONDS = 30
    job = running(make_job, worker="gpu@gone", heartbeat_at=timezone.now() - timedelta(minutes=5))

    result = tasks.run_job.apply(args=[job.pk], kwargs={"queued_at": job.queued_at.isoformat()}).get()

    job.refresh_from_db()
    assert result == "recovered"
    assert job.state == "queued" and job.retries == 1 and "gpu@gone stopped answering" in job.last_fault


def test_a_task_handed_out_again_while_its_job_runs_elsewhere_leaves_it(make_job, sent_tasks):
    job = running(make_job, worker="gpu@there")  # fresh heartbeat

    assert tasks.run_job.apply(args=[job.pk]).get() == "skipped"
    assert Job.objects.get(pk=job.pk).state == "running"


def test_a_worker_that_stops_queues_the_jobs_it_was_running_again(make_job, sent_tasks):
    job = running(make_job, attempts=2, retries=1)

    tasks.on_worker_shutdown(sender=type("Worker", (), {"hostname": ME})())

    job.refresh_from_db()
    assert job.state == "queued" and job.retries == 1
    assert job.message == "Queued again: the worker was stopped while reading page 2 of 3."


def test_the_default_rounds_notice_a_dead_worker_within_a_minute():
    from dashboard import settings as defaults

    assert defaults.RUNNER_LOST_SECONDS + defaults.RECOVERY_SWEEP_SECONDS <= 40
    assert defaults.JOB_RETRIES == 1


def test_the_job_page_says_it_was_run_again_and_why(make_job, sent_tasks, alice_client):
    job = running(make_job)
    recovery.recover(job, "the worker process was killed (SIGKILL)")

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert "Retried</dt>" in page
    assert "1 time: the worker process was killed (SIGKILL) while reading page 2 of 3" in page
    assert "Queued again (retry 1 of 1)" in page
