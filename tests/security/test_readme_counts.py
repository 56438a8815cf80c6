"""The README's security section states how much the attack suite covers: the numbers must be the
suite's own."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.security.browser.test_hostile_output import HOSTILE_OUTPUT
from tests.security.hostile import HOSTILE_SVG
from tests.security.test_hostile_files import HOSTILE
from tests.security.test_permission_matrix import PAIRS, ROLES, ROWS


def security_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Security\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def number(pattern: str, text: str) -> int:
    match = re.search(pattern, text.replace("\n", " "))
    assert match, f"the README's security section lost {pattern!r}"
    return int(match.group(1).replace(",", ""))


def test_the_readme_states_the_suite_s_own_counts():
    section = security_section()

    outputs = len(HOSTILE_OUTPUT) + len(HOSTILE_SVG)  # in the page's layout, and in SVG drawings
    assert number(r"\*\*(\d+) hostile inputs\*\*", section) == len(HOSTILE) + outputs
    assert number(r"(\d+) hostile files", section) == len(HOSTILE)
    assert number(r"(\d+) hostile model outputs", section) == outputs
    assert number(r"\*\*([\d,]+) URL × role pairs\*\*", section) == PAIRS
    assert number(r"every one of the (\d+) URL patterns", section) == len(ROWS)
    assert PAIRS == len(ROWS) * len(ROLES)
