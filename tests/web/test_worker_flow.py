"""The worker's job flow in-process (the task run eagerly) with backends that behave as the real
ones do at their edges: the loaded backend is kept, a settings change swaps it, CUDA out of memory
retries smaller and then falls back, an idle backend is unloaded."""

from __future__ import annotations

import time

import pytest

from core.results import OcrResult, TextLine
from ocr_app import backendconfig
from ocr_app.models import BackendSettings, Job
from tests.doubles.fake_backend import always
from workers import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def made_up_workers_are_forgotten(sent_tasks, redis_client):
    yield
    # Workers these tests made up must not look alive to the real worker of the integration tests.
    for key in redis_client.scan_iter("ocrdash:*"):
        redis_client.delete(key)


@pytest.fixture
def seed_gpu(dots_installed):
    """The RTX 3060 with 5.81 GiB free; dots.ocr installed and downloaded; no vLLM."""
    return "rtx3060_shared"


def transformers_short_of_memory(call) -> bool:
    """The 4-bit model runs out of memory at every image size."""
    return call.backend == "transformers" and bool(call.max_pixels)


def run(job) -> Job:
    tasks.run_job.apply(args=[job.pk])
    return Job.objects.get(pk=job.pk)


def test_it_keeps_the_loaded_backend_between_jobs(fake_worker, seed_gpu, make_job):
    worker = fake_worker(gpu=seed_gpu)
    first, second = run(make_job(with_file=True)), run(make_job(with_file=True))

    assert first.state == second.state == "succeeded"
    assert first.backend == "transformers" and first.plan["quantization"] == "nf4"
    assert len(worker.fakes.created) == 1 and len(worker.fakes.created[0].loads) == 1
    assert "transformers 4-bit (nf4)" in " ".join(first.plan["reasons"])


def test_a_settings_change_unloads_the_old_backend_for_the_next_job(fake_worker, seed_gpu, make_job):
    worker = fake_worker(gpu=seed_gpu)
    run(make_job(with_file=True))
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()

    job = run(make_job(with_file=True))

    old, new = worker.fakes.created
    assert old.name == "transformers" and old.unloads == 1
    assert new.name == "rapidocr" and job.backend == "rapidocr"


def test_out_of_memory_retries_smaller_then_falls_back_and_the_job_says_so(fake_worker, seed_gpu, make_job):
    # The 4-bit model runs out of memory at every image size; rapidocr is next in the plan's order.
    worker = fake_worker(gpu=seed_gpu, oom=transformers_short_of_memory)

    job = run(make_job(with_file=True))

    assert job.state == "succeeded", job.message
    assert job.backend == "rapidocr" and job.text == "read by rapidocr"
    tries = worker.fakes.named("transformers")
    pages = [call.max_pixels for b in tries for call in b.calls]
    assert len(pages) == 2 and pages[1] < pages[0]  # retried once, smaller
    assert all(b.unloads == 1 for b in tries)  # memory given back before each next try
    assert job.message.count("ran out of GPU memory") == 2
    assert job.plan["backend"] == "rapidocr"


def test_out_of_memory_with_nothing_left_fails_with_the_reasons(fake_worker, seed_gpu, make_job):
    cfg = BackendSettings.load()
    cfg.backend = "transformers"  # forced: it may only fall back to its own variants
    cfg.save()
    fake_worker(gpu=seed_gpu, oom=transformers_short_of_memory)

    job = run(make_job(with_file=True))

    assert job.state == "failed"
    assert "ran out of GPU memory" in job.message
    assert job.upload  # the upload is kept


def test_an_idle_backend_is_unloaded_after_the_timeout(fake_worker, seed_gpu, make_job, settings):
    settings.BACKEND_IDLE_UNLOAD = 1
    worker = fake_worker(gpu=seed_gpu)
    run(make_job(with_file=True))
    backend = worker.fakes.created[0]
    assert backend.unloads == 0

    deadline = time.monotonic() + 5
    while backend.unloads == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert backend.unloads == 1 and worker.holder.backend is None


def test_a_job_records_the_gpu_memory_it_started_with_and_its_peak(fake_worker, seed_gpu, make_job):
    fake_worker(gpu=seed_gpu)
    job = run(make_job(with_file=True))

    assert round(job.gpu_free_at_start_bytes / 1024**3, 2) == 5.81
    assert job.peak_gpu_bytes is not None and job.peak_gpu_bytes > 0


def test_a_job_this_gpu_cannot_fit_is_routed_to_another_live_worker(fake_worker, seed_gpu, make_job, sent_tasks):
    from ocr_app import livestate

    fake_worker(gpu=seed_gpu)

    livestate.update_worker("gpu@big-card", pids=[], gpu_index=1)
    cfg = BackendSettings.load()
    cfg.backend = "vllm"  # vLLM is off on this worker (seed_gpu), so this GPU refuses it
    cfg.save()
    job = make_job(with_file=True)

    result = tasks.run_job.apply(args=[job.pk], kwargs={"tried": []}).get()

    job.refresh_from_db()
    assert result == "rerouted" and job.state == "queued"
    routed = [t for t in sent_tasks if t["name"] == "workers.tasks.run_job"]
    assert routed[-1]["queue"] == "ocrdash.worker.gpu@big-card"
    assert "gpu@big-card" not in routed[-1]["kwargs"]["tried"]


def test_when_every_worker_refused_the_job_fails_with_each_ones_reason(fake_worker, seed_gpu, make_job):
    from ocr_app import livestate

    fake_worker(gpu=seed_gpu)

    livestate.update_worker("gpu@big-card", pids=[], gpu_index=1)
    cfg = BackendSettings.load()
    cfg.backend = "vllm"
    cfg.save()
    job = make_job(with_file=True)
    Job.objects.filter(pk=job.pk).update(plan={"refused_by": ["gpu@big-card: vLLM bf16 does not fit."]})

    tasks.run_job.apply(args=[job.pk], kwargs={"tried": ["gpu@big-card"]})

    job.refresh_from_db()
    assert job.state == "failed"
    assert "gpu@big-card: vLLM bf16 does not fit." in job.message
    assert "vLLM is turned off" in job.message


def test_the_cuda_number_follows_cuda_visible_devices():
    assert backendconfig.cuda_ordinal(3, visible="") == 3
    assert backendconfig.cuda_ordinal(3, visible="2,3") == 1
    assert backendconfig.cuda_ordinal(0, visible="GPU-5c1f") == 0


def test_a_task_sent_before_a_cancel_and_retry_does_not_run_the_job(fake_worker, seed_gpu, make_job):
    fake_worker(gpu=seed_gpu)
    job = make_job(with_file=True)
    first_sent_for = job.queued_at.isoformat()
    assert job.move_to("cancelled") and job.move_to("queued")  # cancelled, then retried

    stale = tasks.run_job.apply(args=[job.pk], kwargs={"queued_at": first_sent_for}).get()
    fresh = tasks.run_job.apply(args=[job.pk], kwargs={"queued_at": job.queued_at.isoformat()}).get()

    assert stale == "stale" and fresh == "succeeded"


def answer_with(fake_worker, result, gpu=None):
    """Every page is answered with `result` (an OcrResult); the fakes record the task asked for."""
    return fake_worker(gpu=gpu, answer=always(result)).fakes


def modes(fakes) -> list[str]:
    return [call.mode for call in fakes.calls]


LAYOUT = (
    '[{"bbox": [10, 20, 60, 40], "category": "Title", "text": "Report"}, '
    '{"bbox": [10, 44, 70, 58], "category": "Text", "text": "First paragraph."}]'
)


def test_the_worker_runs_the_jobs_task_and_stores_the_parsed_layout(fake_worker, seed_gpu, make_job):
    # The model saw the 40x30 page at 80x60: boxes come back in the page's own pixels.
    answer = OcrResult(text=LAYOUT, raw=LAYOUT, details={"image_size_sent": [80, 60]})
    fakes = answer_with(fake_worker, answer, seed_gpu)

    job = run(make_job(with_file=True, mode="layout_all"))

    assert job.state == "succeeded", job.message
    assert modes(fakes) == ["layout_all"]
    page = job.result["page"]
    assert [e["category"] for e in page["elements"]] == ["Title", "Text"]
    assert page["elements"][0]["bbox"] == [5, 10, 30, 20]
    assert job.text == "Report\n\nFirst paragraph."
    assert "{" not in job.text and job.message == ""


def test_a_cut_off_answer_keeps_what_was_complete_and_says_so(fake_worker, seed_gpu, make_job):
    cut = LAYOUT[: LAYOUT.index("First") + 5]
    answer_with(fake_worker, OcrResult(text=cut, raw=cut, details={"image_size_sent": [40, 30],
                                                                     "hit_token_limit": True}), seed_gpu)

    job = run(make_job(with_file=True))

    assert job.state == "succeeded"
    assert job.result["page"]["truncated"] is True
    assert job.result["page"]["elements"][0]["text"] == "Report"
    assert "output limit" in job.message


def test_a_layout_asked_for_but_plain_text_answered_is_kept_with_a_warning(fake_worker, seed_gpu, make_job):
    answer_with(fake_worker, OcrResult(text="Just some words", raw="Just some words"), seed_gpu)

    job = run(make_job(with_file=True, mode="layout_all"))

    assert job.state == "succeeded" and job.text == "Just some words"
    assert job.result["page"]["plain_text_fallback"] is True and job.message


def rapidocr_answer():
    lines = [TextLine("Hello", [[1, 2], [30, 2], [30, 9.6], [1, 9.6]], 0.9),
             TextLine("world", [[1, 12], [25, 12], [25, 20], [1, 20]], 0.8)]
    return OcrResult(text="Hello\nworld", lines=lines, details={"language": "multi"})


@pytest.mark.parametrize("mode", ["layout_all", "layout_only"])
def test_rapidocr_gives_its_lines_as_text_boxes_for_the_layout_tasks(fake_worker, make_job, mode):
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()
    answer_with(fake_worker, rapidocr_answer())

    job = run(make_job(with_file=True, mode=mode))

    assert job.state == "succeeded" and job.backend == "rapidocr"
    elements = job.result["page"]["elements"]
    assert [(e["category"], e["bbox"], e["text"]) for e in elements] == [
        ("Text", [1, 2, 30, 10], "Hello"), ("Text", [1, 12, 25, 20], "world")]
    assert job.text == "Hello\nworld"


def test_rapidocr_gives_plain_text_for_the_text_task(fake_worker, make_job):
    cfg = BackendSettings.load()
    cfg.backend = "rapidocr"
    cfg.save()
    fakes = answer_with(fake_worker, rapidocr_answer())

    job = run(make_job(with_file=True, mode="text"))

    assert modes(fakes) == ["text"]
    [element] = job.result["page"]["elements"]
    assert element["bbox"] is None and element["text"] == "Hello\nworld" == job.text
