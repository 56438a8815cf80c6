"""The API on the real server (daphne on the test database) with the real worker: schemathesis finds no
500 and no answer outside the schema; the API guide's script examples run as written; cancelling a
queued and a running job ends them `cancelled` and the worker goes on with the next job."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from django.core.files.base import ContentFile
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings

from ocr_app.models import ApiToken, BackendSettings, Job
from tests.conftest import ROOT, text_image
from tests.integration.test_pipeline import EventListener, wait_until_ended
from tests.web.conftest import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PLACEHOLDER_URL = "http://127.0.0.1:8000"
PLACEHOLDER_TOKEN = "ocrd_paste-your-token-here"


def new_key(django_user_model, username: str, **extra) -> str:
    user = django_user_model.objects.create_user(username=username, password="pw-123456789", **extra)
    return ApiToken.create_for(user, "live test")[1]


class Live:
    def __init__(self, url: str, key: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs):
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def post(self, path: str, **kwargs):
        return self.session.post(self.url + path, timeout=kwargs.pop("timeout", 60), **kwargs)

    def upload(self, name: str, data: bytes) -> dict:
        response = self.post("/api/v1/jobs", files={"file": (name, data)})
        assert response.status_code == 202, response.text
        return response.json()["jobs"][0]


# -- schemathesis ---------------------------------------------------------------------------------


def generated_document() -> dict:
    """The OpenAPI document, generated here by the same code that serves /api/schema/ (the test below
    checks that the live server publishes exactly this). Built at import: schemathesis makes one test per
    operation when the tests are collected (its lazy, fixture-based loading does not run on pytest 9)."""
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.renderers import JSONRenderer

    return json.loads(JSONRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


DOCUMENT = generated_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_server_publishes_the_document_that_is_fuzzed(asgi_server, django_user_model):
    key = new_key(django_user_model, "schema-reader")

    response = requests.get(f"{asgi_server.url}/api/schema/", timeout=30,
                            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})

    assert response.status_code == 200 and response.json() == DOCUMENT


@pytest.fixture
def fuzz_target(asgi_server, django_user_model, make_user):
    """A user with a token, and ended jobs of another user for the generated ids to land on."""
    key = new_key(django_user_model, "fuzzer")
    owner = make_user("someone-else")
    ids = []
    for state in ("succeeded", "failed", "cancelled"):
        job = Job(owner=owner, original_name=f"{state}.png", image_format="PNG", size_bytes=10, width=4, height=3,
                  sha256="0" * 64, state=state, text="Some text", text_preview="Some text")
        job.upload.save(f"{state}.png", ContentFile(image_bytes()), save=False)
        job.save()
        ids.append(job.pk)
    return {"url": asgi_server.url, "headers": {"Authorization": f"Bearer {key}"}, "ids": ids}


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_answers_within_its_schema_and_never_with_a_500(case, fuzz_target):
    job_id = (case.path_parameters or {}).get("id")
    if isinstance(job_id, int) and job_id % 2 == 0:
        case.path_parameters["id"] = fuzz_target["ids"][job_id % 3]  # half the examples hit a real job
    response = case.call(base_url=fuzz_target["url"], headers=fuzz_target["headers"], timeout=30)
    case.validate_response(response, checks=CHECKS)


# -- the API guide's examples (docs/api.md) -------------------------------------------------------


def guide_examples() -> dict[str, tuple[str, str]]:
    text = (ROOT / "docs" / "api.md").read_text()
    found = re.findall(r"<!-- script-example: (\w+) -->\n```(\w+)\n(.*?)\n```", text, re.S)
    return {name: (language, code) for name, language, code in found}


def test_the_api_guide_has_the_three_examples():
    assert set(guide_examples()) == {"curl", "python", "openai"}


@pytest.mark.parametrize("name", ["curl", "python", "openai"])
def test_the_api_guides_script_examples_run_against_the_live_server(
    name, asgi_server, celery_worker_process, django_user_model, tmp_path
):
    language, code = guide_examples()[name]
    key = new_key(django_user_model, "scripter")
    (tmp_path / "scan.png").write_bytes(text_image(["Invoice number 4711", "paid in full"]))
    assert PLACEHOLDER_URL in code and PLACEHOLDER_TOKEN in code
    code = code.replace(PLACEHOLDER_URL, asgi_server.url).replace(PLACEHOLDER_TOKEN, key)
    command = ["bash", "-c", code] if language == "bash" else [sys.executable, "-c", code]

    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "4711" in result.stdout and "paid" in result.stdout.lower()
    job = Job.objects.get(owner__username="scripter")
    assert job.state == "succeeded" and job.origin.via == ("openai" if name == "openai" else "api")


# -- waiting ----------------------------------------------------------------------------------------


def test_long_polls_do_not_hold_up_the_server(asgi_server, django_user_model, make_user):
    from concurrent.futures import ThreadPoolExecutor

    live = Live(asgi_server.url, new_key(django_user_model, "waiter"))
    job = Job.objects.create(owner=make_user("runner"), original_name="slow.png", image_format="PNG",
                             size_bytes=1, width=1, height=1, sha256="0" * 64, state="running",
                             # as a running job has it: the worker's recovery sweep must not take it for lost
                             started_at=timezone.now())

    with ThreadPoolExecutor(8) as pool:
        waits = [pool.submit(live.get, f"/api/v1/jobs/{job.pk}/wait?timeout=4") for _ in range(6)]
        time.sleep(0.5)
        started = time.monotonic()
        quick = [live.get("/api/v1/gpu") for _ in range(5)]
        quick_took = time.monotonic() - started
        Job.objects.filter(pk=job.pk).update(state="succeeded")  # no event: the waiters read the row
        answers = [w.result() for w in waits]

    assert all(r.status_code == 200 for r in quick) and quick_took < 2.5
    assert [a.json()["state"] for a in answers] == ["succeeded"] * 6


# -- idempotency under concurrency ----------------------------------------------------------------


def test_the_same_upload_sent_four_times_at_once_makes_one_job(asgi_server, django_user_model):
    from concurrent.futures import ThreadPoolExecutor

    live = Live(asgi_server.url, new_key(django_user_model, "impatient"))
    data = text_image(["Sent four times"])

    def send(_):
        return live.post("/api/v1/jobs", files={"file": ("same.png", data)}, headers={"Idempotency-Key": "once"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))

    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert len({a.json()["jobs"][0]["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 3
    assert Job.objects.filter(owner__username="impatient").count() == 1


# -- cancelling with the real worker ----------------------------------------------------------------


@pytest.fixture
def live(asgi_server, django_user_model, celery_worker_process):
    live = Live(asgi_server.url, new_key(django_user_model, "canceller"))
    live.worker_log = lambda: Path(celery_worker_process.log_path).read_text()
    return live


def wait_for_state(job_id: int, state: str, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.state == state:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {Job.objects.get(pk=job_id).state}, not {state}, after {timeout}s")


def big_page() -> bytes:
    return text_image([f"Line {i} of a long page to read" for i in range(14)], size=(1600, 1900))


def test_a_queued_job_cancelled_through_the_api_never_runs_and_the_queue_goes_on(live):
    listener = EventListener()
    busy = live.upload("busy.png", big_page())
    waiting = live.upload("waiting.png", text_image(["Never read"]))
    after = live.upload("after.png", text_image(["Read after 42"]))

    response = live.post(f"/api/v1/jobs/{waiting['id']}/cancel")

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    listener.states_of(waiting["id"], until="cancelled", timeout=10)
    assert wait_until_ended(busy["id"]).state == "succeeded"
    done = wait_until_ended(after["id"])
    assert done.state == "succeeded" and "42" in done.text
    cancelled = Job.objects.get(pk=waiting["id"])
    assert cancelled.state == "cancelled" and cancelled.started_at is None and cancelled.text == ""


def test_a_running_rapidocr_job_stays_cancelled_and_its_result_is_thrown_away(live):
    running = live.upload("running.png", big_page())
    wait_for_state(running["id"], "running")

    response = live.post(f"/api/v1/jobs/{running['id']}/cancel")
    following = live.upload("following.png", text_image(["Next in line 77"]))

    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    after = wait_until_ended(following["id"])
    assert after.state == "succeeded" and "77" in after.text
    job = Job.objects.get(pk=running["id"])
    assert job.state == "cancelled" and job.text == "" and job.result is None
    assert not Job.objects.filter(state__in=["queued", "running"]).exists()
    assert live.post(f"/api/v1/jobs/{running['id']}/cancel").status_code == 409


def test_a_running_dots_job_stops_between_tokens_and_the_worker_takes_the_next(live, tmp_path):
    pytest.importorskip("torch", reason="the dots extra (torch, transformers) is not installed")
    from tests.fixtures.tiny_dots.build import build_tiny_model, in_model_dir

    cfg = BackendSettings.load()
    # dots.ocr's full output budget: the tiny model needs about half a minute to write it all.
    model = build_tiny_model(in_model_dir("m"))
    cfg.backend, cfg.model, cfg.allow_cpu, cfg.max_new_tokens = "cpu", str(model), True, 24000
    cfg.save()
    listener = EventListener()
    running = live.upload("long.png", text_image(["Long"], size=(280, 140)))
    wait_for_state(running["id"], "running", timeout=120)
    deadline = time.monotonic() + 120
    while not any(e.get("type") == "backend.status" and e.get("state") == "ready" for e in list(listener.messages)):
        assert time.monotonic() < deadline, "the backend did not load"
        time.sleep(0.1)
    time.sleep(1.0)  # generating now

    cancelled_at = timezone.now()
    response = live.post(f"/api/v1/jobs/{running['id']}/cancel")
    cfg.backend = "rapidocr"
    cfg.save()
    following = live.upload("following.png", text_image(["Taken next 55"]))
    after = wait_until_ended(following["id"], timeout=120)
    listener.stop.set()

    assert response.status_code == 200
    job = Job.objects.get(pk=running["id"])
    assert job.state == "cancelled" and job.text == "" and job.result is None
    # The worker was free again within seconds, not after the ~30 s the whole answer takes.
    assert (after.started_at - cancelled_at).total_seconds() < 10
    assert after.state == "succeeded" and "55" in after.text and after.backend == "rapidocr"
    # The task ended through the backend's JobCancelled, long before the output budget was spent.
    runs = re.findall(r"run_job\[[^\]]+\] succeeded in ([\d.]+)s: 'cancelled'", live.worker_log())
    assert runs and float(runs[-1]) < 20, runs
