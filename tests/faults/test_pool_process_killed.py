"""A pool process killed mid-page: what the kernel's out-of-memory killer or a hard time limit does.
The worker's main process sees it at once (Celery's WorkerLostError): the job is run again, up to
OCRDASH_JOB_RETRIES (1) times, then failed with what happened; the jobs behind it run."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.faults.stack import word_image, words_pdf

pytestmark = pytest.mark.timeout(150)


def kill_pool(stack) -> None:
    pids = stack.pool_pids()
    assert pids, "the worker has no pool process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_a_job_whose_pool_process_is_killed_mid_page_runs_again_and_the_next_job_runs(stack):
    words = [f"soak-{n:04d}" for n in (11, 12, 13, 14)]
    answer = stack.upload([("four-pages.pdf", words_pdf(words)), ("next.png", word_image("soak-0015"))])
    assert answer.status_code == 202, answer.text
    document, following = (job["id"] for job in answer.json()["jobs"])

    stack.wait_until(document, lambda j: j["state"] == "running" and (j["page"] or 0) >= 2, 60, poll=0.05)
    kill_pool(stack)
    killed_at = time.monotonic()

    job = stack.wait_ended(document, 90)
    assert time.monotonic() - killed_at < 90
    assert job["state"] == "succeeded", job["message"]
    assert job["retries"] == 1
    assert re.search(r"killed \(SIGKILL.*out of memory\) while reading page [234] of 4", job["last_fault"])
    assert job["message"].startswith("Run again after the worker process was killed (SIGKILL")
    assert stack.text(document).split() == words
    assert stack.completions()[document] == 1  # the killed attempt did not run to the end too

    after = stack.wait_ended(following, 60)
    assert after["state"] == "succeeded" and stack.text(following).strip() == "soak-0015"


def test_a_file_that_kills_the_worker_every_time_fails_after_the_retry_limit_and_the_jobs_behind_it_run(stack):
    poison_words = ["soak-0021", "soak-0022", "soak-0023"]
    answer = stack.upload([
        ("poison.pdf", words_pdf(poison_words)),
        ("behind-1.png", word_image("soak-0024")),
        ("behind-2.png", word_image("soak-0025")),
    ])
    assert answer.status_code == 202, answer.text
    poison, *behind = (job["id"] for job in answer.json()["jobs"])

    # The test is the out-of-memory killer: whenever the poison file is read, its process dies.
    for retries in (0, 1):
        stack.wait_until(poison, lambda j, r=retries: j["state"] == "running" and j["retries"] == r, 60, poll=0.02)
        kill_pool(stack)

    job = stack.wait_ended(poison, 90)
    assert job["state"] == "failed"
    assert "The job failed: the worker process was killed (SIGKILL" in job["message"]
    assert "It was tried 2 times" in job["message"] and "Your upload is kept" in job["message"]
    assert job["retries"] == 1
    for job_id, word in zip(behind, ("soak-0024", "soak-0025"), strict=True):
        assert stack.wait_ended(job_id, 60)["state"] == "succeeded"
        assert stack.text(job_id).strip() == word
