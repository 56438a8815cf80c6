"""Cancelling and retrying jobs: the one place the pages (views/actions.py), the API and the
OpenAI-compatible endpoint go through.

A queued job is cancelled at once: its row moves to `cancelled` (the worker's task skips a job
that is no longer queued when it comes to it), the job's event goes out, and the jobs still
waiting get their new positions. A running job moves to `cancelled` too; the worker's cancel
flag (workers/tasks.py `_CancelFlag`) reads that within a second, and the backend stops at the
next generated token (transformers, cpu), aborts its request (vLLM) or does not start
(rapidocr). An engine that finishes anyway cannot overwrite the cancel: Job.move_to from
`cancelled` to `succeeded` is refused, and the worker keeps the cancel.

Owners cancel and retry their own jobs; staff any job.
"""

from __future__ import annotations

from core import jobstate
from ocr_app import events, queueing, retention
from ocr_app.models import Job, Page

# A cancel races with the worker taking the job: queued → running between our read and our move.
MOVE_ATTEMPTS = 3


class NotAllowed(Exception):
    """The user may not change this job."""


class WrongState(Exception):
    """The job is not in a state that allows the change."""

    def __init__(self, message: str, state: str):
        super().__init__(message)
        self.state = state


def may_change(user, job: Job) -> bool:
    return bool(user and user.is_authenticated and (user.is_staff or job.owner_id == user.pk))


def _check_allowed(user, job: Job, verb: str) -> None:
    if not may_change(user, job):
        owner = job.owner.get_username()
        raise NotAllowed(f"Only {owner} (the job's owner) or staff may {verb} job {job.pk}.")


def cancel_job(job: Job, user) -> Job:
    """Cancel a queued or running job; raises NotAllowed or WrongState (the job has ended)."""
    _check_allowed(user, job, "cancel")
    who = user.get_username()
    for _ in range(MOVE_ATTEMPTS):
        if job.ended:
            raise WrongState(f"Job {job.pk} has already ended ({job.state}); there is nothing to cancel.", job.state)
        was = job.state
        if job.move_to(jobstate.CANCELLED, message=f"Cancelled by {who}."):
            events.publish_job(job)
            if was == jobstate.QUEUED:
                events.publish_queue_positions()
            return job
        job.refresh_from_db()  # the worker moved it meanwhile: look again
    raise WrongState(f"Job {job.pk} kept changing state ({job.state}); try again.", job.state)


def retry_job(job: Job, user, only_unfinished_pages: bool = False) -> Job:
    """Queue an ended job again; raises NotAllowed or WrongState (it is queued or running).

    Every page is read again, or with `only_unfinished_pages` only the pages that have not
    succeeded (the others keep their results)."""
    _check_allowed(user, job, "retry")
    if not job.ended:
        raise WrongState(
            f"Job {job.pk} is {job.state}; only a job that has ended (succeeded, failed or cancelled) can be "
            "queued again.",
            job.state,
        )
    if removed := retention.removed_message(job, retention.ORIGINAL):
        raise WrongState(f"{removed} Upload the file again to read it.", job.state)
    if not job.upload or not job.upload.storage.exists(job.upload.name):
        raise WrongState(f"Job {job.pk}'s upload is missing from the server's storage; upload the file again.",
                         job.state)
    if only_unfinished_pages and not job.pages.exclude(state=Page.SUCCEEDED).exists():
        raise WrongState(f"Every page of job {job.pk} has succeeded; there is no page to retry.", job.state)
    cleared = {} if only_unfinished_pages else {"text": "", "text_preview": "", "result": None}
    if not only_unfinished_pages:  # read afresh: a result or page images removed by retention come back
        cleared["pruned"] = {k: v for k, v in job.pruned.items() if k not in (retention.RESULT, retention.PAGES)}
    moved = job.move_to(
        jobstate.QUEUED,
        plan=None,
        worker="",
        peak_gpu_bytes=None,
        gpu_free_at_start_bytes=None,
        current_page=None,
        reused_from=None,
        retries=0,
        last_fault="",
        **cleared,
    )
    if not moved:
        job.refresh_from_db()
        raise WrongState(f"Job {job.pk} changed state meanwhile ({job.state}); look again.", job.state)
    again = job.pages.exclude(state=Page.SUCCEEDED) if only_unfinished_pages else job.pages.all()
    again.update(state=Page.PENDING, result=None, text="", message="", seconds=None, started_at=None,
                 finished_at=None)
    queueing.send_to_worker(job)  # announces the job (its new place) and sends the task
    return job
