"""The README's start command: one process tree with Redis, web server, worker and GPU monitor. A
child that dies is started again (and the log says so); SIGINT stops all of it — also when the
shell that started it left SIGINT ignored, as a script's `start &` does. Whatever happens, the test
leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,pgid="], capture_output=True, text=True).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines() if line.strip()]
    found, frontier = set(), {pid}
    while frontier:
        children = {p for p, pp, _ in rows if pp in frontier} - found
        found |= children
        frontier = children
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
            if ") Z " not in stat:
                living.add(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return living


class Started:
    """`manage.py start` and every process it starts, all killed at the end whatever happened."""

    def __init__(self, tmp_path: Path, ignore_sigint: bool):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.update(OCRDASH_DATA_DIR=str(tmp_path / "data"), OCRDASH_PORT=str(self.port),
                   OCRDASH_ADMIN_PASSWORD="first-start-pw")
        self.log = tmp_path / "start.log"

        def as_a_script_started_with_ampersand():
            if ignore_sigint:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "start"], cwd=ROOT, env=env, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=as_a_script_started_with_ampersand,
        )
        self.seen: set[int] = set()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def note_children(self) -> set[int]:
        found = descendants(self.proc.pid)
        self.seen |= found
        return found

    def child(self, command_part: str) -> int:
        for pid in self.note_children():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if command_part in cmdline and _ppid(pid) == self.proc.pid:
                return pid
        raise AssertionError(f"no child runs {command_part!r}: {self.text()[-2000:]}")

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text()[since:]):
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text()[-3000:]}"
            time.sleep(0.3)

    def kill_everything(self) -> None:
        self.note_children()
        for pid in alive(self.seen | {self.proc.pid}):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.proc.wait(timeout=10)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


@pytest.fixture
def start(tmp_path, request):
    made: list[Started] = []

    def run(ignore_sigint: bool = False) -> Started:
        made.append(Started(tmp_path, ignore_sigint))
        return made[-1]

    def finish():
        for started in made:
            started.kill_everything()

    request.addfinalizer(finish)
    return run


def test_start_serves_the_dashboard_restarts_a_dead_child_and_sigint_stops_every_process(start):
    started = start(ignore_sigint=True)
    port = started.port
    deadline = time.monotonic() + 120
    while True:
        assert started.proc.poll() is None, started.text()[-3000:]
        try:
            page = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            if page.ok and "ready." in started.text():
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, started.text()[-3000:]
        time.sleep(0.5)

    text = started.text()
    assert "embedded Redis" in text
    assert re.search(r"as\s+admin\s+with password\s+first-start-pw", text)
    assert "/login/" in page.url  # anonymous visitors land on the login page
    session = requests.Session()
    form = session.get(f"http://127.0.0.1:{port}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    home = session.post(
        f"http://127.0.0.1:{port}/login/",
        data={"username": "admin", "password": "first-start-pw", "csrfmiddlewaretoken": token},
        headers={"Referer": f"http://127.0.0.1:{port}/login/"},
    )
    assert home.ok and "Dashboard" in home.text and "live.js" in home.text

    # The worker dies (the out-of-memory killer): it is started again, and the log says so.
    mark = len(started.text())
    worker = started.child("celery")
    redis_server = started.child("redis-server")
    os.kill(worker, signal.SIGKILL)
    started.wait_for(r"ocrdash: worker was killed by SIGKILL; starting it again in 1 s", 20, mark)
    started.wait_for(r"ocrdash: starting worker again \(restart 1\)", 20, mark)
    started.wait_for(r"ready\.", 90, mark)
    assert started.child("celery") != worker
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    # Redis stayed up all along: the same process, never stopped nor started again.
    assert started.child("redis-server") == redis_server
    assert "redis" not in " ".join(re.findall(r"ocrdash: (.*)", started.text()[mark:])).replace("worker", "")

    children = started.note_children()
    assert len(children) >= 5  # redis-server, uvicorn, celery and its pool process, the GPU monitor
    started.proc.send_signal(signal.SIGINT)  # ignored by inheritance: start sets its own handler
    assert started.proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert alive(started.seen) == set()
    assert "ocrdash: stopping" in started.text()
