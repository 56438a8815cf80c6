"""The soak: many jobs from concurrent API clients while faults are injected, then a count of what
became of each one. Used by tests/faults/test_soak.py (a short run) and bench/soak.py (the full one).

Each client uploads its images one after another, each with an Idempotency-Key, and sends again
what got no answer (the web server was down) or a 503 (Redis was down), as a careful script does.
Faults, between uploads: SIGKILL of a worker's pool process ("pool"), of a worker's main process and
a new worker under another name ("worker"), a Redis restart with or without its data ("redis"), and
SIGKILL of the web server and a new one ("web").
"""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import requests

from tests.faults.stack import Stack, word_image

FAULTS = ("pool", "worker", "redis", "web")


@dataclass
class SoakResult:
    jobs: int
    clients: int
    seconds: float = 0.0
    faults: Counter = field(default_factory=Counter)
    answered_503: int = 0
    accepted: dict[int, int] = field(default_factory=dict)  # number → job id
    not_accepted: list[int] = field(default_factory=list)
    states: Counter = field(default_factory=Counter)
    stuck: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    wrong_text: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    retried: int = 0
    to_result: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        if not self.to_result:
            return None
        if len(self.to_result) == 1:
            return self.to_result[0]
        return statistics.quantiles(self.to_result, n=100, method="inclusive")[round(q) - 1]

    def lines(self) -> list[str]:
        p50, p95 = self.percentile(50), self.percentile(95)
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items())) or "none"
        return [
            f"jobs: {self.jobs} from {self.clients} clients in {self.seconds:.0f} s",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"uploads answered 503 and sent again: {self.answered_503}",
            f"jobs: {dict(self.states)}; queued again after a fault: {self.retried}",
            f"lost: {len(self.lost) + len(self.not_accepted)}, stuck: {len(self.stuck)}, "
            f"duplicated: {len(self.duplicated)}, wrong text: {len(self.wrong_text)}",
            f"time to result: p50 {p50:.1f} s, p95 {p95:.1f} s" if p50 is not None else "time to result: -",
            *(f"failed: job {job_id}: {message}" for job_id, message in sorted(self.failed.items())),
        ]


class Soak:
    def __init__(self, stack: Stack, jobs: int, clients: int, seed: int = 1, log=print):
        self.stack, self.jobs, self.clients, self.log = stack, jobs, clients, log
        self.random = random.Random(seed)
        self.result = SoakResult(jobs, clients)
        self.numbers = iter(range(1, jobs + 1))
        self.lock = threading.Lock()
        self.faulting = threading.Event()
        self.pause = (0.0, 0.0)
        self.worker_count = len(stack.workers)
        self.run_id = f"{time.time():.0f}"

    # -- the clients ------------------------------------------------------------------------

    def _next(self) -> int | None:
        with self.lock:
            return next(self.numbers, None)

    def _client(self, give_up_after: float) -> None:
        while (number := self._next()) is not None:
            data = word_image(f"soak-{number:04d}")
            headers = {"Idempotency-Key": f"soak-{self.run_id}-{number}"}
            deadline = time.monotonic() + give_up_after
            while True:
                try:
                    answer = self.stack.http.post(
                        f"{self.stack.web_url}/api/v1/jobs", files=[("file", (f"soak-{number}.png", data))],
                        headers=headers, timeout=30,
                    )
                except requests.RequestException:
                    answer = None
                if answer is not None and answer.status_code == 202:
                    with self.lock:
                        self.result.accepted[number] = answer.json()["jobs"][0]["id"]
                    time.sleep(self.random.uniform(*self.pause))
                    break
                if answer is not None and answer.status_code == 503:
                    with self.lock:
                        self.result.answered_503 += 1
                elif answer is not None:
                    self.log(f"soak: upload {number} answered {answer.status_code}: {answer.text[:200]}")
                if time.monotonic() > deadline:
                    with self.lock:
                        self.result.not_accepted.append(number)
                    break
                time.sleep(0.5)  # Retry-After says 30 s; a soak sends sooner to keep the pressure on

    # -- the faults -------------------------------------------------------------------------

    def inject(self, kind: str) -> None:
        stack = self.stack
        if kind == "pool":
            live = [h for h, p in stack.workers.items() if p.alive()]
            for pid in stack.pool_pids(self.random.choice(live)) if live else []:
                _kill(pid)
        elif kind == "worker":
            live = [h for h, p in stack.workers.items() if p.alive()]
            if live:
                stack.workers[self.random.choice(live)].kill(signal.SIGKILL)
            self.worker_count += 1
            stack.start_worker(f"gpu@soak{self.worker_count}")
        elif kind == "redis":
            stack.restart_redis(keep_data=self.random.random() < 0.5, down_seconds=self.random.uniform(1, 3))
        elif kind == "web":
            stack.web.kill(signal.SIGKILL)
            stack.web.popen.wait(timeout=10)
            stack.start_web()
        self.result.faults[kind] += 1
        self.log(f"soak: fault {kind} at {time.monotonic() - self.started:.0f} s, "
                 f"{len(self.result.accepted)} of {self.jobs} uploads accepted")

    def _faults(self, schedule: list[str] | None, every: tuple[float, float], kinds: tuple[str, ...]) -> None:
        planned = list(schedule or [])
        while self.faulting.is_set():
            time.sleep(self.random.uniform(*every))
            if not self.faulting.is_set():
                break
            if schedule and not planned:
                break
            kind = planned.pop(0) if schedule else self.random.choice(kinds)
            try:
                self.inject(kind)
            except Exception as exc:  # a fault that could not be injected is reported, the run goes on
                self.log(f"soak: could not inject {kind}: {exc}")

    # -- the run ----------------------------------------------------------------------------

    def run(self, every: tuple[float, float] = (5.0, 15.0), kinds: tuple[str, ...] = FAULTS,
            schedule: list[str] | None = None, pause: tuple[float, float] = (0.0, 0.0), faults_until: float = 0.9,
            settle: float = 180.0, give_up_after: float = 180.0) -> SoakResult:
        """Faults every `every` seconds: `schedule`, in its order (all of it), else random ones of
        `kinds` until `faults_until` of the jobs have ended. Each client pauses `pause` seconds between uploads.
        Then up to `settle` seconds for every job to end: those that do not are stuck."""
        self.started, self.pause = time.monotonic(), pause
        self.faulting.set()
        clients = [threading.Thread(target=self._client, args=(give_up_after,), daemon=True)
                   for _ in range(self.clients)]
        injector = threading.Thread(target=self._faults, args=(schedule, every, kinds), daemon=True)
        for thread in clients:
            thread.start()
        injector.start()
        for thread in clients:
            thread.join()
        if schedule:
            injector.join()  # every scheduled fault, however quickly the jobs go
        else:
            self._wait_ended(faults_until, self.faulting.is_set, settle)
        self.faulting.clear()
        injector.join()
        self._wait_ended(1.0, lambda: True, settle)
        self.result.seconds = time.monotonic() - self.started
        self._count()
        return self.result

    def _wait_ended(self, share: float, go_on, timeout: float) -> None:
        """Until `share` of the accepted jobs have ended (or `go_on()` turns false, or the time is up)."""
        deadline = time.monotonic() + timeout
        waiting = set(self.result.accepted.values())
        total = len(waiting)
        while waiting and len(waiting) > total * (1 - share) and go_on() and time.monotonic() < deadline:
            for job_id in list(waiting):
                try:
                    if self.stack.job(job_id)["ended"]:
                        waiting.discard(job_id)
                except requests.RequestException:
                    break
            time.sleep(0.5)

    def _count(self) -> None:
        result, stack = self.result, self.stack
        completions = stack.completions()
        for number, job_id in sorted(result.accepted.items()):
            try:
                job = stack.job(job_id)
            except requests.HTTPError:
                result.lost.append(job_id)
                continue
            result.states[job["state"]] += 1
            result.retried += 1 if job["retries"] else 0
            if not job["ended"]:
                result.stuck.append(job_id)
                continue
            if completions.get(job_id, 0) > 1:
                result.duplicated.append(job_id)
            if job["state"] == "succeeded":
                if stack.text(job_id).strip() != f"soak-{number:04d}":
                    result.wrong_text.append(job_id)
            else:
                result.failed[job_id] = job["message"]
            started, finished = _when(job["created_at"]), _when(job["finished_at"])
            if started and finished:
                result.to_result.append(finished - started)
        with stack.db() as db:
            made = [row[0] for row in db.execute("select id from ocr_app_job")]
        # A job made by an upload whose answer was lost and then made again would show here.
        result.duplicated += sorted(set(made) - set(result.accepted.values()))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _when(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(re.sub(r"Z$", "+00:00", stamp)).timestamp()
