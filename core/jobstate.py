"""The job's states and the only moves between them.

queued → running → succeeded | failed | cancelled, and queued → cancelled | failed.
A job that ended may be queued again (retry), and so may a running job whose worker process
died (ocr_app/recovery.py). Anything else is a bug and raises.
"""

from __future__ import annotations

from typing import Literal

# A job's state, as the events and the API carry it (core/events.py).
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATES: tuple[JobState, ...] = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ENDED = frozenset({SUCCEEDED, FAILED, CANCELLED})

ALLOWED_MOVES: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    SUCCEEDED: frozenset({QUEUED}),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
}


class IllegalTransition(Exception):
    def __init__(self, old: str, new: str):
        super().__init__(f"a job cannot go from {old!r} to {new!r}")
        self.old = old
        self.new = new


def check_move(old: str, new: str) -> None:
    if new not in ALLOWED_MOVES.get(old, frozenset()):
        raise IllegalTransition(old, new)
