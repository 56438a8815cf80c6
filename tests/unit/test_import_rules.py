"""The direction of imports (docs/architecture.md), held by import-linter's contracts in pyproject.toml:
the core imports no framework and nothing of ours; the web app reaches the worker side only through
the core; of the worker side only workers/tasks.py reaches the web app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.conftest import ROOT


def lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert found, "import-linter is part of the test extra: python3 ocrdash.py test installs it"
    return found


def run_contracts(cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(
        [lint_imports(), "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold():
    result = run_contracts(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_core_module_that_imports_django_breaks_the_contracts(tmp_path):
    """The contracts are not vacuous: the same configuration fails a tree whose core imports Django
    and whose web app imports a worker module."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for contract in config["contracts"]:
        contract.pop("ignore_imports", None)
    for package in config["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for contract in config["contracts"]:  # every module a contract names must be in the graph
        for key in ("source_modules", "forbidden_modules", "allowed_importers"):
            for module in contract.get(key, []):
                root, _, rest = module.partition(".")
                if root in config["root_packages"] and rest:
                    (tmp_path / root / f"{rest}.py").touch()
    protected = next(c for c in config["contracts"] if c["id"] == "frameworks")["protected_modules"]
    (tmp_path / "dashboard" / "settings.py").write_text("".join(f"import {m}\n" for m in protected))
    (tmp_path / "core" / "facts.py").write_text("from django.conf import settings\n")
    (tmp_path / "workers" / "tasks.py").write_text("import ocr_app.views\n")
    (tmp_path / "workers" / "engine.py").write_text("import core.facts\n")
    (tmp_path / "ocr_app" / "views.py").write_text("import workers.engine\n")
    (tmp_path / "pyproject.toml").write_text(_toml(config))

    result = run_contracts(tmp_path)

    assert result.returncode != 0
    assert "core.facts -> django" in result.stdout
    assert "ocr_app.views -> workers.engine" in result.stdout


def _toml(config: dict) -> str:
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace('"', '\\"') + '"'

    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {value(v)}" for k, v in config.items() if k != "contracts"]
    for contract in config["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {value(v)}" for k, v in contract.items()]
    return textwrap.dedent("\n".join(lines)) + "\n"
