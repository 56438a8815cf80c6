"""GET /metrics and /healthz, and the JSON log lines: who may read the metrics, and that the
exposition (parsed with prometheus_client's own parser) holds the right figures for jobs, the
queue, the GPU sample and the workers; log lines that are JSON and carry the job's id."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from core.results import OcrResult
from dashboard import webserver
from dashboard.logs import ContextFilter, JsonFormatter, log_context
from ocr_app import livestate
from tests.conftest import ROOT, child_env, stop, wait_for_port
from tests.doubles.fake_backend import always
from workers import tasks

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture(autouse=True)
def own_live_state(redis_client):
    """Put back the GPU sample and forget every worker these tests made up (the eager task run
    records one too), so that a real worker of another test never routes a job to them."""
    before = redis_client.get(livestate.GPU_LATEST)
    workers_before = set(redis_client.hkeys(livestate.WORKERS))
    made_up: list[str] = []
    yield made_up
    redis_client.delete(livestate.GPU_LATEST)
    if before is not None:
        redis_client.set(livestate.GPU_LATEST, before)
    for key in set(redis_client.hkeys(livestate.WORKERS)) - workers_before:
        redis_client.hdel(livestate.WORKERS, key)
    for name in made_up:
        redis_client.hdel(livestate.WORKERS, name)
        redis_client.delete(f"ocrdash.worker.{name}")


def scrape(client, **headers) -> dict[str, list]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples, metric, /, **labels) -> float:
    found = [s.value for s in samples.get(metric, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{metric}{labels}: {found} in {samples.get(metric)}"
    return found[0]


# -- who may read it -----------------------------------------------------------------------------


def test_it_refuses_a_client_from_elsewhere_without_the_token(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403  # not the login page: a scraper cannot log in
    assert b"OCRDASH_METRICS_TOKEN" in response.content


def test_it_answers_the_right_bearer_token_only(client, settings):
    settings.METRICS_TOKEN = "scrape-me-0123456789"
    settings.METRICS_ALLOW_FROM = []

    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic scrape-me-0123456789").status_code == 403
    scrape(client, HTTP_AUTHORIZATION="Bearer scrape-me-0123456789", REMOTE_ADDR="203.0.113.9")


def test_it_answers_a_client_from_an_allowed_network(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200  # the default: this machine
    settings.METRICS_ALLOW_FROM = [ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/8")]

    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="fd00::5").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_a_forwarded_address_outside_the_networks_is_refused(client):
    # Behind a proxy the real client is in X-Forwarded-For; naming 127.0.0.1 there gains nothing.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    spoofed = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200


# -- jobs, queue, histograms ---------------------------------------------------------------------


def test_it_counts_jobs_by_state_and_backend_and_the_queue(client, make_job):
    now = timezone.now()
    for minutes in (5, 2):
        make_job(queued_at=now - timedelta(minutes=minutes))
    make_job(state="running", backend="transformers", started_at=now)
    for _ in range(3):
        make_job(state="succeeded", backend="rapidocr", started_at=now, finished_at=now)
    make_job(state="failed", backend="vllm", started_at=now, finished_at=now)

    samples = scrape(client)

    assert value(samples, "ocrdash_jobs", state="queued", backend="auto") == 2
    assert value(samples, "ocrdash_jobs", state="running", backend="transformers") == 1
    assert value(samples, "ocrdash_jobs", state="succeeded", backend="rapidocr") == 3
    assert value(samples, "ocrdash_jobs", state="failed", backend="vllm") == 1
    assert value(samples, "ocrdash_jobs", state="cancelled", backend="vllm") == 0  # every state, every backend
    assert value(samples, "ocrdash_queue_length") == 2
    assert 295 <= value(samples, "ocrdash_queue_oldest_seconds") <= 330
    assert value(samples, "ocrdash_up", part="database") == 1
    assert value(samples, "ocrdash_up", part="redis") == 1


def test_the_histograms_count_run_wait_and_seconds_per_page_from_the_finished_jobs(client, make_job):
    t0 = timezone.now() - timedelta(hours=1)
    for waited, ran in ((2, 3), (20, 40), (200, 400)):
        make_job(
            state="succeeded",
            backend="rapidocr",
            queued_at=t0,
            started_at=t0 + timedelta(seconds=waited),
            finished_at=t0 + timedelta(seconds=waited + ran),
        )
    make_job(state="failed", backend="rapidocr", queued_at=t0, started_at=t0, finished_at=t0 + timedelta(seconds=7))
    make_job(state="running", backend="rapidocr", queued_at=t0, started_at=t0)  # not finished: no run time yet

    samples = scrape(client)

    run = {"backend": "rapidocr", "state": "succeeded"}
    assert value(samples, "ocrdash_job_run_seconds_bucket", le="2.0", **run) == 0
    assert value(samples, "ocrdash_job_run_seconds_bucket", le="5.0", **run) == 1
    assert value(samples, "ocrdash_job_run_seconds_bucket", le="60.0", **run) == 2
    assert value(samples, "ocrdash_job_run_seconds_bucket", le="600.0", **run) == 3
    assert value(samples, "ocrdash_job_run_seconds_bucket", le="+Inf", **run) == 3
    assert value(samples, "ocrdash_job_run_seconds_count", **run) == 3
    # SQLite subtracts datetimes through julianday(), a double of about 2.46 million days: its
    # resolution there is some tens of microseconds, so sums are compared to the millisecond.
    assert value(samples, "ocrdash_job_run_seconds_sum", **run) == pytest.approx(443, abs=1e-3)
    assert value(samples, "ocrdash_job_run_seconds_count", backend="rapidocr", state="failed") == 1
    failed = {"backend": "rapidocr", "state": "failed"}
    assert value(samples, "ocrdash_job_run_seconds_sum", **failed) == pytest.approx(7, abs=1e-3)

    # Waiting: 2, 20, 200 s, and 0 s for the failed and the running job.
    assert value(samples, "ocrdash_job_wait_seconds_count", backend="rapidocr") == 5
    assert value(samples, "ocrdash_job_wait_seconds_bucket", backend="rapidocr", le="1.0") == 2
    assert value(samples, "ocrdash_job_wait_seconds_bucket", backend="rapidocr", le="30.0") == 4
    assert value(samples, "ocrdash_job_wait_seconds_sum", backend="rapidocr") == pytest.approx(222)

    assert value(samples, "ocrdash_job_seconds_per_page_count", backend="rapidocr") == 3
    assert value(samples, "ocrdash_job_seconds_per_page_bucket", backend="rapidocr", le="5.0") == 1
    assert value(samples, "ocrdash_job_seconds_per_page_sum", backend="rapidocr") == pytest.approx(443)


# -- out-of-memory fallbacks, counted from what the worker writes, and its log lines --------------


@pytest.fixture
def short_of_memory(fake_worker, dots_installed, sent_tasks):
    """The worker on the seed card (an RTX 3060 with 5.81 GiB free), dots.ocr installed, no vLLM;
    transformers runs out of CUDA memory at every size, anything else reads the page."""
    return fake_worker(
        gpu="rtx3060_shared", answer=always(OcrResult(text="read")), oom=lambda call: call.backend == "transformers"
    )


@pytest.fixture
def json_log():
    """What the root logger writes, through the formatter and filter settings.LOGGING uses for json."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_out_of_memory_fallbacks_are_counted_and_the_worker_logs_carry_the_job_id(
    client, make_job, short_of_memory, json_log, own_live_state
):
    job = make_job(with_file=True)

    tasks.run_job.apply(args=[job.pk])  # the real task, as the worker runs it

    job.refresh_from_db()
    assert job.state == "succeeded" and job.backend == "rapidocr", job.message
    # Retried once smaller, then fell back: the worker wrote the note twice.
    assert job.message.count("ran out of GPU memory") == 2
    samples = scrape(client)
    assert value(samples, "ocrdash_oom_fallbacks_total", backend="rapidocr", state="succeeded") == 2

    lines = json_log()
    unloads = [line for line in lines if line["logger"] == "workers.tasks" and "unloading" in line["message"]]
    assert unloads, lines
    assert all(line["job_id"] == job.pk and line["level"] == "INFO" for line in unloads)
    assert all({"ts", "level", "logger", "message", "process"} <= line.keys() for line in lines)
    assert not [line for line in lines if line.get("job_id") not in (None, job.pk)]


def test_a_log_line_outside_a_job_has_no_job_id_and_extra_fields_win(json_log):
    log = logging.getLogger("ocr_app.test")
    log.info("plain %s", "line")
    with log_context(job_id=7):
        log.warning("in a job")
        log.info("explicit", extra={"job_id": 8, "pages": 3})
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("it failed")

    plain, in_job, explicit, failed = json_log()
    assert plain["message"] == "plain line" and "job_id" not in plain
    assert in_job["job_id"] == 7 and in_job["level"] == "WARNING"
    assert explicit["job_id"] == 8 and explicit["pages"] == 3
    assert failed["level"] == "ERROR" and "ValueError: broken" in failed["exc"]


@pytest.mark.integration
def test_the_celery_worker_writes_json_lines_when_asked(tmp_path, own_live_state):
    """A real worker process: Celery must not replace the JSON handler with its own."""
    log_path = tmp_path / "worker.log"
    env = dict(child_env(), OCRDASH_LOG_FORMAT="json")
    # A queue of its own: it must not take jobs meant for the test suite's worker.
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues", "ocrdash.logtest",
         "--concurrency", "1", "--hostname", "logtest@metrics", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    own_live_state.append("logtest@metrics")
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop(proc)
    logged = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    ready = [json.loads(line) for line in logged if "ready." in line]
    assert ready and ready[0]["logger"].startswith("celery") and ready[0]["level"] == "INFO"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_the_web_server_writes_json_lines_when_asked(tmp_path, redis_server):
    """A real web server process: uvicorn's own start-up and access lines are JSON too."""
    log_path = tmp_path / "web.log"
    port = free_port()
    proc = subprocess.Popen(
        webserver.command("127.0.0.1", port), cwd=ROOT, env=dict(child_env(), OCRDASH_LOG_FORMAT="json"),
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, proc, 30, log_path)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code in (200, 503)
    finally:
        stop(proc)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")][:5]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"].startswith("uvicorn") and "Started server process" in r["message"] for r in records)
    assert any(r["logger"] == "uvicorn.access" and "/healthz" in r["message"] for r in records), lines


# -- the GPU and the workers, from Redis ---------------------------------------------------------


def test_gpu_memory_comes_from_the_monitors_latest_sample(client):
    livestate.push_gpu_sample({"taken_at": time.time(), "error": None, "devices": [
        {"index": 0, "uuid": "GPU-aaaa", "name": "NVIDIA GeForce RTX 3060", "total": 12 * GIB, "used": 7 * GIB,
         "free": 5 * GIB, "utilization": 40, "temperature": 61, "power": 120.5, "compute_capability": "8.6",
         "processes": [
             {"pid": 10, "name": "python", "used_bytes": 3 * GIB, "container": None, "role": "worker"},
             {"pid": 11, "name": "jupyter", "used_bytes": 2 * GIB, "container": "jupyter-alice", "role": None},
             {"pid": 12, "name": "?", "used_bytes": None, "container": None, "role": None}]},
        {"index": 1, "uuid": "GPU-bbbb", "name": "NVIDIA A10", "total": 24 * GIB, "used": 1 * GIB,
         "free": 23 * GIB, "utilization": None, "temperature": None, "power": None, "processes": []}]})  # fmt: skip

    samples = scrape(client)

    gpu0 = {"gpu": "0", "name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-aaaa"}
    assert value(samples, "ocrdash_gpu_memory_used_bytes", **gpu0) == 7 * GIB
    assert value(samples, "ocrdash_gpu_memory_free_bytes", **gpu0) == 5 * GIB
    assert value(samples, "ocrdash_gpu_memory_total_bytes", **gpu0) == 12 * GIB
    assert value(samples, "ocrdash_gpu_memory_free_bytes", gpu="1") == 23 * GIB
    assert value(samples, "ocrdash_gpu_utilization_percent", **gpu0) == 40
    assert [s.labels["gpu"] for s in samples["ocrdash_gpu_utilization_percent"]] == ["0"]  # unknown: left out
    assert value(samples, "ocrdash_gpu_process_memory_bytes", gpu="0", role="worker") == 3 * GIB
    assert value(samples, "ocrdash_gpu_process_memory_bytes", gpu="0", role="other") == 2 * GIB
    assert value(samples, "ocrdash_gpu_process_memory_bytes", gpu="0", role="vllm") == 0
    assert value(samples, "ocrdash_gpu_devices") == 2
    assert value(samples, "ocrdash_gpu_sample_age_seconds") < 60


def test_a_stale_gpu_sample_gives_its_age_and_no_figures(client):
    livestate.push_gpu_sample(
        {
            "taken_at": time.time() - 300,
            "error": None,
            "devices": [{"index": 0, "name": "GPU", "total": GIB, "used": 0, "free": GIB, "processes": []}],
        }
    )

    samples = scrape(client)

    assert value(samples, "ocrdash_gpu_sample_age_seconds") >= 300
    assert "ocrdash_gpu_memory_free_bytes" not in samples


def test_it_shows_each_workers_backend_loaded_or_unloaded_and_its_queue(client, redis_client, own_live_state):
    own_live_state += ["gpu@metrics-a", "gpu@metrics-b"]
    livestate.update_worker(
        "gpu@metrics-a",
        pids=[1],
        gpu_index=0,
        backend_status={"state": "ready", "backend": "transformers", "memory_bytes": 5 * GIB},
    )
    livestate.update_worker(
        "gpu@metrics-b", pids=[2], gpu_index=1, backend_status={"state": "unloaded", "backend": "", "memory_bytes": 0}
    )
    redis_client.rpush("ocrdash.worker.gpu@metrics-a", "one", "two")
    redis_client.rpush("ocrdash.worker.gpu@metrics-a\x06\x166", "three")  # the list of priority 6

    samples = scrape(client)

    assert value(samples, "ocrdash_worker_up", worker="gpu@metrics-a", gpu="0") == 1
    assert value(samples, "ocrdash_worker_backend_loaded", worker="gpu@metrics-a", backend="transformers") == 1
    assert value(samples, "ocrdash_worker_backend_loaded", worker="gpu@metrics-b", backend="none") == 0
    assert value(samples, "ocrdash_worker_backend_state", worker="gpu@metrics-a", state="ready") == 1
    assert value(samples, "ocrdash_worker_backend_state", worker="gpu@metrics-a", state="unloaded") == 0
    assert value(samples, "ocrdash_worker_backend_state", worker="gpu@metrics-b", state="unloaded") == 1
    assert value(samples, "ocrdash_worker_backend_memory_bytes", worker="gpu@metrics-a", backend="transformers") == (
        5 * GIB
    )
    assert value(samples, "ocrdash_broker_messages", queue="ocrdash.worker.gpu@metrics-a") == 3
    assert value(samples, "ocrdash_broker_messages", queue="ocrdash.worker.gpu@metrics-b") == 0
    assert "gpu" in {s.labels["queue"] for s in samples["ocrdash_broker_messages"]}


def test_without_redis_the_scrape_still_answers_and_says_which_part_is_down(client, make_job, monkeypatch):
    make_job()

    def no_redis():
        raise ConnectionError("Redis is away")

    with monkeypatch.context() as patch:
        patch.setattr(livestate, "latest_gpu_sample", no_redis)
        samples = scrape(client)

    assert value(samples, "ocrdash_up", part="redis") == 0
    assert value(samples, "ocrdash_up", part="database") == 1
    assert value(samples, "ocrdash_queue_length") == 1


# -- health checks -------------------------------------------------------------------------------


def gpumonitor_check(*args: str) -> subprocess.CompletedProcess:
    """`manage.py gpumonitor --check`, in its own process as the compose health check runs it."""
    return subprocess.run(
        [sys.executable, "manage.py", "gpumonitor", "--check", *args],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_gpu_monitor_health_check_wants_a_fresh_sample(redis_client):
    redis_client.delete(livestate.GPU_LATEST)
    missing = gpumonitor_check()
    assert missing.returncode == 1 and "no GPU sample" in missing.stderr

    livestate.push_gpu_sample({"taken_at": time.time() - 100, "error": "No NVIDIA GPU visible", "devices": []})
    stale = gpumonitor_check("--max-age", "30")
    assert stale.returncode == 1 and "s old (more than 30 s)" in stale.stderr

    livestate.push_gpu_sample({"taken_at": time.time(), "error": None, "devices": [
        {"index": 0, "name": "GPU", "total": GIB, "used": 0, "free": GIB, "processes": []}]})  # fmt: skip
    fresh = gpumonitor_check()
    assert fresh.returncode == 0, fresh.stderr
    assert "1 device(s)" in fresh.stdout


def test_the_gpu_monitor_still_samples_without_check():
    run = subprocess.run(
        [sys.executable, "manage.py", "gpumonitor", "--count", "1", "--interval", "0"],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def test_healthz_answers_without_a_login(client):
    response = client.get("/healthz", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response.json() == {"ok": True, "db": True, "redis": True}


def test_healthz_says_503_when_redis_does_not_answer(client, monkeypatch):
    class Down:
        def ping(self):
            raise ConnectionError("no")

    with monkeypatch.context() as patch:  # only for the request: the fixtures' clean-up needs Redis
        patch.setattr(livestate, "client", lambda: Down())
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"ok": False, "db": True, "redis": False}
