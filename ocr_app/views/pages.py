"""The pages people look at: the GPU dashboard, the upload page, the history, a job's page and its
live parts (its status as JSON, its list of pages, one page's layout)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from core import containers, imageformats, jobstate, languages, textlayer
from core.dots import tasks
from core.dots.prompts import LAYOUT_CATEGORIES, MAX_QUESTION_CHARS, QUESTION, SCENE_SPOTTING
from core.events import BACKEND_STATES
from core.gpu import NO_GPU_MESSAGE, gib
from ocr_app import documents, livestate, retention, taskchoice
from ocr_app.api.results import downloads_for
from ocr_app.events import job_payload
from ocr_app.forms import HistoryFilterForm, UploadForm
from ocr_app.models import Job, queued_jobs_in_order
from ocr_app.validation import ACCEPTED_EXTENSIONS, human_bytes

log = logging.getLogger(__name__)


# The monitor samples once a second: a newer sample than this is "now".
STALE_SAMPLE_SECONDS = 15
# Queued jobs listed on the dashboard and the upload page (the dashboard counts the rest).
QUEUE_LISTED = 100
# Queued jobs listed on the dashboard and the upload page (the dashboard counts the rest).
QUEUE_LISTED = 100
WAITING_FOR_MONITOR = "Waiting for the GPU monitor…"


def _limits() -> dict:
    return {
        "max_upload": human_bytes(settings.MAX_UPLOAD_BYTES),
        "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
        # The upload page sends files in batches under this (dashboard/bodylimit.py refuses more).
        "max_request_bytes": settings.MAX_REQUEST_BYTES,
        "max_files": settings.MAX_FILES_PER_UPLOAD,
        "max_pixels": f"{settings.MAX_IMAGE_PIXELS:,}",
        "max_pdf_pages": settings.MAX_PDF_PAGES,
        "extensions": ACCEPTED_EXTENSIONS,
        "formats": imageformats.NAMES,
    }


def _languages() -> list[dict]:
    return [
        {
            "code": lang.code,
            "label": lang.label,
            "reads": lang.reads,
            "installed": languages.is_installed(lang, settings.OCRDASH_MODEL_DIR),
        }
        for lang in languages.all_languages()
    ]


def _percent(part: int | float | None, whole: int | float | None) -> float:
    if not part or not whole:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * part / whole)), 1)


def _process_view(process: dict) -> dict:
    return {
        **process,
        "memory_text": gib(process.get("used_bytes")),
        "role_label": containers.ROLE_LABELS.get(process.get("role") or "", ""),
    }


def _device_view(device: dict) -> dict:
    """One device of a gpu.sample (core/gpu.py), with the numbers the page writes."""
    total, used = device.get("total") or 0, device.get("used") or 0
    reserved = device.get("reserved")
    processes = sorted(device.get("processes") or [], key=lambda p: -(p.get("used_bytes") or 0))
    power, limit = device.get("power"), device.get("power_limit")
    return {
        **device,
        "used_text": gib(used),
        "free_text": gib(device.get("free")),
        "total_text": gib(total),
        "reserved_text": gib(reserved) if reserved else "",
        "used_pct": _percent(used, total),
        "reserved_pct": _percent(reserved, total),
        "utilization_text": "—" if device.get("utilization") is None else f"{device['utilization']} %",
        "temperature_text": "—" if device.get("temperature") is None else f"{device['temperature']} °C",
        "power_text": "—" if power is None else f"{power:.1f} W",
        "power_limit_text": "" if limit is None else f"of {limit:.0f} W",
        "power_pct": _percent(power, limit),
        "processes": [_process_view(p) for p in processes],
    }


def _worker_view(hostname: str, record: dict) -> dict:
    status = record.get("backend_status") or {}
    state = status.get("state") if status.get("state") in BACKEND_STATES else "unloaded"
    plan = status.get("plan") or {}
    progress = status.get("progress")
    return {
        "hostname": hostname,
        "state": state,
        "backend": status.get("backend") or "",
        "detail": status.get("detail") or "",
        "progress_pct": None if progress is None else round(100 * progress),
        "summary": plan.get("summary") or "",
        "memory_text": gib(status.get("memory_bytes")) if status.get("memory_bytes") else "none",
        "gpu_index": record.get("gpu_index"),
    }


def _live_state() -> dict:
    """What Redis holds about the GPU and the workers; a Redis that does not answer leaves it empty."""
    try:
        return {
            "sample": livestate.latest_gpu_sample(),
            "history": livestate.gpu_history(),
            "workers": livestate.live_workers(),
            "problem": "",
        }
    except Exception as exc:  # redis.RedisError and friends: the page still shows the jobs
        log.warning("the dashboard could not read the live state: %s", exc)
        return {
            "sample": None,
            "history": [],
            "workers": {},
            "problem": "The live state (Redis) does not answer: GPU samples and workers cannot be shown.",
        }


def _queue() -> tuple[list[Job], list[Job]]:
    """(running jobs, the first QUEUE_LISTED waiting jobs in queue order)."""
    running = list(Job.objects.filter(state=jobstate.RUNNING).select_related("owner").defer("text", "result"))
    waiting = list(queued_jobs_in_order().select_related("owner").defer("text", "result")[:QUEUE_LISTED])
    return running, waiting


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The GPU dashboard: memory, the chart of the last minutes, processes; jobs and backends beside."""
    live = _live_state()
    sample = live["sample"]
    devices = [_device_view(d) for d in (sample or {}).get("devices") or []]
    if live["problem"]:
        gpu_message = live["problem"]
    elif sample is None:
        gpu_message = WAITING_FOR_MONITOR
    else:
        gpu_message = sample.get("error") or NO_GPU_MESSAGE
    now = time.time()
    age = now - sample["taken_at"] if sample and sample.get("taken_at") else None
    running, waiting = _queue()
    waiting_total = len(waiting) if len(waiting) < QUEUE_LISTED else queued_jobs_in_order().count()
    for job in running:
        job.percent = round(100 * (job.progress or 0))
    return render(
        request,
        "ocr_app/dashboard.html",
        {
            "gpus": devices,
            "sample": sample,
            "driver_version": (sample or {}).get("driver_version"),
            "gpu_message": gpu_message,
            "waiting_for_monitor": sample is None and not live["problem"],
            "sample_age": age,
            "stale": age is not None and age > STALE_SAMPLE_SECONDS,
            "history": live["history"],
            "workers": [_worker_view(name, record) for name, record in sorted(live["workers"].items())],
            "running": running,
            "waiting": waiting,
            "waiting_total": waiting_total,
            "server_time": round(now, 3),
            "role_labels": containers.ROLE_LABELS,
        },
    )


def upload_page(request: HttpRequest, status: int = 200) -> HttpResponse:
    running, waiting = _queue()
    mine = list(Job.objects.filter(owner=request.user).select_related("owner").defer("text", "result")[:20])
    positions = {job.pk: n for n, job in enumerate(waiting, start=1)}
    for job in mine:
        job.position = positions.get(job.pk)
    return render(
        request,
        "ocr_app/upload.html",
        {
            "form": UploadForm(),
            "limits": _limits(),
            "languages": _languages(),
            "default_language": settings.OCRDASH_OCR_LANGUAGE,
            "modes": [{"value": t.code, "label": t.label, "help": t.help} for t in taskchoice.offered()],
            "model_name": taskchoice.configured_model().name,
            "running": running,
            "waiting": waiting,
            "mine": mine,
            "positions": positions,
            "jobs_json": [job_payload(j, positions.get(j.pk)) for j in mine],
        },
        status=status,
    )


def _history_queryset(form: HistoryFilterForm):
    jobs = Job.objects.select_related("owner").defer("text", "result")
    if not form.is_bound:
        return jobs
    if not form.is_valid():
        return jobs.none()  # the page shows what was wrong with the filters
    data = form.cleaned_data
    if data["q"]:
        jobs = jobs.filter(Q(original_name__icontains=data["q"]) | Q(text__icontains=data["q"]))
    if data["state"]:
        jobs = jobs.filter(state=data["state"])
    if data["backend"]:
        jobs = jobs.filter(backend=data["backend"])
    if data["owner"]:
        jobs = jobs.filter(owner__username=data["owner"])
    return jobs


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    paginator = Paginator(_history_queryset(form), settings.HISTORY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    for job in page:  # the page's rows, read once; the template goes over the same list
        _gpu_texts(job)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "ocr_app/history.html",
        {"form": form, "page": page, "query": query.urlencode(), "total": paginator.count},
    )


def _gpu_texts(job: Job) -> Job:
    job.peak_gpu_text = gib(job.peak_gpu_bytes)
    job.gpu_free_at_start_text = gib(job.gpu_free_at_start_bytes)
    return job


@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    lang = _language_or_none(job.language)
    first = documents.page_document(job, 1)
    boxes = [{**e, "points": _outline(e)} for e in first["elements"] if e["bbox"]]
    task = tasks.get(job.mode) if job.mode in tasks.CODES else None
    return render(
        request,
        "ocr_app/job_detail.html",
        {
            "job": _gpu_texts(job),
            "payload": job_payload(job, job.queue_position()),
            "language": lang,
            "layout": first,
            "boxes": boxes,
            "categories": LAYOUT_CATEGORIES,
            # Plain text reads best for the text and region tasks; the layout tasks open rendered.
            "text_first": task is not None and task.result == tasks.TEXT,
            "task": task,
            # The "Ask about this image" form, or why the configured model cannot answer.
            "question_refusal": tasks.refusal(QUESTION, taskchoice.configured_model().name),
            "max_question_chars": MAX_QUESTION_CHARS,
            "svg_url": first.get("svg_url"),
            "scene": job.mode == SCENE_SPOTTING,
            "page_numbers": range(1, job.page_count + 1),
            "pages": list(job.pages.order_by("number")) if job.page_count > 1 else [],
            "downloads": downloads_for(job),
            "pruned": retention.describe(job),
            "result_pruned": bool(retention.removed_message(job, retention.RESULT)),
            "original_pruned": bool(retention.removed_message(job, retention.ORIGINAL)),
            "text_layer_pages": list(
                job.pages.filter(source=textlayer.TEXT_LAYER).order_by("number").values_list("number", flat=True)
            ),
        },
    )


def _outline(element: dict) -> str:
    """An element's outline for the page's SVG overlay: scene text's four corners, else its box."""
    if element.get("polygon"):
        return " ".join(f"{x},{y}" for x, y in element["polygon"])
    return "{0},{1} {2},{1} {2},{3} {0},{3}".format(*element["bbox"])


def _language_or_none(code: str):
    try:
        return languages.get_language(code) if code else None
    except ValueError:
        return None


@require_GET
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    return JsonResponse(job_payload(job, job.queue_position()))


@require_GET
def job_pages(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page's list of pages, for the page to refresh while pages finish."""
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    return render(
        request,
        "ocr_app/_pages.html",
        {"job": job, "pages": list(job.pages.order_by("number")), "downloads": downloads_for(job)},
    )


@require_GET
def page_layout(request: HttpRequest, pk: int, number: int) -> JsonResponse:
    job = get_object_or_404(Job, pk=pk)
    if not 1 <= number <= max(job.page_count, 1):
        return JsonResponse({"error": f"Page {number} does not exist."}, status=404)
    return JsonResponse(documents.page_document(job, number))
