#!/usr/bin/env python3
"""One entry point on a fresh machine with Python 3.11:

    python3 ocrdash.py start   # installs what is missing into .venv, then starts the dashboard
    python3 ocrdash.py test    # installs the test tools too, then runs the whole test suite
    python3 ocrdash.py requirements [--extras dots,test] [--only torch | --without torch]
                               # prints the pinned requirements, one a line (the Dockerfile uses it)

`start` also installs dots.ocr's in-process stack (torch, transformers, …) when an NVIDIA GPU is
visible (nvidia-smi answers) or with --with-dots; without it the worker runs rapidocr or vLLM.
`start --with-gguf` (or GGUF files in the model folder's gguf/) adds llama.cpp (the `gguf` extra):
llama-cpp-python is compiled from source, a few minutes on a small machine (CMAKE_ARGS below).

Only the standard library is used here: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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
    return list(dict.fromkeys(reqs))  # a pin two extras share, once


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


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    command = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True, env=env)


# llama-cpp-python builds llama.cpp from source. Portable (no -march=native): a native build on
# some x86 CPUs takes an AMX code path that crashes on Q8_0 weights. With CUDA when a GPU and nvcc
# are there. The admin's own CMAKE_ARGS win. pip caches the built wheel, so this happens once.
def gguf_build_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("CMAKE_ARGS"):
        cuda = gpu_visible() and shutil.which("nvcc") is not None
        env["CMAKE_ARGS"] = "-DGGML_NATIVE=OFF" + (" -DGGML_CUDA=on" if cuda else "")
    return env


def keep_llamacpp_source(reqs: list[str]) -> None:
    """Keep llama-cpp-python's source distribution in <venv>/src: its vendored convert_hf_to_gguf.py
    turns a Hugging Face checkpoint into GGUF (the tests convert their tiny model with it)."""
    pinned = [r for r in reqs if r.lower().startswith("llama-cpp-python==")]
    if pinned:
        command = [str(PY), "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                   "--no-binary", ":all:", "-d", str(VENV / "src"), pinned[0]]  # fmt: skip
        subprocess.run(command, check=True)


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
    gguf = [r for r in reqs if r.lower().startswith("llama-cpp-python==")]
    if gguf:
        print("Building llama-cpp-python (llama.cpp from source: about 5 minutes on 2 cores) …", flush=True)
    pip(*reqs, env=gguf_build_env() if gguf else None)
    keep_llamacpp_source(reqs)
    # Remember both sets, so `start` after `test` does not reinstall.
    known = set(stamp.read_text().split()) if stamp.exists() else set()
    stamp.write_text("\n".join(sorted(known | {digest})) + "\n")


def gguf_files_present() -> bool:
    """GGUF files in the model folder (fetched or copied there): the llama.cpp backend is wanted."""
    data = Path(os.environ.get("OCRDASH_DATA_DIR") or ROOT / "data")
    models = Path(os.environ.get("OCRDASH_MODEL_DIR") or data / "models")
    return any((models / "gguf").glob("*/*.gguf"))


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    rest = argv[1:]
    os.chdir(ROOT)
    if command == "start":
        with_dots = "--with-dots" in rest or gpu_visible()
        with_gguf = "--with-gguf" in rest or gguf_files_present()
        extras = (["dots"] if with_dots else []) + (["gguf"] if with_gguf else [])
        ensure_venv(extras)
        flags = ("--with-dots", "--with-gguf")
        os.execv(PY, [str(PY), "manage.py", "start", *[a for a in rest if a not in flags]])
    if command == "test":
        ensure_venv(["dots", "test", "gguf"])
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
