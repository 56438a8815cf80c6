import re
from pathlib import Path

import pytest

from dashboard import env

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_it_parses_booleans_and_refuses_nonsense(monkeypatch):
    monkeypatch.setenv("OCRDASH_X_FLAG", "yes")
    assert env.env_bool("X_FLAG", False, "doc") is True
    monkeypatch.setenv("OCRDASH_X_FLAG", "off")
    assert env.env_bool("X_FLAG", True, "doc") is False
    monkeypatch.setenv("OCRDASH_X_FLAG", "maybe")
    with pytest.raises(env.ConfigError, match="OCRDASH_X_FLAG='maybe' is not a boolean"):
        env.env_bool("X_FLAG", True, "doc")


def test_it_parses_whole_numbers_with_a_minimum(monkeypatch):
    monkeypatch.setenv("OCRDASH_X_NUM", "1_000")
    assert env.env_int("X_NUM", 5, "doc") == 1000
    monkeypatch.setenv("OCRDASH_X_NUM", "ten")
    with pytest.raises(env.ConfigError, match="not a whole number"):
        env.env_int("X_NUM", 5, "doc")
    monkeypatch.setenv("OCRDASH_X_NUM", "0")
    with pytest.raises(env.ConfigError, match="below the minimum 1"):
        env.env_int("X_NUM", 5, "doc", minimum=1)


def test_unset_and_empty_variables_give_the_default(monkeypatch):
    monkeypatch.delenv("OCRDASH_X_STR", raising=False)
    assert env.env_str("X_STR", "fallback", "doc") == "fallback"
    monkeypatch.setenv("OCRDASH_X_STR", "")
    assert env.env_str("X_STR", "fallback", "doc") == "fallback"
    assert env.env_list("X_STR", ["a", "b"], "doc") == ["a", "b"]


def test_a_secret_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("OCRDASH_X_SECRET", raising=False)
    monkeypatch.setenv("OCRDASH_X_SECRET_FILE", str(secret))
    assert env.env_str("X_SECRET", None, "doc") == "s3cret"


def test_the_deployment_guides_configuration_table_is_the_one_the_code_declares():
    import dashboard.settings  # noqa: F401  (declares every variable)

    generated = "\n".join(
        line for line in env.markdown_table().splitlines() if not line.startswith("| `OCRDASH_X_")
    )
    text = GUIDE.read_text()
    match = re.search(r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S)
    assert match, "docs/deploy.md lost its settings table markers"
    assert match.group(1).strip() == generated.strip(), (
        "docs/deploy.md's configuration table is out of date: paste `python manage.py settings_table` into it"
    )
