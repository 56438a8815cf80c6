"""The command line of the web server, written once for the start command, the tests and the benchmarks
(docker/entrypoint.sh writes the same in shell).

uvicorn (HTTP through h11, websockets through the `websockets` package) hands a request's body to the
application as it arrives, a chunk at a time, and reads no more from the socket while the application
does not ask for it: so dashboard/bodylimit.py can refuse a body over its limit, or a stranger's body,
before it is read, let alone held in memory or on disk. (daphne, used before, read every body whole
first.) `Expect: 100-continue` is answered only when the application reads the body, so a client that
asks first sends nothing at all before its 413 or 401.
"""

from __future__ import annotations

import sys

# Seconds open connections (websockets, a download) get to finish when the server is stopped.
GRACEFUL_SHUTDOWN_SECONDS = 5


def command(host: str, port: int, behind_proxy: bool = False, python: str | None = None) -> list[str]:
    return [
        python or sys.executable, "-m", "uvicorn", "dashboard.asgi:application",
        "--host", host, "--port", str(port),
        "--http", "h11", "--ws", "websockets-sansio",
        # Django's ASGI application has no lifespan events.
        "--lifespan", "off",
        "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_SECONDS),
        "--no-server-header",
        # Client addresses from X-Forwarded-For only behind a proxy (any client could claim to be
        # 127.0.0.1 otherwise); the proxy must overwrite the header, and the port be reachable only
        # through it (SECURITY.md).
        *(["--proxy-headers", "--forwarded-allow-ips", "*"] if behind_proxy else ["--no-proxy-headers"]),
    ]  # fmt: skip
