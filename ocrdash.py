#!/usr/bin/env python3
"""One entry point on a fresh machine with Python 3.11:

    python3 ocrdash.py start   # installs what is missing into .venv, then starts the dashboard
    python3 ocrdash.py test    # installs the test tools too, then runs the whole test suite

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


def requirements(with_tests: bool) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    if with_tests:
        reqs += project["optional-dependencies"]["test"]
    return reqs


def ensure_venv(with_tests: bool) -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"ocrdash needs Python 3.11 (this is {sys.version.split()[0]}).")
    if not PY.exists():
        print(f"Creating {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    reqs = requirements(with_tests)
    stamp = VENV / ".ocrdash-installed"
    digest = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if stamp.exists() and digest in stamp.read_text().split():
        return
    print("Installing pinned dependencies (first run takes a minute or two) …", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", *reqs], check=True)
    # Remember both sets, so `start` after `test` does not reinstall.
    known = set(stamp.read_text().split()) if stamp.exists() else set()
    stamp.write_text("\n".join(sorted(known | {digest})) + "\n")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    rest = argv[1:]
    os.chdir(ROOT)
    if command == "start":
        ensure_venv(with_tests=False)
        os.execv(PY, [str(PY), "manage.py", "start", *rest])
    if command == "test":
        ensure_venv(with_tests=True)
        os.execv(PY, [str(PY), "-m", "tests.run", *rest])
    if command in {"manage", "manage.py"}:
        ensure_venv(with_tests=False)
        os.execv(PY, [str(PY), "manage.py", *rest])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
