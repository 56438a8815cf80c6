"""Typed reading of OCRDASH_* environment variables.

Every setting ocrdash reads from the environment goes through these helpers,
and each one is declared in SETTINGS_DOC so the configuration table (docs/deploy.md) and .env.example
cannot drift from the code (tests/unit/test_env.py and tests/unit/test_env_example.py
check both directions). Any variable may instead name a file with OCRDASH_<NAME>_FILE.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "OCRDASH_"

# name -> (default as written in the configuration table, meaning)
SETTINGS_DOC: dict[str, tuple[str, str]] = {}
# Names whose value is a secret: best given as a file, OCRDASH_<NAME>_FILE (Docker secrets).
SECRETS: set[str] = set()


class ConfigError(ValueError):
    pass


def _declare(name: str, default: object, doc: str) -> str | None:
    SETTINGS_DOC[name] = ("" if default is None else str(default), doc)
    key = PREFIX + name
    value = os.environ.get(key)
    if not value:
        # Secrets may come from a file (Docker secrets). An empty OCRDASH_X (as a compose file
        # passes an unset variable) does not hide OCRDASH_X_FILE.
        file_path = os.environ.get(key + "_FILE")
        if file_path:
            try:
                value = Path(file_path).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{key}_FILE={file_path!r} cannot be read ({exc.strerror or exc})") from None
    return value


def env_str(name: str, default: str | None, doc: str, secret: bool = False) -> str | None:
    """`secret=True` marks it as one to give through OCRDASH_<NAME>_FILE (the docs say so)."""
    if secret:
        SECRETS.add(name)
    value = _declare(name, default, doc)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool, doc: str) -> bool:
    value = _declare(name, "true" if default else "false", doc)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{PREFIX}{name}={value!r} is not a boolean (use true or false)")


def env_int(name: str, default: int | None, doc: str, minimum: int | None = None) -> int | None:
    """A whole number; a default of None means unset (the doc says what that means)."""
    value = _declare(name, default, doc)
    if value is None or value == "":
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{PREFIX}{name}={value!r} is not a whole number") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{PREFIX}{name}={number} is below the minimum {minimum}")
    return number


def env_list(name: str, default: list[str], doc: str) -> list[str]:
    value = _declare(name, ",".join(default), doc)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path, doc: str, shown: str) -> Path:
    """`shown` is how the default is written in the docs (relative, not this machine's path)."""
    value = _declare(name, shown, doc)
    return Path(value).expanduser().resolve() if value else default


def markdown_table() -> str:
    """The configuration table of docs/deploy.md, made from the declarations above."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for name, (default, doc) in SETTINGS_DOC.items():
        shown = f"`{default}`" if default else "(unset)"
        rows.append(f"| `{PREFIX}{name}` | {shown} | {doc} |")
    return "\n".join(rows)


ENV_BLOCK_START = "# --- settings-table:start (python manage.py settings_table --env) ---"
ENV_BLOCK_END = "# --- settings-table:end ---"


def env_file_block() -> str:
    """The OCRDASH_* part of .env.example, made from the declarations above: each variable
    commented out (unset or empty means its default), with its meaning and default."""
    lines = [ENV_BLOCK_START]
    for name, (default, doc) in SETTINGS_DOC.items():
        lines.append(f"# {doc}")
        lines.append(f"# Default: {default if default else '(unset)'}")
        if name in SECRETS:
            lines.append(f"# A secret: better given as a file, {PREFIX}{name}_FILE=/run/secrets/<name>")
        lines.append(f"#{PREFIX}{name}=")
        lines.append("")
    lines.append(ENV_BLOCK_END)
    return "\n".join(lines)
