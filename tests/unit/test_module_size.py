"""No Python module of the project is over 800 lines (migrations, which Django writes, excepted):
a longer one does more than one job and is split."""

from __future__ import annotations

from tests.conftest import ROOT, project_files

MAX_LINES = 800


def test_no_python_module_is_over_800_lines():
    modules = [path for path in project_files("*.py") if "/migrations/" not in path]
    sizes = {path: len((ROOT / path).read_text().splitlines()) for path in modules}
    assert sizes, "no module found: git ls-files answered nothing"
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines (split them by job): {too_long}"
