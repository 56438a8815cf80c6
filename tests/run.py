"""The whole test suite, as `python3 ocrdash.py test` runs it.

1. Everything on SQLite (unit, web, integration, browser, faults).
2. The web and integration tests again on PostgreSQL, at the same time as the first pass (each
   pass has its own data folder, Redis and worker; much of either is waiting on processes), its
   output printed when it ends. OCRDASH_TEST_ONE_PASS_AT_A_TIME=1 runs them one after the other.

Where PostgreSQL or Chromium is missing the affected tests are skipped with the reason
printed; with CI=true a skip of that kind fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import IO

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/ocrdash"


def clean_env() -> dict[str, str]:
    # The user's own settings (their database, their Redis) must not leak into the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_") or k.startswith("OCRDASH_TEST_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def postgres_reachable(url: str) -> str | None:
    """None when it answers, else the reason."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    base = url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(base, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"{base} does not answer ({str(exc).strip().splitlines()[0]})"
    return None


def pytest(args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], env=env)


def start_in_background(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, IO[bytes]]:
    """A pytest run whose output goes to a temporary file until finish_in_background prints it."""
    log = tempfile.TemporaryFile()
    command = [sys.executable, "-m", "pytest", *args]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log


def finish_in_background(process: subprocess.Popen, log: IO[bytes]) -> int:
    rc = process.wait()
    log.seek(0)
    shutil.copyfileobj(log, sys.stdout.buffer)
    sys.stdout.flush()
    log.close()
    return rc


def main(argv: list[str]) -> int:
    ci = os.environ.get("CI", "").lower() == "true"
    env = clean_env()
    if argv:
        return pytest(argv, env)

    pg_url = os.environ.get("OCRDASH_TEST_POSTGRES_URL", DEFAULT_PG)
    why_not = postgres_reachable(pg_url)
    pg_pass = None
    if not why_not:
        pg_env = dict(env, OCRDASH_DATABASE_URL=pg_url, OCRDASH_TEST_DB_BACKEND="postgresql")
        pg_args = ["tests/web", "tests/integration"]
        if os.environ.get("OCRDASH_TEST_ONE_PASS_AT_A_TIME") != "1":
            pg_pass = start_in_background(pg_args, pg_env)
            print(f"== PostgreSQL pass started beside the SQLite pass ({pg_url}); its output follows it ==", flush=True)

    print("== ocrdash tests on SQLite ==", flush=True)
    try:
        sqlite_rc = pytest(["tests"], env)
    except BaseException:  # Ctrl-C: the pass beside it goes too
        if pg_pass is not None:
            pg_pass[0].kill()
        raise

    if why_not:
        print(f"\n== PostgreSQL pass SKIPPED: {why_not}. Set OCRDASH_TEST_POSTGRES_URL to run it. ==", flush=True)
        pg_rc = 1 if ci else 0
        if ci:
            print("CI=true: a skipped PostgreSQL pass fails the run.", flush=True)
    elif pg_pass is not None:
        print(f"\n== ocrdash web and integration tests on PostgreSQL ({pg_url}) ==", flush=True)
        pg_rc = finish_in_background(*pg_pass)
    else:
        print(f"\n== ocrdash web and integration tests on PostgreSQL ({pg_url}) ==", flush=True)
        pg_rc = pytest(pg_args, pg_env)
    return sqlite_rc or pg_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
