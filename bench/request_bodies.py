"""What a huge request body costs the web server before it is refused: the time to the answer, how
much of the body the server read, and how much its memory (RSS) grew. Three anonymous uploads to
POST /api/v1/jobs — 300 MB declared in Content-Length, 3 GB declared (300 MB actually sent), and
300 MB chunked — against the web server ocrdash runs (uvicorn, dashboard/webserver.py), or with
`--server daphne` the one it ran before (installed with the test tools).

    .venv/bin/python bench/request_bodies.py
    .venv/bin/python bench/request_bodies.py --server daphne --mb 300

Each case has a new connection; the server runs on SQLite in a temporary folder (an anonymous
request touches neither the database nor Redis).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import webserver  # noqa: E402

MB = 1 << 20


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def post(port: int, headers: dict[str, str], total: int, chunked: bool, timeout: float) -> tuple[str, float, int]:
    """(status line, seconds to the answer, bytes the client managed to send before it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
    sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
    sent = 0
    block = b"\0" * MB

    def pour():
        nonlocal sent
        try:
            for _ in range(total // MB):
                sock.sendall((b"100000\r\n" + block + b"\r\n") if chunked else block)
                sent += MB
        except OSError:
            pass

    started = time.monotonic()
    threading.Thread(target=pour, daemon=True).start()
    try:
        answer = sock.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)"
    except OSError as exc:
        answer = f"({exc.__class__.__name__})"
    took = time.monotonic() - started
    sock.close()
    return answer, took, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--mb", type=int, default=300, help="megabytes each client sends at most")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tempfile.mkdtemp(prefix="ocrdash-bodies-")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dashboard.settings", OCRDASH_DATA_DIR=data)
    env.pop("OCRDASH_DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    if args.server == "uvicorn":
        argv = webserver.command("127.0.0.1", port)
    else:
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "dashboard.asgi:application"]
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the web server did not start") from None
                time.sleep(0.2)
        total = args.mb * MB
        cases = [
            (f"declared {args.mb} MB", {"Content-Length": str(total)}, False),
            (f"declared 3 GB, {args.mb} MB sent", {"Content-Length": str(3 * 1024 * MB)}, False),
            (f"chunked {args.mb} MB", {"Transfer-Encoding": "chunked"}, True),
        ]
        print(f"server: {args.server}; anonymous POST /api/v1/jobs, multipart, at most {args.mb} MB sent each")
        print(f"{'case':<28} {'answer':<32} {'seconds':>8} {'sent MB':>8} {'RSS growth MB':>14}")
        for name, headers, chunked in cases:
            before = rss(server.pid)
            headers = {"Content-Type": "multipart/form-data; boundary=x", **headers}
            answer, took, sent = post(port, headers, total, chunked, args.timeout)
            time.sleep(0.5)
            grown = (rss(server.pid) - before) / MB if server.poll() is None else float("nan")
            print(f"{name:<28} {answer:<32} {took:>8.2f} {sent / MB:>8.0f} {grown:>14.1f}")
        peak = rss(server.pid) / MB if server.poll() is None else float("nan")
        print(f"server RSS at the end: {peak:.0f} MB" + ("" if server.poll() is None else " (it died)"))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
