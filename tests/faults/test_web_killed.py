"""The web process dies between the commit of a job and the send of its task (a test hook makes it
exit right there): the job is in the database, queued, and Redis never heard of it. A worker's
round finds it after RESEND_AFTER_SECONDS (15 s by default, 4 s here) and sends it: it runs."""

from __future__ import annotations

import pytest
import requests

from ocr_app.queueing import FAULT_EXIT_STATUS
from tests.faults.stack import word_image

pytestmark = pytest.mark.timeout(120)


def test_a_job_committed_just_before_the_web_process_died_still_runs(make_stack):
    stack = make_stack(recovery={"RESEND_AFTER_SECONDS": 4})
    stack.start_redis()
    worker = stack.start_worker(wait=False)
    stack.start_web(env={"OCRDASH_TEST_FAULT_EXIT_BEFORE_SEND": "1"})
    stack.wait_worker_ready(worker)

    with pytest.raises(requests.ConnectionError):
        stack.upload([("committed.png", word_image("soak-0041"))])
    assert stack.web.popen.wait(timeout=20) == FAULT_EXIT_STATUS
    with stack.db() as db:
        rows = db.execute("select id, state from ocr_app_job").fetchall()
    assert [tuple(r)[1:] for r in rows] == [("queued",)]
    job_id = rows[0][0]

    stack.start_web()  # the web server again, without the hook, to read the job
    job = stack.wait_ended(job_id, 60)
    assert job["state"] == "succeeded", job["message"]
    assert stack.text(job_id).strip() == "soak-0041"
    assert "sent 1 queued job(s) again" in worker.log()
