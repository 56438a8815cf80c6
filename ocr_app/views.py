from __future__ import annotations

import io
import json
from pathlib import PurePath

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_POST
from PIL import Image

from ocr_app import jobstate
from ocr_app.events import job_payload
from ocr_app.forms import HistoryFilterForm, UploadForm
from ocr_app.models import Job, queued_jobs_in_order
from ocr_app.queueing import create_job
from ocr_app.validation import ACCEPTED_EXTENSIONS, UploadRefused, check_image, human_bytes
from workers import ocr_languages

KNOWN_BACKENDS = ["rapidocr", "vllm", "transformers", "cpu"]
# Browsers cannot show these; the page gets a PNG rendition instead.
NOT_BROWSER_FORMATS = {"TIFF"}


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _limits() -> dict:
    return {
        "max_upload": human_bytes(settings.MAX_UPLOAD_BYTES),
        "max_files": settings.MAX_FILES_PER_UPLOAD,
        "max_pixels": f"{settings.MAX_IMAGE_PIXELS:,}",
        "extensions": ACCEPTED_EXTENSIONS,
    }


def _languages() -> list[dict]:
    return [
        {
            "code": lang.code,
            "label": lang.label,
            "reads": lang.reads,
            "installed": ocr_languages.is_installed(lang, settings.OCRDASH_MODEL_DIR),
        }
        for lang in ocr_languages.all_languages()
    ]


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    active = list(Job.objects.filter(state=jobstate.RUNNING).select_related("owner"))
    waiting = list(queued_jobs_in_order().select_related("owner")[:100])
    mine = list(Job.objects.filter(owner=request.user).select_related("owner").defer("text", "result")[:20])
    positions = {job.pk: n for n, job in enumerate(waiting, start=1)}
    for job in mine:
        job.position = positions.get(job.pk)
    return render(
        request,
        "ocr_app/home.html",
        {
            "form": UploadForm(),
            "limits": _limits(),
            "languages": _languages(),
            "default_language": settings.OCRDASH_OCR_LANGUAGE,
            "running": active,
            "waiting": waiting,
            "mine": mine,
            "positions": positions,
            "jobs_json": [job_payload(j, positions.get(j.pk)) for j in mine],
        },
    )


@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    form = UploadForm(request.POST)
    files = request.FILES.getlist("files")
    errors: list[dict] = []
    accepted: list[Job] = []
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
        language = form.cleaned_data["language"]
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
                checked = check_image(name, data, settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS)
            except UploadRefused as refused:
                errors.append({"name": name, "error": str(refused)})
                continue
            accepted.append(create_job(request.user, name, data, checked, language))

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
    return redirect("home")


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
    form = HistoryFilterForm(request.GET or None, backends=KNOWN_BACKENDS)
    paginator = Paginator(_history_queryset(form), settings.HISTORY_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "ocr_app/history.html",
        {"form": form, "page": page, "query": query.urlencode(), "total": paginator.count},
    )


@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    lang = _language_or_none(job.language)
    return render(
        request,
        "ocr_app/job_detail.html",
        {
            "job": job,
            "payload": job_payload(job, job.queue_position()),
            "language": lang,
            "lines": (job.result or {}).get("lines", []),
            "image_size": (job.result or {}).get("image_size") or [job.width, job.height],
        },
    )


def _language_or_none(code: str):
    try:
        return ocr_languages.get_language(code) if code else None
    except ValueError:
        return None


@require_GET
def job_status(request: HttpRequest, pk: int) -> JsonResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    return JsonResponse(job_payload(job, job.queue_position()))


@require_GET
def job_image(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if job.image_format in NOT_BROWSER_FORMATS:
        with _open_stored(job.upload) as fh, Image.open(fh) as img:
            out = io.BytesIO()
            img.convert("RGBA" if "A" in img.getbands() else "RGB").save(out, "PNG")
        return HttpResponse(out.getvalue(), content_type="image/png")
    return FileResponse(_open_stored(job.upload))


def _open_stored(field):
    try:
        return field.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The stored file is missing from the server's storage.") from None


@require_GET
def job_original(request: HttpRequest, pk: int) -> FileResponse:
    job = get_object_or_404(Job, pk=pk)
    return FileResponse(_open_stored(job.upload), as_attachment=True, filename=job.original_name)


@require_GET
def job_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.only("thumbnail"), pk=pk)
    if not job.thumbnail:
        return HttpResponse(status=404)
    response = FileResponse(_open_stored(job.thumbnail), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _download_name(job: Job, suffix: str) -> str:
    return f"{PurePath(job.original_name).stem or 'job'}-{job.pk}{suffix}"


@require_GET
def job_text(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    response = HttpResponse(job.text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".txt"))
    return response


@require_GET
def job_result(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    body = {
        "job": job_payload(job),
        "file": {
            "name": job.original_name,
            "format": job.image_format,
            "width": job.width,
            "height": job.height,
            "sha256": job.sha256,
            "size_bytes": job.size_bytes,
        },
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "text": job.text,
        "result": job.result,
    }
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False, indent=2), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".json"))
    return response
