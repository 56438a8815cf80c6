"""One worker per GPU, here on the CPU: two real worker processes, each given a recorded GPU
(the NVML double stands in for the driver in each process). A job the first worker's card cannot
fit is routed to the worker whose card can, which plans against its own device."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest

from ocr_app.models import BackendSettings
from tests.conftest import ROOT, child_env, stop, text_image
from tests.doubles.fake_pynvml import load_recording
from tests.integration.test_pipeline import upload, wait_until_ended

pytest.importorskip("torch", reason="the dots extra (torch, transformers) is not installed")
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
GiB = 1024**3


def start_worker(name: str, queues: str, recording, log):
    env = child_env()
    env["OCRDASH_TEST_NVML_RECORDING"] = str(recording)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues", queues, "--concurrency", "1",
         "--hostname", name, "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return proc


@pytest.fixture
def two_workers(tmp_path, celery_worker_process, redis_client):
    from ocr_app import livestate

    redis_client.delete(livestate.WORKERS)  # only the workers started here are alive
    full = copy.deepcopy(load_recording("rtx3060_shared"))
    memory = full["devices"][0]["nvmlDeviceGetMemoryInfo_v2"]
    memory["free"], memory["used"] = 1 * GiB, memory["total"] - memory["reserved"] - 1 * GiB
    full_path = tmp_path / "rtx3060_full.json"
    full_path.write_text(json.dumps(full))
    # The small card takes from the shared queue; the big one only what is routed to it. The
    # suite's own worker (no GPU) stops taking from the shared queue meanwhile, so that the small
    # card is asked first (stopping its process would not do: Redis may already have handed it
    # the message through a blocking read it had sent).
    from dashboard.celery import app

    small = start_worker("gpu@small-card", "gpu", full_path, tmp_path / "small.log")
    big = start_worker("gpu@big-card", "ocrdash.worker.gpu@big-card", "a100_idle", tmp_path / "big.log")
    assert app.control.cancel_consumer("gpu", destination=["gpu@test"], reply=True, timeout=10)
    try:
        yield
    finally:
        app.control.add_consumer("gpu", destination=["gpu@test"], reply=True, timeout=10)
        stop(small)
        stop(big)


def test_a_job_the_first_gpu_cannot_fit_runs_on_the_worker_whose_gpu_can(client, make_user, two_workers, tmp_path):
    from tests.fixtures.tiny_dots.build import build_tiny_model, in_model_dir

    cfg = BackendSettings.load()
    cfg.backend, cfg.model, cfg.allow_vllm = "transformers", str(build_tiny_model(in_model_dir("model"))), False
    cfg.save()
    client.force_login(make_user())

    job = wait_until_ended(upload(client, [("routed.png", text_image(["Routed"]))])["jobs"][0]["id"], timeout=120)

    assert job.worker == "gpu@big-card"
    assert job.plan["device_name"] == "NVIDIA A100-SXM4-80GB"  # planned against its own GPU
    assert job.plan["quantization"] == "bf16"
    refusals = job.plan["refused_by"]
    assert len(refusals) == 1 and refusals[0].startswith("gpu@small-card:")
    assert "does not fit" in refusals[0]
    # This machine has no CUDA, so the big card's worker cannot load the model after all.
    assert job.state == "failed" and "CUDA" in job.message
