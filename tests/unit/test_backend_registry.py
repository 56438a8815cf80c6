"""The registry (core/backends.py) is the one place backends are named: every list reads it, each
entry can be built, and the planner can budget each one that takes memory."""

from __future__ import annotations

import ast
import importlib
import re

import pytest

from core import backends
from core.planner.estimates import ESTIMATES
from tests.conftest import ROOT, project_files
from workers.backends import create_backend
from workers.backends.base import OcrBackend

REGISTRY = "core/backends.py"
# Words spelled like a backend's name that mean something else, each with the reason. An entry that
# no longer matches anything fails the test too, so the list stays exact.
NOT_BACKEND_NAMES = {
    ("core/containers.py", "vllm"): "the role label's value on running containers (ocrdash.role=vllm)",
    ("core/events.py", "vllm"): "that role as the GPU sample's type (a Literal, test_event_vocabulary compares it)",
    ("workers/backends/transformers_backend.py", "cpu"): "torch's device name",
    ("workers/backends/vllm/launcher.py", "vllm"): "the vLLM command line inside the container (vllm serve)",
}
# Stored in Job.plan ("variant", "fallbacks") of every job that ran: renaming one breaks old jobs' pages.
STORED_VARIANT_KEYS = [
    "vllm:bf16",
    "vllm:fp8",
    "transformers:bf16",
    "transformers:int8",
    "transformers:nf4",
    "llamacpp:q8_0",
    "llamacpp:q4_k_m",
    "cpu:float32",
    "rapidocr",
]


def python_literals(path: str, names: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse((ROOT / path).read_text(), path)
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names]


def quoted_in_text(path: str, names: set[str]) -> list[tuple[int, str]]:
    """A name in quotes ("vllm", 'vllm') or as an object key (vllm: …): prose does not count."""
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    pattern = re.compile(rf"""(["'])({alternatives})\1|(?<![\w.-])({alternatives})\s*:(?!:)""")
    found = []
    for number, line in enumerate((ROOT / path).read_text().splitlines(), start=1):
        for match in pattern.finditer(line):
            found.append((number, match.group(2) or match.group(3)))
    return found


def test_backend_names_are_written_only_in_the_registry():
    names = set(backends.names())
    found: dict[tuple[str, str], list[int]] = {}
    for path in project_files("*.py"):
        if path == REGISTRY or path.startswith("tests/") or "/migrations/" in path:
            continue
        for line, name in python_literals(path, names):
            found.setdefault((path, name), []).append(line)
    for path in project_files("templates/*.html", "static/js/*.js"):
        for line, name in quoted_in_text(path, names):
            found.setdefault((path, name), []).append(line)

    written = {where: lines for where, lines in found.items() if where not in NOT_BACKEND_NAMES}
    assert not written, "backend names written outside core/backends.py (use the registry): " + ", ".join(
        f"{path}:{lines} {name!r}" for (path, name), lines in sorted(written.items())
    )
    unused = set(NOT_BACKEND_NAMES) - set(found)
    assert not unused, f"exceptions that match nothing any more (take them off NOT_BACKEND_NAMES): {sorted(unused)}"


def test_the_check_sees_a_name_in_code_in_a_template_and_in_javascript(tmp_path, monkeypatch):
    names = set(backends.names())
    (tmp_path / "a.py").write_text('if plan.backend == "vllm":\n    pass\n')
    (tmp_path / "b.html").write_text('<option value="rapidocr">the CPU engine (rapidocr)</option>\n')
    (tmp_path / "c.js").write_text('const LABELS = { cpu: "slow" };\nconst prose = "the cpu engine";\n')
    monkeypatch.setattr("tests.unit.test_backend_registry.ROOT", tmp_path)

    assert python_literals("a.py", names) == [(1, "vllm")]
    assert quoted_in_text("b.html", names) == [(1, "rapidocr")]
    assert quoted_in_text("c.js", names) == [(1, "cpu")]


@pytest.mark.parametrize("spec", backends.ALL, ids=lambda b: b.name)
def test_every_backend_can_be_built_from_its_factory(spec):
    module, _, name = spec.factory.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, OcrBackend)
    assert cls.name == spec.name
    built = create_backend(spec.name)
    assert type(built) is cls and not built.loaded


def test_an_unknown_backend_is_refused_with_the_known_names():
    known = "vllm, transformers, llamacpp, cpu, rapidocr"
    with pytest.raises(ValueError, match=f"unknown backend 'tesseract'; known: {known}"):
        create_backend("tesseract")


def test_the_planner_can_budget_every_backend_that_takes_memory():
    takes_memory = {b.name for b in backends.ALL if b.memory != "none"}
    assert set(ESTIMATES) == takes_memory


def test_variant_keys_stay_as_stored_in_old_jobs():
    assert [v.key for v in backends.VARIANTS] == STORED_VARIANT_KEYS
    assert all(backends.get(v.backend) for v in backends.VARIANTS)


def test_only_the_dots_backends_make_the_language_irrelevant():
    assert [b.name for b in backends.ALL if backends.runs_dots(b.name)] == ["vllm", "transformers", "llamacpp", "cpu"]
    assert not any(backends.runs_dots(name) for name in (backends.AUTO, "", None, "tesseract"))


def test_the_choices_offer_auto_first_then_every_backend_in_the_planners_order():
    assert backends.choices(with_auto=True)[0] == (backends.AUTO, backends.AUTO_LABEL)
    assert [name for name, _ in backends.choices()] == list(backends.names())
