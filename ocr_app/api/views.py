"""The REST API's views (`/api/v1/`). Every view needs a logged-in user (token or session);
everyone sees every job (the history is the team's); owners cancel and retry their own jobs,
staff any job."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from datetime import timedelta
from pathlib import PurePath
from urllib.parse import parse_qs

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFilesSent
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import exceptions, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core import jobstate
from core.backends import AUTO
from core.dots.prompts import GROUNDING, LAYOUT_ALL
from core.planner import PlanRefused
from ocr_app import backendconfig, jobactions, livestate, regions, retention, taskchoice
from ocr_app.api import results, waiting
from ocr_app.api.asyncview import AsyncAPIView
from ocr_app.api.errors import ApiError
from ocr_app.api.serializers import (
    BackendSerializer,
    BackendSettingsSerializer,
    ErrorSerializer,
    GpuSampleSerializer,
    JobDetailSerializer,
    JobListFilterSerializer,
    JobPageSerializer,
    JobsCreatedSerializer,
    JobSerializer,
    RegionRequestSerializer,
    UploadOptionsSerializer,
)
from ocr_app.delivery import BrokerUnavailable, require_broker
from ocr_app.files import DiskFull, check_free_space
from ocr_app.models import BackendSettings, IdempotencyKey, Job, JobOrigin, Page, queued_jobs_in_order
from ocr_app.queueing import commit_job, discard_staged, stage_job
from ocr_app.validation import UploadRefused, check_upload, human_bytes, make_thumbnail

# A retried POST with the same Idempotency-Key within this time gets the first answer again.
IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX = 255
WAIT_DEFAULT_SECONDS = 60.0
WAIT_MAX_SECONDS = 300.0
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Form fields POST /api/v1/jobs understands; anything else is refused by name.
UPLOAD_FIELDS = {"file", "files", "language", "backend", "mode", "reuse", "text_layer", "question"}


def errors(*codes: int, **described: str) -> dict:
    """OpenAPI responses for error statuses, all with the Error body."""
    words = {
        400: "The request names something wrong: the body says what.",
        401: "No credentials, or an unknown or revoked token.",
        403: "Logged in, but not allowed (another user's job).",
        404: "No such job.",
        409: "The job is not in a state that allows this.",
        410: "Removed by the retention settings: the body says what and when.",
        413: "The file is over the server's size limit.",
        415: "The request body is not of an accepted type.",
        422: "The Idempotency-Key was used before with another request.",
        503: "The live state (Redis) does not answer.",
        507: "The server's disk is nearly full: nothing was stored.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described.get(f"e{code}", words[code]))
            for code in codes}


def unavailable(exc: BrokerUnavailable) -> ApiError:
    """503 with Retry-After: the job queue does not answer, so nothing was made."""
    error = ApiError(str(exc), status.HTTP_503_SERVICE_UNAVAILABLE, "queue_unavailable")
    error.wait = exc.retry_after  # DRF's handler turns `wait` into the Retry-After header
    return error


def disk_full(exc: DiskFull) -> ApiError:
    return ApiError(str(exc), status.HTTP_507_INSUFFICIENT_STORAGE, "insufficient_storage")


def _job_or_404(pk, queryset=None) -> Job:
    try:
        return (queryset if queryset is not None else Job.objects.select_related("owner")).get(pk=pk)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise ApiError(f"There is no job {pk}.", status.HTTP_404_NOT_FOUND, "not_found") from None


def _positions(jobs) -> dict[int, int]:
    """Queue positions of the queued jobs among `jobs`, in one query."""
    if not any(j.state == jobstate.QUEUED for j in jobs):
        return {}
    order = queued_jobs_in_order().values_list("id", flat=True)
    return {pk: n for n, pk in enumerate(order, start=1)}


def _detail(job: Job, request, **context) -> dict:
    return JobDetailSerializer(job, context={"request": request, **context}).data


class JobCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = PAGE_SIZE
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    cursor_query_description = "The `next` or `previous` link of the page before; do not build it yourself."

    def decode_cursor(self, request):
        """DRF's decoding, stricter: a cursor that is not one of ours is a 400, never a 500 or a first page."""
        encoded = request.query_params.get(self.cursor_query_param)
        if not encoded:
            return None
        try:
            querystring = base64.b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            tokens = parse_qs(querystring, keep_blank_values=True, strict_parsing=True)
            if not tokens or set(tokens) - {"o", "r", "p"}:
                raise ValueError("not a cursor")
            offset = int(tokens.get("o", ["0"])[0])
            reverse = tokens.get("r", ["0"])[0]
            position = tokens.get("p", [None])[0]
            if not 0 <= offset <= self.offset_cutoff or reverse not in ("0", "1"):
                raise ValueError("out of range")
            if position is not None and parse_datetime(position) is None:
                raise ValueError("not a time")
        except (ValueError, UnicodeError, binascii.Error):
            raise ApiError(
                "The cursor is not valid: use the `next` or `previous` address of an earlier page as it is.",
                code="bad_cursor",
            ) from None
        return Cursor(offset=offset, reverse=reverse == "1", position=position)

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ApiError(f"limit must be a whole number from 1 to {self.max_page_size}; it was {raw!r}.",
                           code="invalid", field_errors={"limit": [f"from 1 to {self.max_page_size}"]})
        return size


class JobsView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="jobs_list",
        summary="List jobs (the team's history), newest first",
        parameters=[
            JobListFilterSerializer,
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From the `next` or `previous` link."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"Jobs per page, 1 to {MAX_PAGE_SIZE}; "
                             f"default {PAGE_SIZE}."),
        ],
        responses={200: JobPageSerializer, **errors(400, 401)},
        tags=["jobs"],
    )
    def get(self, request):
        filters = JobListFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        jobs = Job.objects.select_related("owner").defer("text", "result", "plan")
        if data.get("state"):
            jobs = jobs.filter(state=data["state"])
        if data.get("backend"):
            jobs = jobs.filter(backend=data["backend"])
        if data.get("owner"):
            jobs = jobs.filter(owner__username=data["owner"])
        if data.get("q"):
            jobs = jobs.filter(Q(original_name__icontains=data["q"]) | Q(text__icontains=data["q"]))
        if data.get("created_after"):
            jobs = jobs.filter(created_at__gte=data["created_after"])
        if data.get("created_before"):
            jobs = jobs.filter(created_at__lt=data["created_before"])
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        context = {"request": request, "positions": _positions(page)}
        return paginator.get_paginated_response(JobSerializer(page, many=True, context=context).data)

    @extend_schema(
        operation_id="jobs_create",
        summary="Upload one or more images or PDFs; each becomes a queued job",
        description=(
            "Send `multipart/form-data` with one or more files in `file` or `files` (PNG, JPEG, WebP, TIFF, "
            "BMP, GIF (its first frame), HEIC/HEIF, AVIF, JPEG 2000, or PDF: checked by their bytes; a PDF or a "
            "multi-page TIFF is one job whose pages are read in turn, up to OCRDASH_MAX_PDF_PAGES pages). "
            "`text_layer` says how a born-digital PDF's own text is used (`auto`, `ocr`, `text-layer`). "
            "Files that are refused are listed in `refused` and the others are "
            "queued; when every file is refused, nothing is queued and the answer is 400 (413 when every file "
            "is over the size limit).\n\n"
            "Send an `Idempotency-Key` header (any unique string, e.g. a UUID) to make a retry safe: the same "
            "key with the same request, within 24 hours, answers with the jobs of the first request instead "
            "of making new ones (header `Idempotent-Replayed: true`); the same key with another request is "
            "a 422.\n\n"
            "`mode` picks the task: `layout_all` (the default: boxes, categories and text), `layout_only` "
            "(boxes and categories) or `text` (plain text); with dots.mocr also `web_parsing` (a web page "
            "screenshot), `scene_spotting` (text in photos, with outlines), `question` (send the question in "
            "`question`) and `image_to_svg` (also dots.mocr-svg). A task the configured model cannot run is "
            "refused (400, code `task_not_supported`, naming the models that can). Page ranges are not "
            "supported: every page of a PDF is read.\n\n"
            "A file sent again with the same settings (content, backend settings, task, model, revision, "
            "image-size cap and, for rapidocr, language) as a job that succeeded gets a new job that has "
            "already succeeded with that result (`reused_from` names it); send `reuse=false` to run it again."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                description=f"Up to {IDEMPOTENCY_KEY_MAX} characters; one per logical upload.",
            )
        ],
        request={"multipart/form-data": UploadOptionsSerializer},
        responses={202: JobsCreatedSerializer, **errors(400, 401, 413, 415, 422, 503, 507, e503=(
            "The job queue (Redis) does not answer: nothing was stored; send again after Retry-After seconds."))},
        tags=["jobs"],
    )
    def post(self, request):
        try:
            data, uploads = request.data, request.FILES
        except exceptions.UnsupportedMediaType:
            raise ApiError(
                f"Send the files as multipart/form-data (e.g. curl -F file=@scan.png); this request is "
                f"{request.content_type or 'without a content type'}.",
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ) from None
        except RequestDataTooBig:
            raise ApiError("The request is too large.", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large") from None
        except TooManyFilesSent:
            raise _too_many_files(None) from None
        except (exceptions.ParseError, SuspiciousOperation) as exc:
            raise ApiError(f"The multipart body could not be read ({exc}).", code="bad_multipart") from None

        unknown = sorted(set(data.keys()) - UPLOAD_FIELDS)
        if "pages" in unknown or "page_range" in unknown:
            raise ApiError(
                "Page ranges are not supported: every page of a PDF is read. Send PDFs without `pages`.",
                code="invalid", field_errors={"pages": ["not supported"]},
            )
        if unknown:
            raise ApiError(
                f"Unknown field(s): {', '.join(unknown)}. Known: {', '.join(sorted(UPLOAD_FIELDS))}.",
                code="invalid", field_errors={name: ["unknown field"] for name in unknown},
            )
        named = ("language", "backend", "mode", "reuse", "text_layer", "question")
        strings = {k: data.get(k) for k in named if isinstance(data.get(k), str)}
        options_in = UploadOptionsSerializer(data=strings)
        if strings.get("mode") == GROUNDING:
            raise ApiError(
                "Task mode 'grounding' reads one region of a page and needs its box: upload the file with "
                "another mode, then POST /api/v1/jobs/{id}/region with the page and the box.",
                code="invalid", field_errors={"mode": ["grounding is not available for uploads"]},
            )
        options_in.is_valid(raise_exception=True)
        options = options_in.validated_data
        options.setdefault("language", settings.OCRDASH_OCR_LANGUAGE)
        if why := taskchoice.problem(options.get("mode", LAYOUT_ALL), options.get("question", "")):
            raise ApiError(why, code="task_not_supported", field_errors={"mode": [why]})

        files = uploads.getlist("file") + uploads.getlist("files")
        if not files:
            raise ApiError(
                "No file was sent: add one or more images as the form field `file` (or `files`).",
                code="no_file",
            )
        if len(files) > settings.MAX_FILES_PER_UPLOAD:
            raise _too_many_files(len(files))

        received = [_receive(f) for f in files]
        key = request.headers.get("Idempotency-Key")
        request_hash = None
        if key is not None:
            if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
                raise ApiError(f"The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters.",
                               code="bad_idempotency_key")
            request_hash = _request_hash(options, received)
            replay = _replay(request, key, request_hash)
            if replay is not None:
                return replay

        accepted, refused = [], []
        for item in received:
            if item["refused"]:
                refused.append(item["refused"])
                continue
            try:
                item["checked"] = check_upload(
                    item["name"], item["data"], settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS,
                    settings.MAX_PDF_PAGES,
                )
                item["thumbnail"] = make_thumbnail(item["data"], item["name"])
            except UploadRefused as exc:
                refused.append({"name": item["name"], "error": str(exc), "code": "refused"})
                continue
            accepted.append(item)
        if not accepted:
            all_too_large = all(r["code"] == "too_large" for r in refused)
            raise ApiError(
                "No job was made: " + " ".join(r["error"] for r in refused),
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if all_too_large else status.HTTP_400_BAD_REQUEST,
                "too_large" if all_too_large else "refused",
                refused=refused,
            )

        try:
            require_broker()
            check_free_space(sum(len(item["data"]) for item in accepted))
        except BrokerUnavailable as exc:
            raise unavailable(exc) from None
        except DiskFull as exc:
            raise disk_full(exc) from None

        # Files first, rows after, in one short transaction: on SQLite a transaction holds the
        # database's one write lock for its whole length, and the worker must write meanwhile.
        staged: list[Job] = []
        try:
            for item in accepted:
                staged.append(_stage_job(request, item, options))
            with transaction.atomic():
                record = None
                if key is not None:
                    IdempotencyKey.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
                    record = IdempotencyKey.objects.create(user=request.user, key=key, request_hash=request_hash,
                                                           refused=refused)
                jobs = [_commit_job(request, job, options) for job in staged]
                if record is not None:
                    record.job_ids = [j.pk for j in jobs]
                    record.save(update_fields=["job_ids"])
        except IntegrityError:
            discard_staged(*staged)
            # The same key arrived twice at once; the other request made the jobs.
            replay = _replay(request, key, request_hash)
            if replay is None:
                raise
            return replay
        except DiskFull as exc:
            discard_staged(*staged)
            raise disk_full(exc) from None
        except BaseException:
            discard_staged(*staged)
            raise
        return _created(request, jobs, refused)


def _too_many_files(count: int | None) -> ApiError:
    limit = settings.MAX_FILES_PER_UPLOAD
    what = f"{count} files" if count else "That many files"
    return ApiError(f"{what} at once is too many: send at most {limit} per request. Nothing was queued.",
                    code="too_many_files")


def _receive(upload) -> dict:
    name = "".join(c for c in PurePath(upload.name or "upload").name if c.isprintable())[:255] or "upload"
    if upload.size > settings.MAX_UPLOAD_BYTES:
        # Refused by size before a huge file is read into memory; hashed from its name and size.
        error = (f"{name}: the file is {human_bytes(upload.size)}, over the limit of "
                 f"{human_bytes(settings.MAX_UPLOAD_BYTES)}.")
        return {"name": name, "data": b"", "sha256": f"size:{upload.size}",
                "refused": {"name": name, "error": error, "code": "too_large"}}
    data = upload.read()
    return {"name": name, "data": data, "sha256": hashlib.sha256(data).hexdigest(), "refused": None}


def _request_hash(options: dict, received: list[dict]) -> str:
    canonical = json.dumps(
        {"options": {k: str(v) for k, v in sorted(options.items())},
         "files": [[item["name"], item["sha256"]] for item in received]},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(request, key: str, request_hash: str) -> Response | None:
    """The first answer for this key, or None when the key is new (or expired, then forgotten)."""
    record = IdempotencyKey.objects.filter(user=request.user, key=key).first()
    if record is None:
        return None
    if record.created_at < timezone.now() - IDEMPOTENCY_TTL:
        record.delete()
        return None
    if record.request_hash != request_hash:
        raise ApiError(
            "This Idempotency-Key was already used with a different request (other files or options). "
            "Use a new key for a new upload.",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
    by_id = Job.objects.select_related("owner").in_bulk(record.job_ids)
    jobs = [by_id[pk] for pk in record.job_ids if pk in by_id]
    response = _created(request, jobs, record.refused, record.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _stage_job(request, item: dict, options: dict) -> Job:
    mode = options.get("mode", LAYOUT_ALL)
    return stage_job(request.user, item["name"], item["data"], item["checked"], options["language"], mode,
                     thumbnail=item["thumbnail"], text_layer=options.get("text_layer"),
                     question=options.get("question", "").strip())


def _commit_job(request, job: Job, options: dict) -> Job:
    mode = job.mode
    job = commit_job(job, reuse=options.get("reuse", True))
    hint = options.get("backend", AUTO)
    if hint != AUTO:
        # Recorded as the backend asked for; the worker overwrites it with the one that ran the job.
        Job.objects.filter(pk=job.pk).update(backend=hint)
        job.backend = hint  # the "queued" event, sent on commit, carries it too
    JobOrigin.objects.create(
        job=job,
        via=JobOrigin.API,
        token=request.auth if hasattr(request.auth, "key_hash") else None,
        mode=mode,
        options={k: str(v) for k, v in options.items()},
    )
    return job


def _created(request, jobs: list[Job], refused: list[dict], status_code: int = 202) -> Response:
    context = {"request": request, "positions": _positions(jobs)}
    body = {"jobs": JobSerializer(jobs, many=True, context=context).data, "refused": refused}
    response = Response(body, status=status_code)
    if len(jobs) == 1:
        response["Location"] = request.build_absolute_uri(reverse("api-job", args=[jobs[0].pk]))
    return response


class JobView(APIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        summary="One job: state, progress, queue position, ETA, plan, timings, GPU memory",
        responses={200: JobDetailSerializer, **errors(401, 404)},
        tags=["jobs"],
    )
    def get(self, request, pk: int):
        job = _job_or_404(pk)
        return Response(_detail(job, request))


class JobResultView(APIView):
    @extend_schema(
        operation_id="jobs_result",
        summary="The result of a job that succeeded",
        description="`format=txt`: the recognized text. `md`: Markdown (tables as HTML, formulas as `$$` TeX); "
        "`md_nohf`: the same without page headers and footers. `html`: a page to show in a browser. "
        "`layout`: every element with its category, text and box `[x1, y1, x2, y2]` in the pixels of the "
        "page image. `json` (the default): everything — text, the engine's answer, file facts, timings, "
        "GPU memory. `pdf`: a searchable PDF (the original pages, or the images as pages, with an invisible "
        "text layer on each recognized line or element). `page=N` gives one page of a document (1-based); "
        "without it, the whole document. "
        "An unknown format is a 400 that lists the available ones.",
        parameters=[
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(results.FORMATS), required=False,
                             description=f"Default: {results.DEFAULT_FORMAT}."),
            OpenApiParameter("page", OpenApiTypes.INT, required=False,
                             description="One page of the document (1-based); default: every page."),
        ],
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="format=txt"),
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR, description="format=md or md_nohf"),
            (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="format=html"),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="format=json or layout"),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="format=pdf: a searchable "
                                                      "PDF, the pages with an invisible text layer"),
            (200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.STR, description="format=svg (task image_to_svg)"),
            **errors(400, 401, 404, 409, 410, e409="The job (or the page asked for) has not succeeded: the body "
                     "says its state.", e410="The result was removed by the retention settings."),
        },
        tags=["jobs"],
    )
    def get(self, request, pk: int):
        fmt = request.query_params.get("format", results.DEFAULT_FORMAT)
        if fmt not in results.FORMATS:
            available = list(results.FORMATS)
            raise ApiError(f"Unknown format {fmt!r}; available: {', '.join(available)}.", code="unknown_format",
                           available=available)
        job = _job_or_404(pk)
        if job.state != jobstate.SUCCEEDED:
            why = {
                jobstate.QUEUED: "it is still queued",
                jobstate.RUNNING: "it is still running",
                jobstate.FAILED: f"it failed: {job.message}",
                jobstate.CANCELLED: "it was cancelled",
            }[job.state]
            raise ApiError(f"Job {job.pk} has no result: {why}", status.HTTP_409_CONFLICT, "no_result",
                           state=job.state)
        if removed := retention.removed_message(job, retention.RESULT):
            raise ApiError(removed, status.HTTP_410_GONE, "pruned", state=job.state)
        page = _page_param(request, job)
        try:
            return results.FORMATS[fmt](job, page)
        except results.NoSvg as exc:
            raise ApiError(str(exc), status.HTTP_404_NOT_FOUND, "no_svg") from None


def _page_param(request, job: Job) -> int | None:
    raw = request.query_params.get("page")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= job.page_count:
        pages = "1" if job.page_count == 1 else f"1 to {job.page_count}"
        raise ApiError(f"page must be a page number of this job: {pages}.", code="invalid",
                       field_errors={"page": [f"not a page of job {job.pk}"]})
    number = int(raw)
    if job.page_count == 1:
        return None  # the one page is the whole result
    state = results.page_state(job, number)
    if state != Page.SUCCEEDED:
        why = {Page.FAILED: "it failed", Page.RUNNING: "it is being read"}.get(state, "it has not been read")
        raise ApiError(f"Page {number} of job {job.pk} has no result: {why}.",
                       status.HTTP_409_CONFLICT, "no_result", state=job.state)
    return number


class JobWaitView(AsyncAPIView):
    @extend_schema(
        operation_id="jobs_wait",
        summary="Wait until the job ends, or the timeout passes; then the job",
        description="Long-polls: answers as soon as the job has ended (succeeded, failed or cancelled), or after "
        "`timeout` seconds with the job as it is then (`ended` is false; ask again).",
        parameters=[
            OpenApiParameter("timeout", OpenApiTypes.NUMBER, required=False,
                             description=f"Seconds, 0 to {WAIT_MAX_SECONDS:g}; default {WAIT_DEFAULT_SECONDS:g}."),
        ],
        responses={200: JobDetailSerializer, **errors(400, 401, 404)},
        tags=["jobs"],
    )
    async def get(self, request, pk: int):
        raw = request.query_params.get("timeout")
        timeout = WAIT_DEFAULT_SECONDS
        if raw is not None:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = -1.0
            if not 0 <= timeout <= WAIT_MAX_SECONDS:
                raise ApiError(f"timeout must be a number of seconds from 0 to {WAIT_MAX_SECONDS:g}; it was {raw!r}.",
                               code="invalid", field_errors={"timeout": [f"0 to {WAIT_MAX_SECONDS:g}"]})
        job = await waiting.sync(_job_or_404)(pk)
        if not job.ended and timeout > 0:
            await waiting.wait_until_ended(job.pk, timeout)
        return Response(await waiting.sync(_fresh_detail)(pk, request))


def _fresh_detail(pk, request) -> dict:
    return _detail(_job_or_404(pk), request)


class _JobChangeView(APIView):
    verb = ""

    def change(self, job: Job, user) -> Job:
        raise NotImplementedError

    def post(self, request, pk: int):
        job = _job_or_404(pk)
        try:
            self.change(job, request.user)
        except jobactions.NotAllowed as exc:
            raise ApiError(str(exc), status.HTTP_403_FORBIDDEN, "not_allowed") from None
        except jobactions.WrongState as exc:
            raise ApiError(str(exc), status.HTTP_409_CONFLICT, "wrong_state", state=exc.state) from None
        job.refresh_from_db()
        return Response(_detail(job, request))


class JobCancelView(_JobChangeView):
    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a queued or running job",
        description="A queued job is cancelled at once. A running job is marked cancelled at once and stops at "
        "the next generated token (dots.ocr in the worker), its vLLM request is aborted, or (rapidocr) an "
        "engine run already under way finishes and its result is discarded. Owners cancel their own jobs; staff "
        "any. A job that has ended is a 409.",
        request=None,
        responses={200: JobDetailSerializer, **errors(401, 403, 404, 409)},
        tags=["jobs"],
    )
    def post(self, request, pk: int):
        return super().post(request, pk)

    def change(self, job, user):
        return jobactions.cancel_job(job, user)


class JobRetryView(_JobChangeView):
    @extend_schema(
        operation_id="jobs_retry",
        summary="Queue a job that has ended again",
        description="The job goes to the end of the queue with its upload; its previous text and result are "
        "cleared. Owners retry their own jobs; staff any. A queued or running job is a 409.",
        request=None,
        responses={200: JobDetailSerializer, **errors(401, 403, 404, 409)},
        tags=["jobs"],
    )
    def post(self, request, pk: int):
        return super().post(request, pk)

    def change(self, job, user):
        return jobactions.retry_job(job, user)


class JobRegionView(APIView):
    @extend_schema(
        operation_id="jobs_region",
        summary="Read one region of a job's page (dots.ocr's grounding task)",
        description="Makes a new job, owned by the caller, that reads the text inside `bbox` on page `page` of "
        "this job's file: the image itself, or the PDF page as the worker rendered it (so a PDF page must have "
        "been read first). The box is clamped to the page; one under 4×4 pixels is refused. The same box on "
        "the same file with the same settings reuses the earlier result at once.",
        request=RegionRequestSerializer,
        responses={201: JobDetailSerializer, **errors(400, 401, 404, 503, 507)},
        tags=["jobs"],
    )
    def post(self, request, pk: int):
        source = _job_or_404(pk)
        given = RegionRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            job = regions.create_region_job(source, given.validated_data["page"], given.validated_data["bbox"],
                                            request.user)
        except regions.RegionError as exc:
            raise ApiError(str(exc), code="invalid", field_errors={"bbox": [str(exc)]}) from None
        except BrokerUnavailable as exc:
            raise unavailable(exc) from None
        except DiskFull as exc:
            raise disk_full(exc) from None
        return Response(_detail(job, request), status=status.HTTP_201_CREATED)


class GpuView(APIView):
    @extend_schema(
        operation_id="gpu",
        summary="The GPU monitor's latest sample",
        responses={200: GpuSampleSerializer, **errors(401, 503)},
        tags=["server"],
    )
    def get(self, request):
        try:
            sample = livestate.latest_gpu_sample()
        except Exception:
            raise ApiError("The live state (Redis) does not answer: no GPU sample can be read.",
                           status.HTTP_503_SERVICE_UNAVAILABLE, "live_state_unavailable") from None
        if sample is None:
            return Response({"sample": None, "age_seconds": None,
                             "message": "Waiting for the GPU monitor: no sample yet (is it running?)."})
        taken = sample.get("taken_at")
        age = round(time.time() - taken, 3) if isinstance(taken, (int, float)) else None
        return Response({"sample": sample, "age_seconds": age, "message": ""})


class BackendView(APIView):
    @extend_schema(
        operation_id="backend",
        summary="Backend settings, the plan they give now, and each worker's backend",
        responses={200: BackendSerializer, **errors(401)},
        tags=["server"],
    )
    def get(self, request):
        cfg = BackendSettings.load()
        problem = ""
        try:
            sample = livestate.latest_gpu_sample()
            workers = livestate.live_workers()
        except Exception:
            sample, workers = None, {}
            problem = "The live state (Redis) does not answer: the GPU and the workers cannot be shown."
        plan, refused = None, None
        try:
            plan = backendconfig.plan_now(cfg, backendconfig.devices_from_sample(sample)).as_json()
        except PlanRefused as exc:
            refused = {"headline": exc.headline, "reasons": list(exc.reasons)}
        return Response(
            {
                "settings": BackendSettingsSerializer(cfg).data,
                "plan": plan,
                "plan_refused": refused,
                "workers": [_worker(name, record) for name, record in sorted(workers.items())],
                "live_state_problem": problem,
            }
        )


class NoSuchEndpointView(APIView):
    """Any other address under /api/: a JSON 404 a script can read, not the HTML page."""

    @extend_schema(exclude=True)
    def get(self, request, rest: str = ""):
        hint = ""
        if request.path.endswith("/") and len(request.path) > 1:
            try:
                match = resolve(request.path.rstrip("/"))
            except Resolver404:
                match = None
            if match is not None and getattr(match.func, "view_class", None) is not NoSuchEndpointView:
                hint = f" Did you mean {request.path.rstrip('/')} (no slash at the end)?"
        raise ApiError(f"There is no API endpoint {request.path}; the endpoints are listed at /api/docs/.{hint}",
                       status.HTTP_404_NOT_FOUND, "not_found")

    post = put = patch = delete = get


def _worker(hostname: str, record: dict) -> dict:
    status_ = record.get("backend_status") or {}
    return {
        "hostname": hostname,
        "state": status_.get("state") or "unloaded",
        "backend": status_.get("backend") or "",
        "detail": status_.get("detail") or "",
        "progress": status_.get("progress"),
        "memory_bytes": status_.get("memory_bytes"),
        "plan": status_.get("plan"),
        "gpu_index": record.get("gpu_index"),
        "seen_at": record.get("seen_at"),
    }


# -- the OpenAPI document and its pages (drf-spectacular-sidecar's files: no CDN) ---------------


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, JSON unless YAML is asked for (Accept: application/yaml)."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI from our own template: no inline script or style (the pages' CSP allows none)."""

    template_name = "api/swagger_ui.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Cross-Origin-Opener-Policy"] = "same-origin"  # no OAuth pop-ups here
        return response


class RedocView(SpectacularRedocView):
    """ReDoc from our own template: no inline script, no web fonts from another site."""

    template_name = "api/redoc.html"
