from __future__ import annotations

import io
import json
import logging
import time
from pathlib import PurePath

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods
from PIL import Image

from core import containers, jobstate, languages, pdf
from core.dots.prompts import GROUNDING, LAYOUT_CATEGORIES, TEXT_ONLY
from core.events import BACKEND_STATES
from core.gpu import NO_GPU_MESSAGE
from ocr_app import layout, livestate, retention, serving
from ocr_app.api.results import DOWNLOADS, result_document
from ocr_app.delivery import BrokerUnavailable, require_broker
from ocr_app.events import job_payload
from ocr_app.files import DiskFull, check_free_space
from ocr_app.forms import UPLOAD_MODES, HistoryFilterForm, UploadForm
from ocr_app.models import Job, Page, queued_jobs_in_order
from ocr_app.queueing import create_job
from ocr_app.validation import ACCEPTED_EXTENSIONS, PDF, UploadRefused, check_upload, human_bytes

log = logging.getLogger(__name__)

# Browsers cannot show these; the page gets a PNG rendition instead.
NOT_BROWSER_FORMATS = {"TIFF"}

GIB = 1024**3
# The monitor samples once a second: a newer sample than this is "now".
STALE_SAMPLE_SECONDS = 15
# Queued jobs listed on the dashboard and the upload page (the dashboard counts the rest).
QUEUE_LISTED = 100
WAITING_FOR_MONITOR = "Waiting for the GPU monitor…"


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _limits() -> dict:
    return {
        "max_upload": human_bytes(settings.MAX_UPLOAD_BYTES),
        "max_files": settings.MAX_FILES_PER_UPLOAD,
        "max_pixels": f"{settings.MAX_IMAGE_PIXELS:,}",
        "max_pdf_pages": settings.MAX_PDF_PAGES,
        "extensions": ACCEPTED_EXTENSIONS,
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


def gib(n: int | float | None) -> str:
    """Bytes as the dashboard writes them: "5.81 GiB"; "—" when unknown."""
    return "—" if n is None else f"{n / GIB:.2f} GiB"


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


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """GET: the upload page (form, team queue, the user's recent jobs). POST: the upload itself."""
    if request.method == "POST":
        return _receive_upload(request)
    return _upload_page(request)


def _upload_page(request: HttpRequest, status: int = 200) -> HttpResponse:
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
            "modes": [{"value": v, "label": label, "help": hint} for v, label, hint in UPLOAD_MODES],
            "running": running,
            "waiting": waiting,
            "mine": mine,
            "positions": positions,
            "jobs_json": [job_payload(j, positions.get(j.pk)) for j in mine],
        },
        status=status,
    )


def _refuse_upload(request: HttpRequest, message: str, status: int, retry_after: int | None = None) -> HttpResponse:
    """503 (the queue does not answer) or 507 (the disk is full): nothing was stored."""
    if _wants_json(request):
        response = JsonResponse({"jobs": [], "refused": [{"name": "", "error": message}]}, status=status)
    else:
        messages.error(request, message)
        response = _upload_page(request, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def _receive_upload(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST)
    files = request.FILES.getlist("files")
    errors: list[dict] = []
    accepted: list[Job] = []
    try:
        require_broker()
        check_free_space(sum(f.size or 0 for f in files))
    except BrokerUnavailable as exc:
        return _refuse_upload(request, str(exc), 503, exc.retry_after)
    except DiskFull as exc:
        return _refuse_upload(request, str(exc), 507)
    if not form.is_valid():
        errors.append({"name": "", "error": "; ".join(e for errs in form.errors.values() for e in errs)})
    elif not files:
        errors.append({"name": "", "error": "Choose at least one image to upload."})
    elif len(files) > settings.MAX_FILES_PER_UPLOAD:
        errors.append(
            {
                "name": "",
                "error": f"{len(files)} files at once is too many: send at most "
                f"{settings.MAX_FILES_PER_UPLOAD} per upload. Nothing was queued.",
            }
        )
    else:
        language, mode = form.cleaned_data["language"], form.cleaned_data["mode"]
        for upload_file in files:
            name = PurePath(upload_file.name or "upload").name
            try:
                if upload_file.size > settings.MAX_UPLOAD_BYTES:
                    # Refuse by size before reading a huge file into memory.
                    raise UploadRefused(
                        f"{name}: the file is {human_bytes(upload_file.size)}, over the limit of "
                        f"{human_bytes(settings.MAX_UPLOAD_BYTES)}."
                    )
                data = upload_file.read()
                checked = check_upload(
                    name, data, settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS, settings.MAX_PDF_PAGES
                )
                accepted.append(create_job(request.user, name, data, checked, language, mode))
            except UploadRefused as refused:
                errors.append({"name": name, "error": str(refused)})
            except DiskFull as exc:
                # The files after this one are not stored either; the ones before it are queued.
                if not accepted:
                    return _refuse_upload(request, str(exc), 507)
                errors.append({"name": name, "error": f"{name}: {exc}"})
                break

    if _wants_json(request):
        positions = {j.pk: j.queue_position() for j in accepted}
        status = 200 if accepted else 400
        return JsonResponse(
            {"jobs": [job_payload(j, positions[j.pk]) for j in accepted], "refused": errors}, status=status
        )
    for err in errors:
        messages.error(request, err["error"])
    if accepted:
        messages.success(request, f"{len(accepted)} job(s) queued.")
    return redirect("upload")


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
    first = layout.page_document(job, 1)
    boxes = [
        {**e, "points": "{0},{1} {2},{1} {2},{3} {0},{3}".format(*e["bbox"])} for e in first["elements"] if e["bbox"]
    ]
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
            "text_first": job.mode in (TEXT_ONLY, GROUNDING),
            "page_numbers": range(1, job.page_count + 1),
            "pages": list(job.pages.order_by("number")) if job.page_count > 1 else [],
            "downloads": DOWNLOADS,
            "pruned": retention.describe(job),
        },
    )


def _language_or_none(code: str):
    try:
        return languages.get_language(code) if code else None
    except ValueError:
        return None


@require_GET
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    return JsonResponse(job_payload(job, job.queue_position()))


def _removed(job: Job, part: str) -> HttpResponse | None:
    """410 Gone, saying when, for a file the retention settings removed."""
    message = retention.removed_message(job, part)
    if message is None:
        return None
    return HttpResponse(message, status=410, content_type="text/plain; charset=utf-8")


@require_GET
def job_image(request: HttpRequest, pk: int) -> HttpResponse:
    """The uploaded image, shown in the page: its type is the one detected at upload (never the
    name's), and the response is sandboxed (ocr_app.serving)."""
    job = get_object_or_404(Job, pk=pk)
    if job.image_format == PDF:
        return page_image(request, pk, 1)
    if gone := _removed(job, retention.ORIGINAL):
        return gone
    if job.image_format in NOT_BROWSER_FORMATS:
        with _open_stored(job.upload) as fh, Image.open(fh) as img:
            out = io.BytesIO()
            img.convert("RGBA" if "A" in img.getbands() else "RGB").save(out, "PNG")
        return serving.user_content(HttpResponse(out.getvalue(), content_type="image/png"))
    response = FileResponse(_open_stored(job.upload), content_type=serving.content_type(job.image_format))
    return serving.user_content(response)


@require_GET
def page_image(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A page as the model saw it: a PDF page as rendered (the first is rendered here while it
    waits, for the job page's preview), an image job's one page is its image."""
    page = get_object_or_404(Page.objects.select_related("job"), job_id=pk, number=number)
    job = page.job
    if job.image_format != PDF:
        return job_image(request, pk)
    if page.image:
        return serving.user_content(FileResponse(_open_stored(page.image), content_type="image/png"))
    if number != 1 or not job.upload:  # the first page is drawn from the upload while it is there
        if gone := _removed(job, retention.PAGES) or _removed(job, retention.ORIGINAL):
            return gone
    if number != 1:
        raise Http404("This page has not been rendered yet.")
    with _open_stored(job.upload) as fh:
        image, _dpi = pdf.render_page(fh.read(), 0, dpi=pdf.MIN_DPI, name=job.original_name)
    out = io.BytesIO()
    image.save(out, "PNG")
    return serving.user_content(HttpResponse(out.getvalue(), content_type="image/png"))


@require_GET
def page_text(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    page = get_object_or_404(Page.objects.select_related("job"), job_id=pk, number=number)
    response = HttpResponse(page.text, content_type="text/plain; charset=utf-8")
    name = _download_name(page.job, f"-page{number}.txt")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return serving.user_content(response)


@require_GET
def job_pages(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page's list of pages, for the page to refresh while pages finish."""
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    return render(request, "ocr_app/_pages.html",
                  {"job": job, "pages": list(job.pages.order_by("number")), "downloads": DOWNLOADS})


def _open_stored(field):
    try:
        return field.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The stored file is missing from the server's storage.") from None


@require_GET
def job_original(request: HttpRequest, pk: int) -> FileResponse:
    """The file as uploaded, as an attachment of its detected type, under the user's name with
    the detected extension (a PNG sent as x.html downloads as x.png)."""
    job = get_object_or_404(Job, pk=pk)
    if gone := _removed(job, retention.ORIGINAL):
        return gone
    response = FileResponse(
        _open_stored(job.upload),
        as_attachment=True,
        filename=serving.download_name(job.original_name, job.image_format),
        content_type=serving.content_type(job.image_format),
    )
    return serving.user_content(response)


@require_GET
def job_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.only("thumbnail"), pk=pk)
    if not job.thumbnail:
        return HttpResponse(status=404)
    response = FileResponse(_open_stored(job.thumbnail), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return serving.user_content(response)


def _download_name(job: Job, suffix: str) -> str:
    return f"{PurePath(job.original_name).stem or 'job'}-{job.pk}{suffix}"


@require_GET
def job_text(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    response = HttpResponse(job.text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".txt"))
    return serving.user_content(response)


@require_GET
def job_result(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    body = result_document(job)  # the same document as the API's ?format=json
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False, indent=2), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".json"))
    return serving.user_content(response)
