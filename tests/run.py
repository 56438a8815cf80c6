"""The whole test suite, as `python3 ocrdash.py test` runs it.

1. Everything on SQLite (unit, web, integration, browser).
2. The web and integration tests again on PostgreSQL.

Where PostgreSQL or Chromium is missing the affected tests are skipped with the reason
printed; with CI=true a skip of that kind fails the run instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def main(argv: list[str]) -> int:
    ci = os.environ.get("CI", "").lower() == "true"
    env = clean_env()
    if argv:
        return pytest(argv, env)

    print("== ocrdash tests on SQLite ==", flush=True)
    sqlite_rc = pytest(["tests"], env)

    pg_url = os.environ.get("OCRDASH_TEST_POSTGRES_URL", DEFAULT_PG)
    why_not = postgres_reachable(pg_url)
    if why_not:
        print(f"\n== PostgreSQL pass SKIPPED: {why_not}. Set OCRDASH_TEST_POSTGRES_URL to run it. ==", flush=True)
        pg_rc = 1 if ci else 0
        if ci:
            print("CI=true: a skipped PostgreSQL pass fails the run.", flush=True)
    else:
        print(f"\n== ocrdash web and integration tests on PostgreSQL ({pg_url}) ==", flush=True)
        pg_env = dict(env, OCRDASH_DATABASE_URL=pg_url, OCRDASH_TEST_DB_BACKEND="postgresql")
        pg_rc = pytest(["tests/web", "tests/integration"], pg_env)
    return sqlite_rc or pg_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
