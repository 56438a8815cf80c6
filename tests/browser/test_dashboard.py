"""The GPU dashboard in Chromium: samples, backend states and jobs sent through the real channel
layer move the page without a reload; the no-GPU message on this machine, which has no GPU.

The screenshot for the README is taken only on request: `pytest -m screenshots tests/browser`.
"""

from __future__ import annotations

import math
import re
import time

import pytest
from playwright.sync_api import expect

from core import jobstate
from core.gpu import GPU_LOST_MESSAGE, NO_GPU_MESSAGE, NvmlReader, sample_to_event
from core.planner import make_plan
from ocr_app import events, livestate
from ocr_app.management.commands.gpumonitor import Monitor
from ocr_app.models import Job
from tests.browser.conftest import ROOT, off_the_loop
from tests.doubles.fake_pynvml import NVML_ERROR_LIBRARY_NOT_FOUND, FakeNvml

pytestmark = pytest.mark.browser

GIB = 1024**3
RECORDED = sample_to_event(NvmlReader(FakeNvml("rtx3060_shared")).read())
NO_GPU = sample_to_event(NvmlReader(FakeNvml("rtx3060_shared", init_error=NVML_ERROR_LIBRARY_NOT_FOUND)).read())
TOTAL = RECORDED["devices"][0]["total"]

# What the chart of GPU 0 holds and draws: points, the last memory value (GiB), the canvas.
CHART_STATE = """() => {
  const chart = window.OcrDashGpu.charts.get(0);
  return {
    points: chart.data[0].length,
    last_used: chart.data[1][chart.data[1].length - 1],
    last_util: chart.data[2][chart.data[2].length - 1],
    image: chart.ctx.canvas.toDataURL(),
  };
}"""


@pytest.fixture(autouse=True)
def no_gpu_samples(redis_server):
    """Each test starts with no GPU sample in Redis (the workers' records stay)."""
    livestate.client().delete(livestate.GPU_LATEST, livestate.GPU_HISTORY)
    yield
    livestate.client().delete(livestate.GPU_LATEST, livestate.GPU_HISTORY)


def sample(used_gib: float, taken_at: float | None = None, utilization: int = 3, **device) -> dict:
    """The recorded RTX 3060 sample with `used_gib` in use (free is what is left)."""
    recorded = RECORDED["devices"][0]
    used = int(used_gib * GIB)
    return {
        **RECORDED,
        "taken_at": round(taken_at or time.time(), 3),
        "devices": [
            {
                **recorded,
                "used": used,
                "free": TOTAL - recorded["reserved"] - used,
                "utilization": utilization,
                **device,
            }
        ],
    }


def no_gpu(error: str = NO_GPU_MESSAGE) -> dict:
    return {**NO_GPU, "taken_at": round(time.time(), 3), "error": error}


def send(body: dict) -> None:
    """As the GPU monitor sends it: through the real channel layer (Redis) to every open page."""
    off_the_loop(events.publish_gpu_sample, body)


def send_backend(**body) -> None:
    off_the_loop(events.publish_backend_status, body)


def panel(page, index: int = 0):
    return page.locator(f'#gpus [data-gpu-index="{index}"]')


@pytest.mark.django_db(transaction=True)
def test_the_chart_moves_as_samples_arrive(logged_in_page, wait_until_live):
    now = time.time()
    for age in range(120, 0, -1):  # two minutes of history, as the monitor leaves it in Redis
        livestate.push_gpu_sample(sample(5.5 + 0.25 * math.sin(age / 10), taken_at=now - age))

    page, _ = logged_in_page("alice")  # a login lands on the dashboard
    expect(page).to_have_url(re.compile(r"/$"))
    wait_until_live(page)
    gpu = panel(page)
    expect(gpu.locator('[data-gpu="name"]')).to_have_text("NVIDIA GeForce RTX 3060")
    expect(gpu.locator("canvas").first).to_be_visible()
    before = page.evaluate(CHART_STATE)
    assert before["points"] == 120, "the embedded history is not drawn"
    page.evaluate("window.__marker = 1")

    last = before
    for n, (used, util) in enumerate([(7.0, 41), (8.5, 77), (10.25, 96)], start=1):
        send(sample(used, utilization=util))
        expect(gpu.locator('[data-gpu="used"]')).to_have_text(f"{used:.2f} GiB")
        expect(gpu.locator('[data-gpu="utilization"]')).to_have_text(f"{util} %")
        state = page.evaluate(CHART_STATE)
        assert state["points"] == before["points"] + n
        assert state["last_used"] == pytest.approx(used, abs=0.001)
        assert state["last_util"] == util
        assert state["image"] != last["image"], "the chart did not redraw"
        last = state

    free = TOTAL - RECORDED["devices"][0]["reserved"] - int(10.25 * GIB)
    expect(gpu.locator('[data-gpu="free"]')).to_have_text(f"{free / GIB:.2f} GiB")
    expect(gpu.locator('[data-gpu="used-pct"]')).to_have_text(f"{round(100 * 10.25 * GIB / TOTAL)} %")
    # The gauge reveals the used share of the card.
    rest = gpu.locator('[data-gpu="rest"]')
    assert rest.evaluate("el => el.style.left") == f"{100 * 10.25 * GIB / TOTAL:.1f}%"
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


@pytest.mark.django_db(transaction=True)
def test_the_process_table_follows_the_samples(logged_in_page, wait_until_live):
    livestate.push_gpu_sample(sample(6.0))
    page, _ = logged_in_page("alice")
    wait_until_live(page)
    rows = panel(page).locator('[data-gpu="processes"] tr')
    expect(rows).to_have_count(2)

    worker = {
        "pid": 4242,
        "name": "/srv/ocrdash/.venv/bin/python3",
        "used_bytes": 4 * GIB,
        "container": None,
        "role": "worker",
    }
    processes = [worker, *RECORDED["devices"][0]["processes"]]
    send(sample(10.0, processes=processes))

    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-role", "worker")
    expect(rows.first).to_contain_text("ocrdash worker")
    expect(rows.first.locator("td").last).to_have_text("4.00 GiB")


@pytest.mark.django_db(transaction=True)
def test_on_this_machine_without_a_gpu_it_says_so(logged_in_page, wait_until_live):
    # The real monitor, reading this machine's NVML (none here).
    body = off_the_loop(Monitor().sample_once)
    if body["devices"]:
        pytest.skip("this machine has an NVIDIA GPU")
    assert body["error"] == NO_GPU_MESSAGE

    page, _ = logged_in_page("alice")

    expect(page.locator("#gpu-message")).to_have_text(NO_GPU_MESSAGE)
    expect(page.locator("#gpu-none")).to_be_visible()
    expect(page.locator("#gpus")).to_be_hidden()
    expect(page.locator("#gpu-waiting-hint")).to_be_hidden()
    expect(page.locator("#gpus [data-gpu-index]")).to_have_count(0)


@pytest.mark.django_db(transaction=True)
def test_it_switches_between_the_message_and_the_panels_live(logged_in_page, wait_until_live):
    page, _ = logged_in_page("alice")
    expect(page.locator("#gpu-message")).to_have_text("Waiting for the GPU monitor…")
    expect(page.locator("#gpu-waiting-hint")).to_be_visible()
    wait_until_live(page)
    page.evaluate("window.__marker = 1")

    send(no_gpu())
    expect(page.locator("#gpu-message")).to_have_text(NO_GPU_MESSAGE)
    expect(page.locator("#gpu-waiting-hint")).to_be_hidden()
    expect(page.locator("#gpus")).to_be_hidden()

    send(sample(6.0))  # the driver came back
    expect(panel(page).locator('[data-gpu="name"]')).to_be_visible()
    expect(page.locator("#gpu-none")).to_be_hidden()
    expect(page.locator("#gpu-facts")).to_have_text("driver 550.54.15")

    send(no_gpu(GPU_LOST_MESSAGE))  # and went away again
    expect(page.locator("#gpu-message")).to_have_text(GPU_LOST_MESSAGE)
    expect(page.locator("#gpus")).to_be_hidden()

    send(sample(6.5))
    expect(panel(page).locator('[data-gpu="used"]')).to_have_text("6.50 GiB")
    expect(page.locator("#gpu-none")).to_be_hidden()
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


@pytest.mark.django_db(transaction=True)
def test_the_backend_panel_follows_loading_then_ready(logged_in_page, wait_until_live):
    page, _ = logged_in_page("alice")
    wait_until_live(page)
    name = "gpu@dashboard-test"
    plan = {"summary": "transformers 4-bit (nf4) on GPU 0, max 2.6 MP per page"}
    worker = page.locator(f'#workers li[data-worker="{name}"]')

    send_backend(
        worker=name,
        state="loading",
        backend="transformers",
        detail="Downloading weights",
        progress=0.3,
        memory_bytes=0,
        plan=plan,
    )
    expect(worker.locator('[data-worker-field="state"]')).to_have_text("loading")
    expect(worker.locator('[data-worker-field="backend"]')).to_have_text("transformers")
    expect(worker.locator('[data-worker-field="detail"]')).to_have_text("Downloading weights")
    expect(worker.locator('[data-worker-field="percent"]')).to_have_text("30 %")
    expect(worker.locator('[data-worker-field="loading"]')).to_be_visible()
    expect(worker.locator('[data-worker-field="summary"]')).to_have_text(plan["summary"])

    send_backend(
        worker=name,
        state="loading",
        backend="transformers",
        detail="Loading weights onto GPU 0",
        progress=0.8,
        memory_bytes=0,
        plan=plan,
    )
    expect(worker.locator('[data-worker-field="percent"]')).to_have_text("80 %")
    bar = worker.locator('[data-worker-field="progress"] > div')
    expect(bar).to_have_attribute("style", re.compile(r"width: 80%"))

    send_backend(
        worker=name,
        state="ready",
        backend="transformers",
        detail="",
        progress=None,
        memory_bytes=int(4.71 * GIB),
        plan=plan,
    )
    expect(worker.locator('[data-worker-field="state"]')).to_have_text("ready")
    expect(worker.locator('[data-worker-field="state"]')).to_have_class("bstate bstate-ready")
    expect(worker.locator('[data-worker-field="loading"]')).to_be_hidden()
    expect(worker.locator('[data-worker-field="memory"]')).to_have_text("4.71 GiB")

    send_backend(
        worker=name,
        state="unloaded",
        backend="transformers",
        detail="idle for 600 s",
        progress=None,
        memory_bytes=0,
        plan=plan,
    )
    expect(worker.locator('[data-worker-field="state"]')).to_have_text("unloaded")
    expect(worker.locator('[data-worker-field="memory"]')).to_have_text("none")
    expect(worker.locator('[data-worker-field="summary"]')).to_have_text("")
    expect(page.locator("#workers-empty")).to_be_hidden()


@pytest.mark.django_db(transaction=True)
def test_the_running_job_and_the_queue_follow_the_jobs(logged_in_page, wait_until_live, make_user, make_job, publish):
    page, alice = logged_in_page("alice")
    bob = make_user("bob")
    wait_until_live(page)
    expect(page.locator("#running-empty")).to_be_visible()

    first = make_job(bob, "contract.png")
    second = make_job(alice, "receipt.png")
    publish(first)
    publish(second)
    queue = page.locator("#queue tbody tr")
    expect(queue).to_have_count(2)
    expect(queue.nth(0)).to_contain_text("contract.png")
    expect(queue.nth(0).locator("td").nth(0)).to_have_text("1")
    expect(queue.nth(0).locator("td").nth(2)).to_have_text("bob")
    expect(queue.nth(1).locator("td").nth(0)).to_have_text("2")

    first.move_to(jobstate.RUNNING, backend="rapidocr", progress=0.25)
    publish(first)
    off_the_loop(events.publish_queue_positions)
    running = page.locator(f'#running li[data-job-id="{first.pk}"]')
    expect(running.locator('[data-field="name"]')).to_have_text("contract.png")
    expect(running.locator('[data-field="owner"]')).to_have_text("bob")
    expect(running.locator('[data-field="percent"]')).to_have_text("25 %")
    expect(running.locator('[data-field="backend"]')).to_have_text("rapidocr")
    expect(queue).to_have_count(1)
    expect(queue.nth(0).locator("td").nth(0)).to_have_text("1")
    expect(page.locator("#queue-count")).to_have_text("1 waiting")

    Job.objects.filter(pk=first.pk).update(progress=0.75)
    first.refresh_from_db()
    publish(first)
    expect(running.locator('[data-field="percent"]')).to_have_text("75 %")

    first.move_to(jobstate.SUCCEEDED, progress=1.0)
    publish(first)
    expect(running).to_have_count(0)
    expect(page.locator("#running-empty")).to_be_visible()
    assert second.state == jobstate.QUEUED


@pytest.mark.django_db(transaction=True)
def test_the_job_page_shows_the_gpu_memory_when_the_job_ends(logged_in_page, wait_until_live, make_job, publish):
    page, alice = logged_in_page("alice")
    job = make_job(alice, "invoice.png")
    job.move_to(jobstate.RUNNING, backend="transformers", gpu_free_at_start_bytes=6238502912)
    page.goto(job.get_absolute_url())
    wait_until_live(page)
    expect(page.locator('#job [data-gpu-field="peak"]')).to_have_text("—")

    job.move_to(jobstate.SUCCEEDED, progress=1.0, peak_gpu_bytes=int(4.8 * GIB))
    publish(job)

    expect(page.locator('#job [data-gpu-field="peak"]')).to_have_text("4.80 GiB")
    expect(page.locator('#job [data-gpu-field="free_at_start"]')).to_have_text("5.81 GiB")


# -- the README's picture ------------------------------------------------------------------------

DOCS = ROOT / "docs"
MAX_BYTES = 250_000


def synthetic_history(now: float) -> list[dict]:
    """Ten minutes of the shared RTX 3060: a colleague's notebook and a chat model's vLLM server
    hold 5.95 GiB; four minutes in, ocrdash's worker loads dots.ocr (4-bit) and reads pages."""
    samples = []
    for age in range(600, 0, -1):
        t = now - age
        minute = (600 - age) / 60
        if minute < 4:
            used, util = 5.95 + 0.02 * math.sin(age / 7), 2 + int(3 * abs(math.sin(age / 13)))
        elif minute < 4.4:  # loading the weights
            used, util = 5.95 + 4.4 * (minute - 4) / 0.4, 12
        else:  # a page every 45 s or so: compute bursts, activations on top of the weights
            phase = (age % 45) / 45
            busy = phase > 0.12
            used = 10.35 + (0.4 * math.sin((phase - 0.12) / 0.88 * math.pi) if busy else 0.0)
            util = int(90 + 6 * math.sin(age / 3)) if busy else 3
        samples.append(sample(used, taken_at=t, utilization=util))
    return samples


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_it_takes_the_dashboard_screenshot(logged_in_page, wait_until_live, make_user, make_job):
    DOCS.mkdir(exist_ok=True)
    client = livestate.client()
    saved_workers = client.hgetall(livestate.WORKERS)
    client.delete(livestate.WORKERS)
    try:
        plan = make_plan(NvmlReader(FakeNvml("rtx3060_shared")).read()).as_json()
        worker_pid = 190211
        livestate.update_worker(
            "gpu@workstation",
            pids=[worker_pid],
            gpu_index=0,
            backend_status={
                "worker": "gpu@workstation",
                "state": "ready",
                "backend": plan["backend"],
                "detail": "",
                "progress": None,
                "memory_bytes": plan["estimated_bytes"],
                "plan": plan,
            },
        )
        now = time.time()
        history = synthetic_history(now)
        processes = [
            {
                "pid": worker_pid,
                "name": "/srv/ocrdash/.venv/bin/python3",
                "used_bytes": 4_617_928_704,
                "container": None,
                "role": "worker",
            },
            {**RECORDED["devices"][0]["processes"][1], "container": "team-chat-vllm"},
            RECORDED["devices"][0]["processes"][0],
        ]
        for body in history:
            body["devices"][0].update(processes=processes, temperature=71, power=148.3)
            livestate.push_gpu_sample(body)

        page, alice = logged_in_page("alice", is_staff=True)
        bob, carol = make_user("bob"), make_user("carol")
        running = make_job(bob, "contract-scan.png", ["Service contract", "between the parties"])
        running.move_to(jobstate.RUNNING, backend=plan["backend"], progress=0.4)
        make_job(carol, "meeting-notes.jpg", ["Meeting notes"])
        make_job(alice, "receipt-march.png", ["Receipt"])
        page.reload()
        wait_until_live(page)
        latest = sample(10.62, utilization=93)  # mid-page, as the picture is taken
        latest["devices"][0].update(processes=processes, temperature=71, power=148.3)
        send(latest)
        expect(panel(page).locator('[data-gpu="utilization"]')).to_have_text("93 %")
        expect(page.locator("#queue tbody tr")).to_have_count(2)
        expect(page.locator("#running li")).to_have_count(1)
        assert page.evaluate(CHART_STATE)["points"] >= 600

        path = DOCS / "screenshot-dashboard.png"
        page.screenshot(path=path)
        assert path.stat().st_size < MAX_BYTES, f"{path} is {path.stat().st_size} bytes"
    finally:
        client.delete(livestate.WORKERS)
        if saved_workers:
            client.hset(livestate.WORKERS, mapping=saved_workers)
