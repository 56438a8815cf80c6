"""When will a job end? Derived, never stored: from the seconds per job that the backend took for
its recent runs (the median of the last RECENT_RUNS that succeeded), the jobs ahead in the queue and
how long the running jobs have run already. Jobs run one after another (one worker per GPU, each
with concurrency 1), so the estimate adds up the work ahead.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.utils import timezone

from core import jobstate
from ocr_app import livestate
from ocr_app.models import Job

RECENT_RUNS = 20


class Estimator:
    """One per request: remembers each backend's median so a page of jobs costs one query per backend."""

    def __init__(self):
        self._medians: dict[str, tuple[float, int] | None] = {}
        self._loaded: str | None | bool = False

    def seconds_per_job(self, backend: str) -> tuple[float, int] | None:
        """(median seconds, runs it is taken from), or None without a finished run of `backend`."""
        if backend not in self._medians:
            runs = (
                Job.objects.filter(state=jobstate.SUCCEEDED, backend=backend, started_at__isnull=False)
                .exclude(finished_at=None)
                .order_by("-finished_at")
                .values_list("started_at", "finished_at")[:RECENT_RUNS]
            )
            seconds = [(end - start).total_seconds() for start, end in runs]
            self._medians[backend] = (statistics.median(seconds), len(seconds)) if seconds else None
        return self._medians[backend]

    def loaded_backend(self) -> str | None:
        """The backend a live worker holds now, else the one that ran the latest job."""
        if self._loaded is False:
            found = None
            try:
                for record in livestate.live_workers().values():
                    found = (record.get("backend_status") or {}).get("backend") or found
            except Exception:  # Redis away: fall back to the history
                found = None
            if not found:
                found = (
                    Job.objects.exclude(started_at=None).exclude(backend="").order_by("-started_at")
                    .values_list("backend", flat=True).first()
                )
            self._loaded = found
        return self._loaded or None

    def _remaining(self, job: Job, now) -> tuple[float | None, str]:
        known = self.seconds_per_job(job.backend) if job.backend else None
        if known is None:
            what = f"{job.backend} " if job.backend else ""
            return None, f"no finished {what}job to learn from yet"
        median, runs = known
        elapsed = (now - job.started_at).total_seconds() if job.started_at else 0.0
        return max(0.0, median - elapsed), f"median of the last {runs} {job.backend} jobs: {median:.1f} s each"

    def estimate(self, job: Job, queue_position: int | None) -> dict:
        """{"seconds": until it ends, or None; "at": when, or None; "basis": how it was worked out}."""
        now = timezone.now()
        if job.state in jobstate.ENDED:
            return {"seconds": None, "at": None, "basis": "the job has ended"}
        if job.state == jobstate.RUNNING:
            seconds, basis = self._remaining(job, now)
        else:
            backend = self.loaded_backend()
            known = self.seconds_per_job(backend) if backend else None
            if known is None:
                what = f"{backend} " if backend else ""
                return {"seconds": None, "at": None, "basis": f"no finished {what}job to learn from yet"}
            median, runs = known
            seconds = 0.0
            for running in Job.objects.filter(state=jobstate.RUNNING).only("backend", "started_at", "state"):
                left, _ = self._remaining(running, now)
                seconds += median if left is None else left
            seconds += (queue_position or 1) * median
            basis = (
                f"{(queue_position or 1) - 1} job(s) ahead and the running ones; median of the last {runs} "
                f"{backend} jobs: {median:.1f} s each"
            )
        if seconds is None:
            return {"seconds": None, "at": None, "basis": basis}
        return {"seconds": round(seconds, 1), "at": now + timedelta(seconds=seconds), "basis": basis}
