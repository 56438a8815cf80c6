"""What the pages' buttons and forms do: an upload from the upload page (or a script that asks for
JSON), cancel, run again, retry the failed pages, reading a region drawn on a page and asking a question
about a page. The rules are ocr_app/jobactions.py's, regions.py's and questions.py's; these views turn
them into redirects with a message, or JSON."""

from __future__ import annotations

import json
from pathlib import PurePath

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from core import jobstate
from ocr_app import questions, regions
from ocr_app.delivery import BrokerUnavailable, require_broker
from ocr_app.events import job_payload
from ocr_app.files import DiskFull, check_free_space
from ocr_app.forms import UploadForm
from ocr_app.jobactions import NotAllowed, WrongState, cancel_job, retry_job
from ocr_app.models import Job
from ocr_app.queueing import create_job
from ocr_app.validation import UploadRefused, check_upload, human_bytes
from ocr_app.views.pages import upload_page


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """GET: the upload page (form, team queue, the user's recent jobs). POST: the upload itself."""
    if request.method == "POST":
        return _receive_upload(request)
    return upload_page(request)


def _refuse_upload(request: HttpRequest, message: str, status: int, retry_after: int | None = None) -> HttpResponse:
    """503 (the queue does not answer) or 507 (the disk is full): nothing was stored."""
    if _wants_json(request):
        response = JsonResponse({"jobs": [], "refused": [{"name": "", "error": message}]}, status=status)
    else:
        messages.error(request, message)
        response = upload_page(request, status=status)
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
        text_layer = form.cleaned_data["text_layer"]
        question = form.cleaned_data.get("question") or ""
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
                accepted.append(
                    create_job(
                        request.user, name, data, checked, language, mode, text_layer=text_layer, question=question
                    )
                )
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


def _act_from_page(request: HttpRequest, pk: int, act, done: str) -> Job:
    """Runs one of the job page's buttons; what went wrong or right is shown as a message there."""
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    try:
        act(job, request.user)
    except NotAllowed as exc:
        messages.error(request, str(exc))
    except WrongState as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, done.format(job=job))
    return job


@require_POST
def run_again_view(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Run again" on the job page: every page is read afresh, whatever result was reused."""
    job = _act_from_page(request, pk, retry_job, "Job {job.pk} is queued to run again.")
    return redirect(job.get_absolute_url())


@require_POST
def retry_pages_view(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Retry page N" on the job page: the job is queued again and the worker reads the pages
    that have not succeeded; the others keep their results."""

    def retry_unfinished(job, user):
        return retry_job(job, user, only_unfinished_pages=True)

    job = _act_from_page(request, pk, retry_unfinished, "Job {job.pk}: the pages that failed are queued again.")
    return redirect(job.get_absolute_url())


@require_POST
def cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The Cancel button of the job page and the history rows (a plain form, CSRF-checked)."""
    job = _act_from_page(request, pk, cancel_job, "Job {job.pk} ({job.original_name}) was cancelled.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = job.get_absolute_url()
    return redirect(back)


def _body(request: HttpRequest, example: str) -> dict | JsonResponse:
    """The request's fields (JSON or form), or the 400 answer that says what is wrong."""
    if request.content_type != "application/json":
        return request.POST
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return JsonResponse({"error": "The body is not valid JSON."}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"error": f"Send an object: {example}."}, status=400)
    return data


def _page_job(request: HttpRequest, pk: int, example: str, make) -> JsonResponse:
    """A new job on one page of job `pk`, made by make(source, page, data): its facts as JSON (201)."""
    source = get_object_or_404(Job, pk=pk)
    data = _body(request, example)
    if isinstance(data, JsonResponse):
        return data
    try:
        number = int(data.get("page", 1))
    except (TypeError, ValueError):
        return JsonResponse({"error": "page must be a page number."}, status=400)
    try:
        job = make(source, number, data)
    except (regions.RegionError, questions.QuestionError) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except BrokerUnavailable as exc:
        return JsonResponse({"error": str(exc)}, status=503, headers={"Retry-After": str(exc.retry_after)})
    except DiskFull as exc:
        return JsonResponse({"error": str(exc)}, status=507)
    return JsonResponse(
        {
            "id": job.pk,
            "state": job.state,
            "region": job.region,
            "question": job.question,
            "reused": bool(job.reused_from_id),
            "url": reverse("job-detail", args=[job.pk]),
            "text_url": reverse("job-text", args=[job.pk]),
            "text": job.text if job.state == jobstate.SUCCEEDED else None,
        },
        status=201,
    )


@require_POST
def read_region(request: HttpRequest, pk: int) -> JsonResponse:
    """Body (JSON or form): page, bbox = [x1, y1, x2, y2] in the page image's pixels."""
    return _page_job(
        request, pk, '{"page": 1, "bbox": [x1, y1, x2, y2]}',
        lambda source, number, data: regions.create_region_job(source, number, data.get("bbox"), request.user),
    )  # fmt: skip


@require_POST
def ask_question(request: HttpRequest, pk: int) -> JsonResponse:
    """Body (JSON or form): page, question: what to ask about the page's image."""
    return _page_job(
        request, pk, '{"page": 1, "question": "..."}',
        lambda source, number, data: questions.create_question_job(
            source, number, data.get("question"), request.user
        ),
    )  # fmt: skip
