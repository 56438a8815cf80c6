"""No database connection of the worker's main process is open when it forks a pool process.

SQLite keeps its file locks in per-process tables. A pool process forked while the main process has
a connection open inherits those tables, so its own connection believes it holds locks the kernel
never gave it. Once the main process closes that connection or dies (SIGKILL), another process can
be the last one out of the database: it checkpoints and deletes the write-ahead log while the pool
process still writes into it. Those writes are lost, although each returned success: a job that
ended "succeeded" reads "running" again, is taken for lost and runs a second time.

So the main process does its database work (recovery rounds, a pool process's death, the worker's
stop) inside `main_process_db`, which closes the connections when done, and every fork waits for
that work to end and closes the forking thread's connections first (`install`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from django.db import connections

_guard = threading.RLock()
_installed = False


def close_connections() -> None:
    """This thread's connections, but not one an enclosing transaction still uses (closing it would
    break that transaction; nothing forks inside one)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


@contextlib.contextmanager
def main_process_db() -> Iterator[None]:
    """Database work of the worker's main process: no fork meanwhile, and no connection left open after."""
    with _guard:
        try:
            yield
        finally:
            close_connections()


def _before_fork() -> None:
    _guard.acquire()
    close_connections()


def _after_fork_in_child() -> None:
    _guard._at_fork_reinit()


def install() -> None:
    """Make every fork of this process wait for `main_process_db` work and close the forking
    thread's connections (once per process)."""
    global _installed
    if _installed:
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_guard.release, after_in_child=_after_fork_in_child)
    _installed = True
