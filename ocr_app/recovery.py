"""Every job a worker took ends: a running job whose worker process is gone is queued again or failed.

How a lost process is noticed (each within a minute of the loss):

- A pool process killed mid-job (out of memory, SIGKILL): the worker's main process gets Celery's
  WorkerLostError for the task and calls `recover` at once with the signal (workers/tasks.py).
- The same, when that call did not happen: the main process checks every RECOVERY_SWEEP_SECONDS
  that the pid each of its running jobs names is still one of its children (`sweep`).
- A whole worker gone (main process killed, machine stopped): the main process of every live worker
  writes `heartbeat_at` on the jobs its children run; any worker's sweep takes a running job whose
  heartbeat is older than RUNNER_LOST_SECONDS for lost.
- A task redelivered for a job its own dead worker left running: `run_job` asks `runner_gone`.

A lost job is queued again (a new task message; its retries counted) up to OCRDASH_JOB_RETRIES
times, then failed with what happened, so a file that kills the worker every time (a poison file)
ends and the jobs behind it run. A worker that was stopped (SIGTERM) does not count as a fault.
Every move names the attempt it saw die (`Job.attempts`): a slow notice cannot undo a newer attempt.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from core import jobstate
from ocr_app import events
from ocr_app.models import Job, Page
from ocr_app.queueing import send_to_worker

log = logging.getLogger(__name__)

# A pool process's death as billiard words it: "Worker exited prematurely: signal 9 (SIGKILL) Job: 0."
_SIGNAL = re.compile(r"signal (\d+)")
_EXIT_CODE = re.compile(r"exitcode (\d+)")


def cause_of_worker_lost(text: str) -> tuple[str, bool]:
    """(what happened, in words; whether it counts as a fault) from a WorkerLostError's text."""
    found = _SIGNAL.search(text)
    if found:
        number = int(found.group(1))
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return "the worker process was killed (SIGKILL, most often: the machine ran out of memory)", True
        if number == signal.SIGTERM:
            return "the worker process was stopped (SIGTERM)", False
        return f"the worker process crashed ({name})", True
    found = _EXIT_CODE.search(text)
    if found:
        return f"the worker process exited unexpectedly (exit code {found.group(1)})", True
    return "the worker process ended unexpectedly", True


def where(job: Job) -> str:
    """" while reading page 3 of 5", or "" when no page was being read."""
    if not job.current_page:
        return ""
    if job.page_count > 1:
        return f" while reading page {job.current_page} of {job.page_count}"
    return " while reading the page" if job.is_document else " while reading the image"


def recover(job: Job, cause: str, counts: bool = True) -> str:
    """Queue `job` (running; its process gone) again, or fail it once its retries are spent.

    `cause` says what happened to the process, in words that follow "the job was stopped:".
    Returns "queued", "failed", or "moved" when another process changed the job first.
    """
    fault = f"{cause}{where(job)}"
    attempt = job.attempts
    limit = settings.JOB_RETRIES
    if counts and job.retries >= limit:
        tries = job.retries + 1
        message = (
            f"The job failed: {fault}. It was tried {tries} time{'s' if tries != 1 else ''}; a file that stops "
            "the worker every time is not run again (it may be too large for this machine's memory). "
            "Your upload is kept."
        )
        if not job.move_to(jobstate.FAILED, if_attempt=attempt, message=message, last_fault=fault, current_page=None):
            return "moved"
        Page.objects.filter(job=job, state=Page.RUNNING).update(
            state=Page.FAILED, message=f"The page was not read: {fault}.", finished_at=timezone.now()
        )
        log.warning("job %s failed: %s (attempt %s, retries spent)", job.pk, fault, attempt)
        events.publish_job(job)
        return jobstate.FAILED
    retries = job.retries + (1 if counts else 0)
    if counts:
        message = f"Queued again (retry {retries} of {limit}): {fault}."
    else:
        message = f"Queued again: {fault}."
    if not job.move_to(
        jobstate.QUEUED,
        if_attempt=attempt,
        # Back to the place it had reached (just after, so that a task still naming the old place
        # is known for stale), and sent ahead of the new jobs.
        queued_at=(job.queued_at or timezone.now()) + timedelta(microseconds=1),
        retries=retries,
        last_fault=fault,
        message=message,
        current_page=None,
        worker_pid=None,
        heartbeat_at=None,
    ):
        return "moved"
    Page.objects.filter(job=job, state=Page.RUNNING).update(state=Page.PENDING, started_at=None)
    log.warning("job %s queued again: %s (attempt %s)", job.pk, fault, attempt)
    send_to_worker(job, first=True)
    return jobstate.QUEUED


def is_ours(pid: int | None, main_pid: int, proc_root: str = "/proc") -> bool:
    """Whether `pid` is this worker's main process (the solo pool runs jobs there) or a living
    child of it (a pool process)."""
    if not pid:
        return False
    if pid == main_pid:
        return True
    try:
        stat = Path(proc_root, str(pid), "stat").read_text()
    except OSError:
        return False
    # The name may hold spaces and parentheses: the state and ppid follow the last ")".
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state != "Z" and int(ppid) == main_pid


def runner_gone(job: Job, hostname: str, main_pid: int, now=None, starting: bool = False) -> str | None:
    """Why the process that ran this running job is gone, or None when it may still be at work.

    `hostname` and `main_pid` are the asking worker's: only it can see its own children; any other
    worker's jobs are judged by their heartbeat. `starting`: the worker has just started, so a job
    under its name is one a previous run of it left.
    """
    if job.state != jobstate.RUNNING:
        return None
    now = now or timezone.now()
    seen = job.heartbeat_at or job.started_at
    if job.worker and job.worker == hostname:
        if is_ours(job.worker_pid, main_pid):
            return None
        # Celery tells the main process how a pool process died (recover_after_worker_lost) within
        # a second or so; leave it that long to say so in the job's message.
        if not starting and seen is not None and now - seen < timedelta(seconds=2 * settings.RECOVERY_SWEEP_SECONDS):
            return None
        return "the worker process reading it ended (killed, crashed, or its worker restarted)"
    lost_after = settings.RUNNER_LOST_SECONDS
    if seen is not None and now - seen < timedelta(seconds=lost_after):
        return None
    who = f"its worker {job.worker}" if job.worker else "its worker"
    return (
        f"{who} stopped answering (no sign of life for over {lost_after} s: its process was killed or its "
        "machine stopped)"
    )


def sweep(hostname: str, main_pid: int | None = None, starting: bool = False) -> dict[str, int]:
    """One round of the worker's main process: say that the jobs its children run are alive, and
    recover every running job whose process is gone (its own, or a dead worker's). `starting`: the
    first round of a worker that has just started."""
    main_pid = main_pid or os.getpid()
    now = timezone.now()
    counts = {"alive": 0, "recovered": 0}
    alive: list[int] = []
    for job in Job.objects.filter(state=jobstate.RUNNING).select_related("owner"):
        if job.worker == hostname and is_ours(job.worker_pid, main_pid):
            alive.append(job.pk)
            continue
        cause = runner_gone(job, hostname, main_pid, now, starting)
        if cause is None:
            continue
        if recover(job, cause) != "moved":
            counts["recovered"] += 1
    if alive:
        counts["alive"] = Job.objects.filter(pk__in=alive, state=jobstate.RUNNING, worker=hostname).update(
            heartbeat_at=now
        )
    return counts


def recover_after_worker_lost(job_id: int, hostname: str, error_text: str) -> str | None:
    """Celery's WorkerLostError for a job's task, in the worker's main process."""
    job = Job.objects.select_related("owner").filter(pk=job_id, state=jobstate.RUNNING, worker=hostname).first()
    if job is None:
        return None  # it ended (or was cancelled) before its process died
    cause, counts = cause_of_worker_lost(error_text)
    return recover(job, cause, counts=counts)


def fail_after_hard_time_limit(job_id: int, hostname: str, limit: int) -> bool:
    """The pool process was killed at the hard time limit (the soft limit did not stop the engine)."""
    job = Job.objects.select_related("owner").filter(pk=job_id, state=jobstate.RUNNING, worker=hostname).first()
    if job is None:
        return False
    message = f"The job took longer than the limit of {limit} seconds and was stopped{where(job)}."
    if not job.move_to(jobstate.FAILED, if_attempt=job.attempts, message=message, current_page=None):
        return False
    Page.objects.filter(job=job, state=Page.RUNNING).update(state=Page.PENDING, started_at=None)
    events.publish_job(job)
    return True
