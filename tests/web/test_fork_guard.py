"""A pool process's writes survive its worker's main process: the main process holds no database
connection when it forks a pool process (ocr_app/forkguard.py).

The fault this replays, from the soak (tests/faults/test_soak.py): a worker's pool process was
killed, and the main process forked its replacement while its recovery round still had a SQLite
connection open. The new pool process ran a job to the end ("succeeded"), the main process was
killed, another process was the last one out of the database and deleted the write-ahead log the
pool process was writing into: the job read "running" again and ran a second time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from core import jobstate
from ocr_app.models import Job
from tests.faults.stack import ROOT
from workers import tasks

# The worker's main process: its recovery round in a thread that lives on (as the upkeep thread
# does), a pool process forked after it, and then the main process killed. The pool process
# finishes its job once the test says so.
MAIN_PROCESS = """
import os, sys, threading
import django
django.setup()
from core import jobstate
from django.db import connections
from ocr_app.models import Job
from workers import tasks

job_id = int(sys.argv[1])
from types import SimpleNamespace
from celery.signals import celeryd_after_setup
from dashboard.celery import app
celeryd_after_setup.send(sender="gpu@main", instance=SimpleNamespace(app=app), conf=app.conf)  # before the pool starts
round_done, stop = threading.Event(), threading.Event()

def upkeep():
    tasks.upkeep_round("gpu@main")
    round_done.set()
    stop.wait()

threading.Thread(target=upkeep, daemon=True).start()
round_done.wait()
ready_r, ready_w = os.pipe()
if os.fork() == 0:  # the pool process
    connections.close_all()  # what Celery does as a pool process starts
    job = Job.objects.get(pk=job_id)
    os.write(ready_w, b"x")
    sys.stdin.readline()  # the test's "go": the main process is dead by now
    moved = job.move_to(jobstate.SUCCEEDED, if_attempt=job.attempts, worker_pid=None, text="read")
    print("moved" if moved else "not moved", flush=True)
    os._exit(0)
os.read(ready_r, 1)
print("forked", flush=True)
os._exit(0)  # killed: the kernel drops its locks at once
"""


def _child_env() -> dict[str, str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    env["OCRDASH_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    return env


@pytest.mark.django_db(transaction=True)
def test_a_job_the_pool_process_finished_stays_finished_after_its_main_process_is_killed(make_job, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the lost write is SQLite's (its locks are per process); PostgreSQL's server keeps them")
    job = make_job()
    job.move_to(jobstate.RUNNING, attempts=1, worker="gpu@main", heartbeat_at=timezone.now())
    errors = (tmp_path / "stderr").open("w+")
    main = subprocess.Popen(
        [sys.executable, "-c", MAIN_PROCESS, str(job.pk)],
        cwd=ROOT,
        env=_child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    try:
        assert main.stdout.readline().strip() == "forked", (tmp_path / "stderr").read_text()
        main.wait(timeout=30)
        # Another process (the web server) opens the database and is the last one out of it.
        connections.close_all()
        assert Job.objects.get(pk=job.pk).state == jobstate.RUNNING
        connections.close_all()
        main.stdin.write("go\n")
        main.stdin.flush()
        # Its write is committed (or written into a deleted log) once it says so.
        assert main.stdout.readline().strip() == "moved", (tmp_path / "stderr").read_text()
    finally:
        main.kill()
        main.wait(timeout=10)
        main.stdin.close()  # a pool process still waiting goes on and ends
        main.stdout.close()
        errors.close()
    job = Job.objects.get(pk=job.pk)
    assert (job.state, job.text) == (jobstate.SUCCEEDED, "read")


@pytest.mark.django_db(transaction=True)
def test_the_workers_recovery_round_leaves_no_database_connection_open(make_job):
    make_job()
    seen: list = []

    def upkeep_thread():
        tasks.upkeep_round("gpu@main")
        seen.append(connections["default"].connection)

    thread = threading.Thread(target=upkeep_thread)
    thread.start()
    thread.join(timeout=60)
    assert seen == [None]
