#!/usr/bin/env python3
"""One entry point on a fresh machine with Python 3.11:

    python3 ocrdash.py start   # installs what is missing into .venv, then starts the dashboard
    python3 ocrdash.py test    # installs the test tools too, then runs the whole test suite
    python3 ocrdash.py requirements [--extras dots,test] [--only torch | --without torch]
                               # prints the pinned requirements, one a line (the Dockerfile uses it)

`start` also installs dots.ocr's in-process stack (torch, transformers, …) when an NVIDIA GPU is
visible (nvidia-smi answers) or with --with-dots; without it the worker runs rapidocr or vLLM.

Only the standard library is used here: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("OCRDASH_VENV", ROOT / ".venv"))
PY = VENV / "bin" / "python"


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def requirements_command(args: list[str]) -> int:
    """Print the pinned requirements of pyproject.toml, one a line, for `pip install -r`."""
    extras: list[str] = []
    only: set[str] = set()
    without: set[str] = set()
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("--extras", "--only", "--without") or not rest:
            usage = "usage: ocrdash.py requirements [--extras a,b] [--only NAME,...] [--without NAME,...]"
            print(usage, file=sys.stderr)
            return 2
        names = [n.strip() for n in rest.pop(0).split(",") if n.strip()]
        if flag == "--extras":
            extras.extend(names)
        elif flag == "--only":
            only.update(n.lower() for n in names)
        else:
            without.update(n.lower() for n in names)
    try:
        reqs = requirements(extras)
    except KeyError as exc:
        print(f"pyproject.toml has no extra {exc}", file=sys.stderr)
        return 2

    def name(req: str) -> str:
        return req.split("==")[0].split("[")[0].strip().lower()

    for req in reqs:
        if (only and name(req) not in only) or name(req) in without:
            continue
        print(req)
    return 0


def gpu_visible() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pip(*args: str) -> None:
    subprocess.run([str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args], check=True)


def ensure_venv(extras: list[str]) -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"ocrdash needs Python 3.11 (this is {sys.version.split()[0]}).")
    if not PY.exists():
        print(f"Creating {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    reqs = requirements(extras)
    stamp = VENV / ".ocrdash-installed"
    digest = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if stamp.exists() and digest in stamp.read_text().split():
        return
    print("Installing pinned dependencies (the first run takes a few minutes) …", flush=True)
    torch = [r for r in reqs if r.startswith("torch==")]
    if torch:
        # Alone and first: next to packages that depend on it, pip may choose another build.
        pip(*torch)
    pip(*reqs)
    # Remember both sets, so `start` after `test` does not reinstall.
    known = set(stamp.read_text().split()) if stamp.exists() else set()
    stamp.write_text("\n".join(sorted(known | {digest})) + "\n")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    rest = argv[1:]
    os.chdir(ROOT)
    if command == "start":
        with_dots = "--with-dots" in rest or gpu_visible()
        ensure_venv(["dots"] if with_dots else [])
        os.execv(PY, [str(PY), "manage.py", "start", *[a for a in rest if a != "--with-dots"]])
    if command == "test":
        ensure_venv(["dots", "test"])
        os.execv(PY, [str(PY), "-m", "tests.run", *rest])
    if command == "requirements":
        return requirements_command(rest)
    if command in {"manage", "manage.py"}:
        ensure_venv([])
        os.execv(PY, [str(PY), "manage.py", *rest])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
