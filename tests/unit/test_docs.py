"""The README stays short and the guides stay true to the tree: every link leads somewhere, the
architecture names every folder and module, and its event examples have the shapes core/events.py
declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.events import BackendStatusEvent, GpuSampleEvent, JobStatusEvent, problems
from tests.conftest import ROOT, project_files

README = ROOT / "README.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCS = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
# The folders whose every module the map names, one line each.
CODE = ("core", "workers", "ocr_app", "dashboard")
EVENT_SHAPES = {"job.status": JobStatusEvent, "backend.status": BackendStatusEvent, "gpu.sample": GpuSampleEvent}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def test_the_readme_is_at_most_250_lines():
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_image_of_the_docs_exists(doc):
    text = doc.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or doc != README, "the README's links are no longer found: the pattern is wrong"
    for link in links:
        if re.match(r"^[a-z]+:", link):
            continue  # http(s), mailto
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.name} links to {link}, which does not exist"
        if anchor and target.suffix == ".md":
            anchors = {slug(h) for h in re.findall(r"(?m)^#+ (.+)$", target.read_text())}
            assert anchor in anchors, f"{doc.name} links to {link}: no such heading"


def test_the_architecture_names_every_folder_and_module():
    text = ARCHITECTURE.read_text()
    files = project_files()
    folders = {path.split("/", 1)[0] + "/" for path in files if "/" in path}
    for path in files:
        parts = Path(path).parts
        if parts[0] in CODE and path.endswith(".py") and "migrations" not in parts:
            folders.add(str(Path(path).parent) + "/")
        if parts[0] == "tests" and len(parts) > 2:
            folders.add(f"tests/{parts[1]}/")
    modules = [p for p in files if p.split("/")[0] in CODE and p.endswith(".py") and "/migrations/" not in p]

    missing = sorted(f for f in folders if f not in text) + sorted(m for m in modules if f"`{m}`" not in text)
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_the_event_examples_have_the_declared_shapes():
    found = re.findall(r"<!-- event-example: ([\w.]+) -->\n```json\n(.*?)\n```", ARCHITECTURE.read_text(), re.S)

    assert sorted(kind for kind, _ in found) == sorted(EVENT_SHAPES)
    for kind, example in found:
        event = json.loads(example)
        assert event["type"] == kind
        assert problems(event, EVENT_SHAPES[kind]) == [], kind
