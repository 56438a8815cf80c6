"""The GPU dashboard at /: the GPU as the monitor last sampled it (recorded NVML values), the
last ten minutes for the chart, the processes holding memory, the running job, the queue and
each worker's backend; and each job's peak GPU memory on its page and in the history."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import containers
from core.containers import ROLE_LABEL, ContainerNames
from core.gpu import GPU_LOST_MESSAGE, NO_GPU_MESSAGE, NvmlReader, sample_to_event
from ocr_app import livestate
from ocr_app.management.commands.gpumonitor import Monitor
from tests.doubles.fake_pynvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml

pytestmark = pytest.mark.django_db

GIB = 1024**3
# The pids in tests/data/nvml/rtx3060_shared.json: a Python process and a vLLM engine.
PYTHON_PID, VLLM_PID = 184532, 186077
VLLM_CONTAINER_ID = "c0ffee" * 10 + "abcd"


@pytest.fixture(autouse=True)
def clean_live_state(redis_client):
    for key in redis_client.scan_iter("ocrdash:*"):
        redis_client.delete(key)


class FakeContainer:
    def __init__(self, id, name, labels):
        self.id, self.name, self.labels = id, name, labels


class FakeDocker:
    """The two calls of docker.DockerClient that ContainerNames makes."""

    def __init__(self):
        self.containers = self

    def list(self, **kwargs):
        return [FakeContainer(VLLM_CONTAINER_ID, "ocrdash-vllm", {ROLE_LABEL: "vllm"})]

    def close(self):
        pass


@pytest.fixture
def recorded_sample(monkeypatch):
    """What the monitor stores and sends for the recorded RTX 3060: the vLLM engine in ocrdash's
    vLLM container, the Python process being this host's ocrdash worker."""
    monkeypatch.setattr(
        containers, "container_of_pid", lambda pid, proc_root="/proc": VLLM_CONTAINER_ID if pid == VLLM_PID else None
    )
    livestate.update_worker("gpu@host", pids=[PYTHON_PID], gpu_index=0)
    monitor = Monitor(nvml=FakeNvml("rtx3060_shared"), containers=ContainerNames(client_factory=FakeDocker))
    return monitor.sample_once()


def element(page: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no #{element_id} on the page"
    return match.group(0)


def embedded(page: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', page, re.S)
    assert match, f"no {element_id} script on the page"
    return json.loads(match.group(1))


def without_templates(page: str) -> str:
    """The page less its <template> elements (what scripts clone), i.e. what is shown."""
    return re.sub(r"<template .*?</template>", "", page, flags=re.S)


def process_rows(page: str) -> list[tuple[str, ...]]:
    """(pid, process name, role badge, container, memory) for each row of the processes table."""
    rows = re.findall(
        r'<tr data-pid="(\d+)"[^>]*><td>\d+</td><td>([^<]*?)(?: <span class="badge[^"]*">([^<]*)</span>)?</td>'
        r"<td>([^<]*)</td><td class=\"num\">([^<]*)</td></tr>",
        without_templates(page),
    )
    return [tuple(html.unescape(v) for v in row) for row in rows]


def test_it_shows_the_recorded_gpu_with_its_memory(alice_client, recorded_sample):
    page = without_templates(alice_client.get("/").content.decode())

    assert 'data-gpu-index="0"' in page
    assert '<span data-gpu="name">NVIDIA GeForce RTX 3060</span>' in page
    assert '<strong data-gpu="free">5.81 GiB</strong> free of <span data-gpu="total">12.00 GiB</span>' in page
    assert '<span data-gpu="used">5.95 GiB</span>' in page
    assert "0.24 GiB reserved by the driver" in page
    assert '<div class="stat-value" data-gpu="utilization">3 %</div>' in page
    assert '<div class="stat-value" data-gpu="temperature">46 °C</div>' in page
    assert '<span data-gpu="power">21.8 W</span> <small data-gpu="power-limit">of 170 W</small>' in page
    assert "CUDA 8.6" in page
    assert "driver 550.54.15" in page
    # The gauge: used memory revealed up to its share of the card.
    assert 'aria-valuenow="49.6"' in page
    assert 'data-left="49.6"' in page
    assert re.search(r'id="gpu-none"[^>]* hidden', page)


def test_it_lists_the_processes_marking_ocrdashs_own(alice_client, recorded_sample):
    page = alice_client.get("/").content.decode()

    assert process_rows(page) == [
        (str(VLLM_PID), "VLLM::EngineCore", "ocrdash vLLM", "ocrdash-vllm", "3.46 GiB"),
        (str(PYTHON_PID), "python", "ocrdash worker", "—", "2.46 GiB"),
    ]
    assert f'<tr data-pid="{VLLM_PID}" data-role="vllm">' in page
    assert f'<tr data-pid="{PYTHON_PID}" data-role="worker">' in page


def test_it_embeds_the_last_ten_minutes_for_the_chart(alice_client, recorded_sample):
    now = time.time()
    device = recorded_sample["devices"][0]
    for age, used in ((900, 1 * GIB), (590, 2 * GIB), (300, 3 * GIB), (0.5, 4 * GIB)):
        livestate.push_gpu_sample({**recorded_sample, "taken_at": now - age, "devices": [{**device, "used": used}]})

    page = alice_client.get("/").content.decode()

    history = embedded(page, "gpu-history")
    # The recorded sample (taken just now, by the monitor) comes first: it was pushed first.
    assert [p["devices"][0]["used"] for p in history] == [device["used"], 2 * GIB, 3 * GIB, 4 * GIB]
    assert history[1]["t"] == pytest.approx(now - 590, abs=0.01)
    assert history[1]["devices"][0] == {"index": 0, "used": 2 * GIB, "total": device["total"], "utilization": 3}
    latest = embedded(page, "gpu-sample")
    assert latest["devices"][0]["used"] == 4 * GIB
    assert '<span data-gpu="used">4.00 GiB</span>' in page


def test_without_a_gpu_it_says_so_plainly(alice_client):
    nvml = FakeNvml("rtx3060_shared", init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    Monitor(nvml=nvml, containers=ContainerNames(client_factory=FakeDocker)).sample_once()

    response = alice_client.get("/")

    assert response.status_code == 200
    page = without_templates(response.content.decode())
    assert f'<p id="gpu-message">{NO_GPU_MESSAGE}</p>' in page
    assert not re.search(r'id="gpu-none"[^>]* hidden', page)
    assert re.search(r'<div id="gpus" +hidden>\s*</div>', page)
    assert "data-gpu-index" not in page
    assert embedded(page, "gpu-sample")["error"] == NO_GPU_MESSAGE


def test_it_says_so_when_the_gpu_stopped_answering(alice_client):
    nvml = FakeNvml("rtx3060_shared")
    reader = NvmlReader(nvml)
    reader.read()
    nvml.lose_gpu()
    livestate.push_gpu_sample(sample_to_event(reader.read()))

    page = alice_client.get("/").content.decode()

    assert f'<p id="gpu-message">{GPU_LOST_MESSAGE}</p>' in page


def test_before_the_first_sample_it_waits_for_the_monitor(alice_client):
    page = alice_client.get("/").content.decode()

    assert '<p id="gpu-message">Waiting for the GPU monitor…</p>' in page
    assert "python manage.py gpumonitor" in page
    assert embedded(page, "gpu-sample") is None
    assert embedded(page, "gpu-history") == []


def test_it_warns_when_the_last_sample_is_old(alice_client, recorded_sample):
    livestate.push_gpu_sample({**recorded_sample, "taken_at": time.time() - 125})

    page = alice_client.get("/").content.decode()

    stale = element(page, "gpu-stale")
    assert "hidden" not in stale
    assert "The last GPU sample is 125 s old: is the GPU monitor running?" in stale


def test_a_fresh_sample_gets_no_warning(alice_client, recorded_sample):
    page = alice_client.get("/").content.decode()

    assert re.search(r'id="gpu-stale" +hidden', page)


def test_it_still_shows_the_jobs_when_redis_does_not_answer(alice_client, make_job, monkeypatch):
    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(livestate, "latest_gpu_sample", refuse)
    make_job(name="waiting.png")

    response = alice_client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "The live state (Redis) does not answer" in page
    assert "waiting.png" in element(page, "queue")


def test_it_shows_the_running_job_and_the_queue_with_owners(alice_client, make_job, bob):
    now = timezone.now()
    make_job(name="running.png", owner=bob, state="running", backend="rapidocr", progress=0.4)
    make_job(name="later.png", created_at=now - timedelta(minutes=1))
    make_job(name="sooner.png", owner=bob, created_at=now - timedelta(minutes=5))
    make_job(name="done.png", state="succeeded", created_at=now - timedelta(minutes=7))

    page = alice_client.get("/").content.decode()

    running = element(page, "running")
    assert "running.png" in running
    assert '<span class="hint" data-field="owner">bob</span>' in running
    assert 'data-width="40"' in running
    assert '<span data-field="backend">rapidocr</span> · <span data-field="percent">40 %</span>' in running
    queue = element(page, "queue")
    rows = re.findall(r'<tr data-job-id="\d+"[^>]*><td>(\d+)</td><td><a [^>]*>([^<]*)</a></td><td>([^<]*)</td>', queue)
    assert rows == [("1", "sooner.png", "bob"), ("2", "later.png", "alice")]
    assert "2 waiting" in page
    assert "done.png" not in page


def test_it_says_when_nothing_runs_or_waits(alice_client):
    page = alice_client.get("/").content.decode()

    assert re.search(r'<p class="empty" id="running-empty" >Nothing is running.</p>', page)
    assert re.search(r'<p class="empty" id="queue-empty" >Nothing is waiting.</p>', page)


def test_it_shows_each_workers_backend_state(alice_client):
    livestate.update_worker(
        "gpu@a",
        backend_status={
            "worker": "gpu@a",
            "state": "loading",
            "backend": "transformers",
            "detail": "Downloading weights",
            "progress": 0.4,
            "memory_bytes": 0,
            "plan": {"summary": "dots.ocr bf16 on GPU 0"},
        },
    )
    livestate.update_worker(
        "gpu@b",
        gpu_index=1,
        backend_status={
            "worker": "gpu@b",
            "state": "ready",
            "backend": "vllm",
            "detail": "",
            "progress": None,
            "memory_bytes": int(6.5 * GIB),
            "plan": {"summary": "dots.ocr in vLLM on GPU 0"},
        },
    )
    livestate.update_worker("gpu@c", pids=[1])

    page = without_templates(alice_client.get("/").content.decode())

    workers = element(page, "workers")
    a, b, c = re.findall(r'<li class="worker".*?</li>', workers, re.S)
    assert 'data-worker="gpu@a" data-state="loading"' in a
    assert '<strong data-worker-field="backend">transformers</strong>' in a
    assert "Downloading weights" in a and "dots.ocr bf16 on GPU 0" in a
    assert '<div data-width="40">' in a and ">40 %</span>" in a
    assert re.search(r'data-worker-field="loading" +>', a), "the progress bar is hidden"
    assert 'data-worker="gpu@b" data-state="ready"' in b
    assert '<span data-worker-field="hostname">gpu@b</span> · GPU 1</span>' in b
    assert '<span data-worker-field="memory">6.50 GiB</span>' in b
    assert re.search(r'data-worker-field="loading" hidden', b)
    assert 'data-worker="gpu@c" data-state="unloaded"' in c
    assert "no model" in c
    assert re.search(r'id="workers-empty"[^>]* hidden', page)


def test_it_says_when_no_worker_reported(alice_client):
    page = alice_client.get("/").content.decode()

    assert "No worker has reported in the last minutes" in element(page, "workers-empty")
    assert not re.search(r'id="workers-empty"[^>]* hidden', page)


def test_it_links_staff_to_free_gpu_memory(client, make_user, recorded_sample):
    client.force_login(make_user("root", is_staff=True))

    page = client.get("/").content.decode()

    assert '<a class="button small" id="free-gpu" href="/admin/ocr_app/gpuaction/free/">Free GPU memory…</a>' in page


def test_it_offers_no_free_link_to_others(alice_client, recorded_sample):
    assert "Free GPU memory" not in alice_client.get("/").content.decode()


def test_it_sends_an_anonymous_visitor_to_login(client, recorded_sample):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_it_lands_on_the_dashboard_after_login(client, make_user):
    make_user("alice", password="secret-pass-123")

    response = client.post("/login/", {"username": "alice", "password": "secret-pass-123"})

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_its_navigation_names_the_dashboard_and_the_upload_page(alice_client):
    page = alice_client.get("/").content.decode()

    assert '<a href="/" aria-current="page">Dashboard</a>' in page
    assert '<a href="/upload/" >Upload</a>' in page


def test_it_runs_the_same_few_queries_however_many_jobs(alice_client, make_jobs, make_user, recorded_sample):
    owners = [make_user(f"user{i}") for i in range(4)]
    make_jobs(2, owners=owners)
    make_jobs(1, owners=owners, state="running")
    with CaptureQueriesContext(connection) as few:
        alice_client.get("/")

    make_jobs(40, owners=owners)
    make_jobs(2, owners=owners, state="running")
    with CaptureQueriesContext(connection) as many:
        response = alice_client.get("/")

    assert response.status_code == 200
    assert len(many) == len(few)
    # The session, the user, the running jobs, the waiting jobs.
    assert len(many) <= 4, [q["sql"] for q in many.captured_queries]


# -- the job's GPU memory, on its page and in the history -------------------------------------


def test_the_job_page_shows_peak_and_free_gpu_memory(alice_client, make_job):
    job = make_job(state="succeeded", peak_gpu_bytes=int(3.5 * GIB), gpu_free_at_start_bytes=6238502912)

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert re.search(r"<dt>Peak GPU memory</dt><dd [^>]*>3.50 GiB</dd>", page)
    assert re.search(r"<dt>GPU free at start</dt><dd [^>]*>5.81 GiB</dd>", page)


def test_the_job_page_shows_a_dash_when_not_measured(alice_client, make_job):
    job = make_job(state="succeeded", backend="rapidocr")

    page = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert re.search(r"<dt>Peak GPU memory</dt><dd [^>]*>—</dd>", page)
    assert re.search(r"<dt>GPU free at start</dt><dd [^>]*>—</dd>", page)


def test_the_result_download_carries_the_gpu_memory(alice_client, make_job):
    job = make_job(state="succeeded", peak_gpu_bytes=123, gpu_free_at_start_bytes=None)

    body = alice_client.get(f"/jobs/{job.pk}/result.json").json()

    assert body["gpu"] == {"peak_bytes": 123, "free_at_start_bytes": None}


def test_the_history_shows_peak_and_free_gpu_memory(alice_client, make_job):
    make_job(name="measured.png", state="succeeded", peak_gpu_bytes=2 * GIB, gpu_free_at_start_bytes=5 * GIB)
    make_job(name="on-cpu.png", state="succeeded")

    page = alice_client.get("/history/").content.decode()

    assert '<th class="num" title="The most GPU memory the job used">GPU peak</th>' in page
    cells = {
        name: re.findall(r'<td class="num" data-gpu-field="(\w+)">([^<]*)</td>', row)
        for name, row in re.findall(r'class="name">([^<]+)</a>(.*?)</tr>', page, re.S)
    }
    assert cells == {
        "measured.png": [("peak", "2.00 GiB"), ("free_at_start", "5.00 GiB")],
        "on-cpu.png": [("peak", "—"), ("free_at_start", "—")],
    }


def test_the_history_keeps_its_few_queries_with_the_gpu_columns(alice_client, make_jobs, make_user):
    owners = [make_user(f"user{i}") for i in range(3)]
    make_jobs(2, owners=owners, peak_gpu_bytes=GIB)
    with CaptureQueriesContext(connection) as few:
        alice_client.get("/history/")

    make_jobs(45, owners=owners, peak_gpu_bytes=GIB, gpu_free_at_start_bytes=GIB)
    with CaptureQueriesContext(connection) as many:
        response = alice_client.get("/history/")

    assert response.content.decode().count(">1.00 GiB</td>") == 47 + 45
    assert len(many) == len(few)
