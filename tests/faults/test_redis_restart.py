"""Redis stopped during a burst of uploads and started again, with its data (append-only file) and
then without it: every upload either got 503 (with Retry-After, nothing stored) or its job ends;
the websocket is closed by the server (so a browser reconnects) and a new one gets the events of
the jobs made after the restart; the GPU monitor's samples come back."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.faults.stack import LiveSocket, log_in, word_image

pytestmark = pytest.mark.timeout(240)
CLIENTS = 2


class Burst:
    """CLIENTS threads uploading one image after another until told to stop."""

    def __init__(self, stack, first: int):
        self.stack, self.next, self.lock = stack, first, threading.Lock()
        self.answers: list[tuple[int, int, requests.Response | Exception]] = []  # (number, status, answer)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(CLIENTS)]

    def client(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                number, self.next = self.next, self.next + 1
            try:
                answer = self.stack.upload([(f"burst-{number}.png", word_image(f"soak-{number:04d}"))], timeout=30)
                self.answers.append((number, answer.status_code, answer))
            except requests.RequestException as exc:
                self.answers.append((number, 0, exc))
            time.sleep(0.05)

    def accepted(self) -> int:
        return sum(1 for _, code, _ in self.answers if code == 202)

    def wait_accepted(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted() < count:
            assert time.monotonic() < deadline, f"only {self.accepted()} uploads accepted: {self.answers[-3:]}"
            time.sleep(0.1)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)


def test_uploads_while_redis_restarts_get_503_or_their_jobs_end_and_the_live_page_comes_back(make_stack):
    stack = make_stack(recovery={"RESEND_AFTER_SECONDS": 5}).start_all()  # 15 s by default
    stack.start_monitor()
    first_socket = LiveSocket(stack.web_url, log_in(stack.web_url))
    outcomes = []
    number = 100
    for keep_data in (True, False):
        with Burst(stack, number) as burst:
            burst.wait_accepted(2)
            stack.restart_redis(keep_data=keep_data, down_seconds=3)
            before = burst.accepted()
            burst.wait_accepted(before + 2)
        outcomes += burst.answers
        number += 1000

    refused = [(n, a) for n, code, a in outcomes if code == 503]
    accepted = [(n, a.json()["jobs"][0]["id"]) for n, code, a in outcomes if code == 202]
    others = [(n, code, a) for n, code, a in outcomes if code not in (202, 503)]
    assert not others, f"answers other than 202 or 503: {others}"
    assert refused, "no upload reached the web server while Redis was down"
    for _, answer in refused:
        assert answer.headers["Retry-After"] == "30"
        assert "does not answer" in answer.json()["error"] and "Nothing was stored" in answer.json()["error"]
    for n, job_id in accepted:
        job = stack.wait_ended(job_id, 90)
        assert job["state"] == "succeeded", job
        assert stack.text(job_id).strip() == f"soak-{n:04d}"
    with stack.db() as db:  # a 503 stored nothing: every job in the database was accepted
        assert {row[0] for row in db.execute("select id from ocr_app_job")} == {job_id for _, job_id in accepted}

    # The server closed the socket that Redis's restart cut off: a browser reconnects (live.js)...
    assert first_socket.closed.wait(10)
    # ... and the new connection follows the jobs again, and the GPU monitor's samples.
    socket = LiveSocket(stack.web_url, log_in(stack.web_url))
    answer = stack.upload([("after.png", word_image("soak-9999"))])
    job_id = answer.json()["jobs"][0]["id"]
    stack.wait_ended(job_id, 60)
    deadline = time.monotonic() + 10
    while "succeeded" not in socket.job_states(job_id) or not any(e["type"] == "gpu.sample" for e in socket.events):
        assert time.monotonic() < deadline, f"events on the new socket: {socket.events[-5:]}"
        time.sleep(0.2)
    gpu = stack.http.get(f"{stack.web_url}/api/v1/gpu", timeout=10).json()
    assert gpu["sample"] is not None and gpu["age_seconds"] < 10
