"""The worker's main process killed mid-job (its pool process goes with it). Another worker takes the
job over once the dead one gave no sign of life for RUNNER_LOST_SECONDS (30 s by default: within a
minute with the 5-second rounds; 10 s here, to keep the test short); a worker that starts again
under the same name takes it over at once."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.stack import process_exists, words_pdf

pytestmark = pytest.mark.timeout(180)

WORDS = [f"soak-{n:04d}" for n in (31, 32, 33, 34)]


def kill_the_worker_mid_job(stack, hostname: str = "gpu@faults") -> tuple[int, float]:
    answer = stack.upload([("four-pages.pdf", words_pdf(WORDS))])
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["jobs"][0]["id"]
    stack.wait_until(job_id, lambda j: j["state"] == "running" and (j["page"] or 0) >= 2, 60, poll=0.05)
    pool = stack.pool_pids(hostname)
    stack.workers[hostname].kill(signal.SIGKILL)
    killed_at = time.monotonic()
    # Orphaned, the pool process stops too: it must not go on reading what another worker will read.
    deadline = time.monotonic() + 10
    while any(process_exists(pid) for pid in pool):
        assert time.monotonic() < deadline, "the pool process of the killed worker is still running"
        time.sleep(0.2)
    return job_id, killed_at


@pytest.fixture
def quick_stack(make_stack):
    return make_stack(recovery={"RUNNER_LOST_SECONDS": 10}).start_all()


def test_a_job_whose_worker_was_killed_ends_on_a_new_worker_under_another_name(quick_stack):
    stack = quick_stack
    job_id, killed_at = kill_the_worker_mid_job(stack)
    stack.start_worker("gpu@another")

    job = stack.wait_ended(job_id, 90)
    taken = time.monotonic() - killed_at
    assert taken < 60, f"the job ended {taken:.0f} s after its worker died"
    assert job["state"] == "succeeded", job["message"]
    assert job["worker"] == "gpu@another"
    assert job["retries"] == 1
    assert "its worker gpu@faults stopped answering" in job["last_fault"]
    assert stack.text(job_id).split() == WORDS


def test_a_worker_that_starts_again_under_its_name_takes_up_the_job_it_left_at_once(stack):
    job_id, killed_at = kill_the_worker_mid_job(stack)
    stack.start_worker("gpu@faults")  # a restart, as `start` or a container's restart policy does

    job = stack.wait_ended(job_id, 60)
    assert job["state"] == "succeeded", job["message"]
    assert job["retries"] == 1
    assert "the worker process reading it ended" in job["last_fault"]
    assert stack.text(job_id).split() == WORDS
    # At its start, not after RUNNER_LOST_SECONDS: it knows the pid was its own.
    assert time.monotonic() - killed_at < 20
