""".env.example documents every variable: each OCRDASH_* setting the code declares (the block
`python manage.py settings_table --env` prints, word for word), and each variable the compose
files read. A setting added to the code, or a variable added to a compose file, without its line
here fails; so does a line here that nothing reads."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard import env

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "docker").glob("compose.*.yml"))]
# Compose's own variables, read by docker compose itself rather than by a compose file.
COMPOSE_BUILTINS = {"COMPOSE_PROFILES"}
ASSIGNMENT = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")


def declared() -> dict:
    import dashboard.settings  # noqa: F401  (declares every variable)

    return {k: v for k, v in env.SETTINGS_DOC.items() if not k.startswith("X_")}


def example_assignments() -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            assert match.group(1) not in found, f".env.example names {match.group(1)} twice"
            found[match.group(1)] = match.group(2)
    return found


def compose_variables() -> dict[str, set[str]]:
    """Each ${VAR} or ${VAR:-default} in the compose files, with the defaults written there."""
    found: dict[str, set[str]] = {}
    for path in COMPOSE_FILES:
        for name, default in INTERPOLATION.findall(path.read_text()):
            found.setdefault(name, set()).add(default)
    return found


def test_the_ocrdash_block_is_the_one_the_code_declares():
    declared()
    text = ENV_EXAMPLE.read_text()
    start, end = text.find(env.ENV_BLOCK_START), text.find(env.ENV_BLOCK_END)
    assert start >= 0 and end > start, ".env.example lost its settings-table markers"
    block = text[start : end + len(env.ENV_BLOCK_END)]
    generated = "\n\n".join(chunk for chunk in env.env_file_block().split("\n\n") if "#OCRDASH_X_" not in chunk)
    assert block.strip() == generated.strip(), (
        ".env.example is out of date: paste `python manage.py settings_table --env` into it"
    )


def test_every_ocrdash_setting_has_its_line_and_every_ocrdash_line_is_a_setting():
    settings = {env.PREFIX + name for name in declared()}
    lines = {name for name in example_assignments() if name.startswith(env.PREFIX)}

    assert settings - lines == set(), "settings without a line in .env.example"
    assert lines - settings == set(), "lines in .env.example for settings the code does not have"


def test_every_compose_variable_has_its_line_with_the_same_default_and_no_line_is_unused():
    in_compose = compose_variables()
    lines = example_assignments()
    compose_lines = {name: value for name, value in lines.items() if not name.startswith(env.PREFIX)}

    own = {name for name in in_compose if not name.startswith(env.PREFIX)}
    assert own - compose_lines.keys() == set(), "variables the compose files read, missing from .env.example"
    assert compose_lines.keys() - own - COMPOSE_BUILTINS == set(), "lines in .env.example nothing reads"
    for name in own:
        defaults = in_compose[name]
        assert len(defaults) == 1, f"{name} has different defaults in the compose files: {defaults}"
        assert compose_lines[name] == defaults.pop(), f"{name}: .env.example and the compose files differ"


def test_the_ocrdash_variables_a_compose_file_reads_are_settings():
    settings = {env.PREFIX + name for name in declared()}
    read = {name for name in compose_variables() if name.startswith(env.PREFIX)}
    assert read <= settings


def test_what_the_header_says_compose_sets_is_what_it_sets():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    fixed = dict(compose["x-app"]["environment"])
    header = ENV_EXAMPLE.read_text().split("# --- docker compose")[0]
    for name, value in fixed.items():
        match = INTERPOLATION.fullmatch(str(value))
        shown = f"{name}={match.group(2) if match else value}"
        assert shown in header, f"the header of .env.example should say {shown}"
    assert "OCRDASH_GPU_INDEX=0" in header and compose["services"]["worker"]["environment"]["OCRDASH_GPU_INDEX"] == "0"
