"""The README's start command: one process tree with Redis, web server and worker,
and Ctrl-C stops all of it."""

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
pytestmark = pytest.mark.integration


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


def test_start_serves_the_dashboard_and_ctrl_c_stops_every_process(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        OCRDASH_DATA_DIR=str(tmp_path / "data"),
        OCRDASH_PORT=str(port),
        OCRDASH_ADMIN_PASSWORD="first-start-pw",
    )
    log = tmp_path / "start.log"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "start"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                if page.ok and "ready." in log.read_text():
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        text = log.read_text()
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

        children = descendants(proc.pid)
        assert len(children) >= 3  # redis-server, daphne, celery (and its pool child)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        time.sleep(0.5)
        assert alive(children) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
