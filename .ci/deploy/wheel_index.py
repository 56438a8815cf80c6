"""A package index on 127.0.0.1 for the wheels in one folder: the stand-in for PyTorch's CPU
index (the Dockerfile's TORCH_CPU_INDEX), which this machine cannot reach.

    python3 wheel_index.py FOLDER PORT_FILE [PORT]

Serves the "simple" API that pip reads (PEP 503): /simple/ lists the projects, /simple/<name>/
their files, and the files themselves. Listens on PORT where it is free (the same address from
run to run keeps Docker's layer cache valid: the index is a build argument), else on any free
port; writes the port to PORT_FILE, then serves until it is stopped. Standard library only.
"""

from __future__ import annotations

import html
import http.server
import re
import sys
import urllib.parse
from pathlib import Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str:
    """The project a wheel belongs to: the part of its name before the version."""
    return normalize(filename.split("-", 1)[0])


class Index:
    def __init__(self, folder: Path):
        self.files = {p.name: p for p in sorted(folder.glob("*.whl"))}

    def projects(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name in self.files:
            found.setdefault(project_of(name), []).append(name)
        return found


def page(links: list[tuple[str, str]]) -> bytes:
    anchors = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br>\n' for href, text in links)
    return f"<!DOCTYPE html>\n<html><body>\n{anchors}</body></html>\n".encode()


def make_handler(index: Index):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            path = self.path.split("?", 1)[0]
            projects = index.projects()
            parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
            if parts == ["simple"]:
                return self.send(200, page([(f"{name}/", name) for name in sorted(projects)]))
            if len(parts) == 2 and parts[0] == "simple":
                files = projects.get(normalize(parts[1]))
                if not files:
                    return self.send(404, b"not here\n")
                return self.send(200, page([(f"../../files/{urllib.parse.quote(name)}", name) for name in files]))
            if len(parts) == 2 and parts[0] == "files" and parts[1] in index.files:
                return self.send_file(index.files[parts[1]])
            return self.send(404, b"not here\n")

        def send(self, status: int, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_file(self, path: Path):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    self.wfile.write(chunk)

        def log_message(self, *args):
            pass

    return Handler


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    folder, port_file = Path(argv[0]), Path(argv[1])
    handler = make_handler(Index(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(argv[2]) if len(argv) == 3 else 0), handler)
    except OSError:  # taken: any port will do, at the cost of the layer cache
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port_file.write_text(f"{server.server_address[1]}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
