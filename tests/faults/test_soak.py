"""A short soak (bench/soak.py runs the full 300 jobs): uploads from concurrent API clients while
each fault is injected once — a pool process killed, a worker killed and another started, Redis
restarted, the web server killed and started again. Then every job has ended, every succeeded
job's text is right, none ran twice to the end, none is lost; a failed one says why."""

from __future__ import annotations

import pytest

from tests.faults.soak import Soak

pytestmark = pytest.mark.timeout(240)


def test_every_job_of_a_soak_with_faults_ends_once_with_the_right_text(make_stack):
    stack = make_stack(recovery={"RUNNER_LOST_SECONDS": 10, "RESEND_AFTER_SECONDS": 5}).start_all()

    soak = Soak(stack, jobs=16, clients=3, seed=7)
    result = soak.run(every=(1.5, 3.0), schedule=["pool", "redis", "web", "worker"], pause=(0.3, 1.0), settle=120)
    print("\n".join(result.lines()))

    assert result.faults == {"pool": 1, "redis": 1, "web": 1, "worker": 1}
    assert not result.not_accepted and not result.lost
    assert len(result.accepted) == 16
    assert result.stuck == []
    assert result.duplicated == []
    assert result.wrong_text == []
    for message in result.failed.values():  # a job hit twice may fail, with what happened to it
        assert "killed" in message or "stopped answering" in message or "ended" in message, message
