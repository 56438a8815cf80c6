"""The JavaScript and the templates speak the events' vocabulary (core/events.py): every key of a
job they read is a key of JobStatus, every key of a backend state one of BackendStatus, and the
states they know are the job's and the backend's states."""

from __future__ import annotations

import json
import re
from typing import get_args, get_type_hints

from core import containers, jobstate
from core.events import BACKEND_STATES, BackendSettingsNotice, BackendStatus, JobState, JobStatus, ProcessRole
from tests.conftest import ROOT

JS = ROOT / "static" / "js"
JOB_KEYS = set(get_type_hints(JobStatus))
BACKEND_KEYS = set(get_type_hints(BackendStatus)) | set(get_type_hints(BackendSettingsNotice))
# `data-field`s the pages work out from the payload rather than read from it.
DERIVED_FIELDS = {
    "percent": "the progress as a whole percentage (dashboard.js)",
    "page_progress": '"N of M pages done, K running", from the page counts (live.js OcrDash.pageText)',
}
# Objects called `job` in job.js that are not a job event: the answer to reading a region.
REGION_ANSWER = {"reused", "text", "text_url"}


def code(path) -> str:
    """The script without its comments and strings (they name event types and things in passing)."""
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"(?m)^\s*//.*$|\s//\s.*$", "", text)
    return re.sub(r'"(?:[^"\\\n]|\\.)*"' + r"|'(?:[^'\\\n]|\\.)*'", '""', text)


def keys_read(text: str, name: str) -> set[str]:
    return set(re.findall(rf"\b{name}\.([a-z_]+)\b", text))


def test_the_scripts_read_only_keys_the_job_payload_has():
    read = set()
    for script in ("live.js", "upload.js", "job.js", "dashboard.js", "history.js"):
        read |= keys_read(code(JS / script), "job")
    read -= REGION_ANSWER

    assert read, "the scripts read no job keys: the pattern no longer matches them"
    assert read <= JOB_KEYS, f"keys no JobStatus has: {sorted(read - JOB_KEYS)}"


def test_the_pages_fields_are_payload_keys_or_worked_out_from_them():
    fields = set()
    for path in [*(ROOT / "templates").rglob("*.html"), *JS.glob("*.js")]:
        fields |= set(re.findall(r'data-field="([a-z_]+)"', path.read_text()))
    for path in (ROOT / "templates").rglob("*.html"):
        for key in re.findall(r"\bpayload\.([a-z_]+)\b", path.read_text()):
            fields.add(key)

    assert fields - set(DERIVED_FIELDS) <= JOB_KEYS, (
        f"not in JobStatus: {sorted(fields - set(DERIVED_FIELDS) - JOB_KEYS)}"
    )
    assert set(DERIVED_FIELDS) <= fields, "a derived field is no longer used: take it off DERIVED_FIELDS"


def test_the_dashboard_reads_only_keys_a_backend_state_has():
    read = keys_read(code(JS / "dashboard.js"), "status")

    assert read and read <= BACKEND_KEYS, f"not in BackendStatus: {sorted(read - BACKEND_KEYS)}"


def test_the_scripts_know_the_same_states():
    rank = re.search(r"const RANK = (\{[^}]*\});", (JS / "live.js").read_text()).group(1)
    states = re.search(r"const BACKEND_STATES = (\[[^\]]*\]);", (JS / "dashboard.js").read_text()).group(1)

    assert set(re.findall(r"(\w+):", rank)) == set(get_args(JobState)) == set(jobstate.STATES)
    assert tuple(json.loads(states)) == BACKEND_STATES
    assert set(get_args(ProcessRole)) == containers.ROLES
