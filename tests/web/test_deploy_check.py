"""The production settings: `manage.py check --deploy` passes with the values of a deployment
behind a TLS proxy, and HTTPS settings apply only when HTTPS is declared (the laptop's start
command keeps working over http). The checks run in a fresh process, as in a container."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from secrets import token_urlsafe

import pytest

from dashboard.env import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What docker-compose.yml and a .env for https://ocr.example.com give the web container."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "django_secret_key").write_text(token_urlsafe(48) + "\n")  # as docker/make-secrets.sh makes it
    (secrets / "postgres_password").write_text("pg-password\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        OCRDASH_DATA_DIR=str(tmp_path / "data"),
        OCRDASH_STATIC_ROOT=str(tmp_path / "static"),
        OCRDASH_SECRET_KEY_FILE=str(secrets / "django_secret_key"),
        OCRDASH_DATABASE_URL="postgres://ocrdash@postgres:5432/ocrdash",
        OCRDASH_DATABASE_PASSWORD_FILE=str(secrets / "postgres_password"),
        OCRDASH_REDIS_URL="redis://redis:6379/0",
        OCRDASH_ALLOWED_HOSTS="ocr.example.com",
        OCRDASH_CSRF_TRUSTED_ORIGINS="https://ocr.example.com",
        OCRDASH_LOG_FORMAT="json",
        OCRDASH_HTTPS="true",
        OCRDASH_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto:https",
        OCRDASH_SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        OCRDASH_SECURE_HSTS_PRELOAD="true",
        OCRDASH_BEHIND_PROXY="true",
    )
    env.update(extra)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_passes_with_the_production_values(tmp_path):
    result = check_deploy(production_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_hsts_for_subdomains_and_preload_only_those_two_warnings_remain(tmp_path):
    # Both are the domain owner's decision (preloading is hard to undo), so they are off by default.
    env = production_env(tmp_path)
    del env["OCRDASH_SECURE_HSTS_INCLUDE_SUBDOMAINS"], env["OCRDASH_SECURE_HSTS_PRELOAD"]

    result = check_deploy(env)

    assert result.returncode != 0
    assert sorted(set(_check_ids(result))) == ["security.W005", "security.W021"]


def test_plain_http_gets_the_https_warnings_and_nothing_else(tmp_path):
    env = production_env(tmp_path)
    for name in [k for k in env if k.startswith("OCRDASH_SECURE_")] + ["OCRDASH_HTTPS"]:
        del env[name]

    result = check_deploy(env)

    assert sorted(set(_check_ids(result))) == ["security.W004", "security.W008", "security.W012", "security.W016"]


def _check_ids(result: subprocess.CompletedProcess) -> list[str]:
    import re

    return re.findall(r"\((security\.\w+)\)", result.stdout + result.stderr)


# -- the settings themselves, read as a fresh process would ----------------------------------------


def settings_with(monkeypatch, tmp_path, **values: str) -> dict:
    for key in [k for k in os.environ if k.startswith("OCRDASH_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OCRDASH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OCRDASH_STATIC_ROOT", str(tmp_path / "static"))
    for key, value in values.items():
        monkeypatch.setenv(f"OCRDASH_{key}", value)
    return runpy.run_path(str(ROOT / "dashboard" / "settings.py"))


def test_https_settings_apply_only_when_https_is_declared(monkeypatch, tmp_path):
    laptop = settings_with(monkeypatch, tmp_path)
    assert laptop["DEBUG"] is False
    assert not any(k in laptop for k in ("SESSION_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"))

    server = settings_with(monkeypatch, tmp_path, HTTPS="true", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto=https")
    assert server["SESSION_COOKIE_SECURE"] is server["CSRF_COOKIE_SECURE"] is server["SECURE_SSL_REDIRECT"] is True
    assert server["SECURE_HSTS_SECONDS"] == 31_536_000
    assert server["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert server["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^metrics$"]


def test_a_proxy_header_without_https_or_malformed_is_refused(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="OCRDASH_HTTPS=true"):
        settings_with(monkeypatch, tmp_path, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto:https")
    with pytest.raises(ConfigError, match="Header-Name:value"):
        settings_with(monkeypatch, tmp_path, HTTPS="true", SECURE_PROXY_SSL_HEADER="https")


def test_the_database_password_comes_from_its_own_file(monkeypatch, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    values = settings_with(
        monkeypatch, tmp_path, DATABASE_URL="postgres://ocrdash@db:5432/ocrdash", DATABASE_PASSWORD_FILE=str(secret),
        DATABASE_PASSWORD="",  # as compose passes a variable .env leaves empty: the file still counts
    )  # fmt: skip
    assert values["DATABASES"]["default"]["PASSWORD"] == "s3cret"
    assert values["DATABASES"]["default"]["USER"] == "ocrdash"


def test_the_metrics_networks_and_log_format_are_checked(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="METRICS_ALLOW_FROM"):
        settings_with(monkeypatch, tmp_path, METRICS_ALLOW_FROM="10.0.0.0/33")
    assert settings_with(monkeypatch, tmp_path, METRICS_ALLOW_FROM="none")["METRICS_ALLOW_FROM"] == []
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        settings_with(monkeypatch, tmp_path, LOG_FORMAT="xml")


@pytest.mark.django_db
def test_with_https_on_health_checks_and_scrapes_over_http_are_not_redirected(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    page = client.get("/login/")
    assert page.status_code == 301 and page["Location"].startswith("https://")


# -- the security settings ---------------------------------------------------------------------------


def test_the_documented_production_values_with_the_security_settings_pass_check_deploy(tmp_path):
    # SECURITY.md / docs/deploy.md "Run it on a GPU server": the allowed vLLM host, the body limit, the lock-out.
    env = production_env(
        tmp_path, OCRDASH_VLLM_ALLOWED_HOSTS="vllm", OCRDASH_MAX_REQUEST_MB="200", OCRDASH_LOGIN_FAILURE_LIMIT="10",
        OCRDASH_LOGIN_LOCKOUT_MINUTES="15",
    )  # fmt: skip

    result = check_deploy(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_policy_the_lock_out_and_the_validators_are_on_in_every_configuration(monkeypatch, tmp_path):
    for values in (settings_with(monkeypatch, tmp_path), settings_with(monkeypatch, tmp_path, HTTPS="true")):
        assert "csp.middleware.CSPMiddleware" in values["MIDDLEWARE"]
        assert values["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"
        assert values["AUTHENTICATION_BACKENDS"][0] == "ocr_app.lockout.LoginThrottleBackend"
        directives = values["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]
        assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
        assert len(values["AUTH_PASSWORD_VALIDATORS"]) == 4
        assert values["AXES_FAILURE_LIMIT"] == 10 and values["AXES_COOLOFF_TIME"].total_seconds() == 900
        assert values["AXES_LOCKOUT_PARAMETERS"] == ["username", "ip_address"]
    tight = settings_with(monkeypatch, tmp_path, MAX_REQUEST_MB="100", LOGIN_FAILURE_LIMIT="5")
    assert tight["MAX_REQUEST_BYTES"] == 100 * 1024 * 1024 and tight["AXES_FAILURE_LIMIT"] == 5
    default = settings_with(monkeypatch, tmp_path)
    assert default["MAX_REQUEST_BYTES"] == 50 * 1024 * 1024 + 1024 * 1024  # one file and its form


def test_the_throughput_and_loop_guard_settings_are_checked(monkeypatch, tmp_path):
    values = settings_with(monkeypatch, tmp_path, LOOP_WINDOW="60", LOOP_NGRAM="30", PAGE_TIME_LIMIT="120")
    assert (values["LOOP_WINDOW"], values["LOOP_NGRAM"], values["PAGE_TIME_LIMIT"]) == (60, 30, 120)
    with pytest.raises(ConfigError, match="LOOP_NGRAM=31 must be at most half"):
        settings_with(monkeypatch, tmp_path, LOOP_WINDOW="60", LOOP_NGRAM="31")
    for name, value in (("MAX_PAGES_AT_ONCE", "0"), ("LOOP_WINDOW", "-1"), ("PAGE_TIME_LIMIT", "ten")):
        with pytest.raises(ConfigError, match=name):
            settings_with(monkeypatch, tmp_path, **{name: value})
    assert settings_with(monkeypatch, tmp_path, LOOP_WINDOW="0")["LOOP_WINDOW"] == 0  # the guard off
