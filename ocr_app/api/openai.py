"""An OpenAI-compatible endpoint, so that a script written for a dots.ocr / dots.mocr vLLM server works
unchanged.

`POST /v1/chat/completions` accepts what dots.ocr's own client sends to vLLM (upstream's
dots_ocr/model/inference.py `inference_with_vllm`, rednote-hilab/dots.ocr at 36d7248878f1; our
workers/backends/vllm/client.py `VllmClient.request_body` sends the same): one user message whose
content is the page as a data URL and the text `<|img|><|imgpad|><|endofimg|>` + a prompt, and for
questions a system message. The prompt picks the task (core/dots/tasks.py): each of dots.ocr's and
dots.mocr's prompts (the SVG one with any viewBox, the grounding one with its box in the pixels
the model sees), and any other text is a question about the image. The image becomes one job in
the same queue as every upload (in the history, owned by the token's user); the answer comes when
the job ends, written in the format the prompt asks for whatever backend read it
(core/dots/answer.py: layout JSON with boxes in the pixels the model sees, scene-text lines, SVG,
text), in the chat.completion format, or as server-sent events with one final chunk when `stream`
is true. The model name is echoed back: any name is accepted (scripts name the model as their vLLM
server was started: "model", the repository, a catalog name); the task must be one the configured
model (core/catalog.py) can run.

What is recorded but not applied: the sampling parameters (max_tokens, temperature, top_p: the
backend uses the model's own sampling and the admin's output budget). Errors have OpenAI's shape:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import catalog, jobstate
from core.dots import answer
from core.dots.prompts import (
    DEFAULT_QUESTION,
    GROUNDING,
    IMAGE_PLACEHOLDER,
    IMAGE_TO_SVG,
    MAX_QUESTION_CHARS,
    PROMPTS,
    QUESTION,
    TEXT_ONLY,
)
from ocr_app import documents, jobactions, taskchoice
from ocr_app.api.asyncview import AsyncAPIView
from ocr_app.api.auth import ApiTokenAuthentication
from ocr_app.api.errors import ApiError
from ocr_app.api.waiting import sync, wait_until_ended
from ocr_app.delivery import BrokerUnavailable, require_broker
from ocr_app.files import DiskFull
from ocr_app.models import Job, JobOrigin
from ocr_app.queueing import create_job
from ocr_app.validation import UploadRefused, check_image, human_bytes

MODEL_ID = "dots.ocr"
MODEL_CREATED = 1722470400  # 2024-08-01, dots.ocr's release month: a fixed "created" for /v1/models
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)$", re.S)
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BBOX = re.compile(rf"^\[{_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\]$")
_SVG_PROMPT = re.compile(
    "^" + re.escape(PROMPTS[IMAGE_TO_SVG].split("{width}")[0]) + r"\d+ \d+" + re.escape('"') + "$"
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
    507: "server_error",
}


class OpenAiError(ApiError):
    def __init__(self, message: str, param: str | None = None, status_code: int = 400, code: str = "invalid_request"):
        super().__init__(message, status_code, code, param=param)


# -- reading the request ----------------------------------------------------------------------------


def _prompt_mode(prompt: str, system: str = "") -> tuple[str, dict]:
    """The task a prompt asks for, and what it carries (the grounding box in the pixels the model
    sees, the question)."""
    text = prompt.replace(IMAGE_PLACEHOLDER, "").strip()
    if not text:
        if system:  # upstream's general prompt is blank: its own question then
            return QUESTION, {"question": DEFAULT_QUESTION}
        raise OpenAiError(
            "The message has no prompt: add a text part with one of dots.ocr's prompts, e.g. "
            f"{IMAGE_PLACEHOLDER}{PROMPTS['text']}",
            "messages",
        )
    for mode, known in PROMPTS.items():
        if mode not in (GROUNDING, IMAGE_TO_SVG) and text == known.strip():
            return mode, {}
    if _SVG_PROMPT.match(text):
        return IMAGE_TO_SVG, {}
    grounding = PROMPTS[GROUNDING].strip()
    if text.startswith(grounding):
        box = _BBOX.match(text[len(grounding):].strip())
        if not box:
            raise OpenAiError("A grounding prompt must end with the box as [x1, y1, x2, y2].", "messages")
        return GROUNDING, {"sent_bbox": [float(v) for v in box.groups()]}
    if len(text) > MAX_QUESTION_CHARS:
        raise OpenAiError(f"The question is {len(text):,} characters long; the limit is {MAX_QUESTION_CHARS:,}.",
                          "messages")
    return QUESTION, {"question": text}


def _image_from_url(url, param: str) -> bytes:
    if not isinstance(url, str):
        raise OpenAiError("image_url.url must be a string (a data URL).", param)
    if url.startswith(("http://", "https://")):
        raise OpenAiError(
            "ocrdash does not fetch images from addresses: upload the image as a data URL "
            "(data:image/png;base64,…).",
            param,
        )
    match = DATA_URL.match(url)
    if not match:
        raise OpenAiError("image_url.url must be a data URL: data:image/png;base64,<the bytes in base64>.", param)
    encoded = match["data"]
    if len(encoded) * 3 // 4 > settings.MAX_UPLOAD_BYTES + 3:
        size = human_bytes(len(encoded) * 3 // 4)
        raise OpenAiError(
            f"The image is about {size}, over the limit of {human_bytes(settings.MAX_UPLOAD_BYTES)}.",
            param, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large",
        )
    try:
        return base64.b64decode(re.sub(r"\s+", "", encoded), validate=True)
    except (binascii.Error, ValueError):
        raise OpenAiError("The data URL's base64 is damaged.", param) from None


def _number(body: dict, name: str, low: float, high: float, integer: bool = False):
    value = body.get(name)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise OpenAiError(f"{name} must be {kind} from {low:g} to {high:g}.", name)
    return value


def parse_request(body) -> dict:
    """What a chat completion request asks for; OpenAiError names the first problem."""
    if not isinstance(body, dict):
        raise OpenAiError("The body must be a JSON object.")
    model = body.get("model", MODEL_ID)
    if not isinstance(model, str) or not model:
        raise OpenAiError("model must be a non-empty string (any name: ocrdash serves dots.ocr).", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAiError("messages must be a list with one user message.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise OpenAiError(f"messages[{i}] must be an object with a role.", "messages")
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    system = " ".join(m["content"] for m in messages if m["role"] == "system" and isinstance(m.get("content"), str))
    others = [m["role"] for m in messages if m["role"] not in ("user", "system")]
    if len(users) != 1 or others:
        raise OpenAiError("Send exactly one user message (the page and the prompt); this is not a chat.", "messages")
    index = users[0]
    content = messages[index].get("content")
    if isinstance(content, str) or not isinstance(content, list):
        raise OpenAiError(
            "The user message's content must be a list: an image_url part (the page as a data URL) and a text "
            "part (the prompt).",
            f"messages[{index}].content",
        )
    images, texts = [], []
    for j, part in enumerate(content):
        param = f"messages[{index}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            images.append((url, f"{param}.image_url.url"))
        elif kind == "text":
            if not isinstance(part.get("text"), str):
                raise OpenAiError("A text part needs its text as a string.", f"{param}.text")
            texts.append(part["text"])
        else:
            raise OpenAiError("Each content part must be {\"type\": \"image_url\"} or {\"type\": \"text\"}.", param)
    if len(images) != 1:
        raise OpenAiError(
            f"Send exactly one image per request (this one has {len(images)}); send one request per page.",
            f"messages[{index}].content",
        )
    if body.get("n") not in (None, 1):
        raise OpenAiError("n must be 1: one answer per page.", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise OpenAiError("stream must be true or false.", "stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise OpenAiError("stream_options must be an object.", "stream_options")
    mode, extra = _prompt_mode("".join(texts), system.strip())
    options = {
        "model": model,
        "max_tokens": _number(body, "max_completion_tokens", 1, 10**7, True) or _number(body, "max_tokens", 1, 10**7,
                                                                                       True),
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
        **{k: v for k, v in extra.items() if k != "question"},
    }
    return {
        "model": model,
        "image": images[0],
        "mode": mode,
        "question": extra.get("question", ""),
        "stream": stream,
        "include_usage": bool(stream_options.get("include_usage")),
        "options": {k: v for k, v in options.items() if v is not None},
    }


# -- the job ----------------------------------------------------------------------------------------


def make_job(user, token, request_data: dict) -> Job:
    url, param = request_data["image"]
    data = _image_from_url(url, param)
    name = f"chat-completion-{timezone.now():%Y%m%d-%H%M%S}"
    try:
        checked = check_image(name, data, settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS)
    except UploadRefused as exc:
        raise OpenAiError(str(exc), param) from None
    name = f"{name}.{checked.image_format.lower()}"
    mode, question = request_data["mode"], request_data.get("question", "")
    if why := taskchoice.problem(mode if mode != GROUNDING else TEXT_ONLY, question):
        raise OpenAiError(why, "messages", code="task_not_supported")
    region = None
    if mode == GROUNDING:
        region = _region_in_image(request_data["options"]["sent_bbox"], (checked.width, checked.height))
    try:
        require_broker()
        job = create_job(user, name, data, checked, settings.OCRDASH_OCR_LANGUAGE, mode, region=region,
                         question=question)
    except UploadRefused as exc:
        raise OpenAiError(str(exc), param) from None
    except BrokerUnavailable as exc:
        error = OpenAiError(str(exc), None, status.HTTP_503_SERVICE_UNAVAILABLE, "queue_unavailable")
        error.wait = exc.retry_after  # Retry-After
        raise error from None
    except DiskFull as exc:
        raise OpenAiError(str(exc), None, status.HTTP_507_INSUFFICIENT_STORAGE, "insufficient_storage") from None
    JobOrigin.objects.create(
        job=job,
        via=JobOrigin.OPENAI,
        token=token if hasattr(token, "key_hash") else None,
        mode=request_data["mode"],
        options={**request_data["options"], "served_mode": mode},
    )
    return job


def _region_in_image(sent_box: list[float], size: tuple[int, int]) -> list[int]:
    """A grounding box in the pixels the model sees (smart_resize of the image) as a region of the
    image itself (upstream's pre_process_bboxes scaled it the other way)."""
    seen = answer.model_size(size)
    sx, sy = size[0] / seen[0], size[1] / seen[1]
    x1, y1, x2, y2 = sent_box
    box = [round(min(x1, x2) * sx), round(min(y1, y2) * sy), round(max(x1, x2) * sx), round(max(y1, y2) * sy)]
    box = [min(max(box[0], 0), size[0] - 1), min(max(box[1], 0), size[1] - 1), min(box[2], size[0]),
           min(box[3], size[1])]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise OpenAiError("The grounding box is empty or outside the image.", "messages")
    return box


def answer_text(job: Job) -> str:
    """The job's result in the format its prompt asked for (core/dots/answer.py)."""
    pages = documents.parsed_pages(job)
    if not pages:
        return job.text
    return answer.model_answer(pages[0], job.mode)


def _reload(pk: int) -> Job:
    return Job.objects.select_related("owner").get(pk=pk)


def _cancel_after_timeout(job: Job, user) -> Job:
    try:
        return jobactions.cancel_job(job, user)
    except jobactions.WrongState:
        job.refresh_from_db()  # it ended just now
        return job


def usage_of(job: Job) -> tuple[dict, str]:
    details = (job.result or {}).get("details") or {}
    reported = details.get("usage") if isinstance(details.get("usage"), dict) else {}
    prompt = details.get("prompt_tokens") or reported.get("prompt_tokens") or 0
    completion = details.get("new_tokens") or reported.get("completion_tokens") or 0
    usage = {"prompt_tokens": int(prompt), "completion_tokens": int(completion),
             "total_tokens": int(prompt) + int(completion)}
    truncated = details.get("hit_token_limit") or details.get("truncated") or details.get("finish_reason") == "length"
    return usage, "length" if truncated else "stop"


def completion(job: Job, model: str) -> dict:
    usage, finish_reason = usage_of(job)
    return {
        "id": f"chatcmpl-ocrdash-{job.pk}",
        "object": "chat.completion",
        "created": int(job.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer_text(job)},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def event_stream(job: Job, model: str, include_usage: bool) -> bytes:
    """The answer as server-sent events: one chunk with the whole text, the usage if asked, [DONE]."""
    whole = completion(job, model)
    head = {"id": whole["id"], "object": "chat.completion.chunk", "created": whole["created"], "model": model}
    chunks = [
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": whole["choices"][0]["message"]["content"]},
                    "finish_reason": whole["choices"][0]["finish_reason"],
                    "logprobs": None,
                }
            ],
        }
    ]
    if include_usage:
        chunks.append({**head, "choices": [], "usage": whole["usage"]})
    lines = [f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


# -- the views --------------------------------------------------------------------------------------


class OpenAiErrorsMixin:
    """Errors in OpenAI's shape, whatever raised them (authentication, parsing, ours)."""

    def handle_exception(self, exc):
        if isinstance(exc, exceptions.NotAuthenticated):
            exc = exceptions.NotAuthenticated(
                "Send your ocrdash API token as 'Authorization: Bearer <key>' (make one on your profile page, "
                "/profile/)."
            )
        elif isinstance(exc, exceptions.UnsupportedMediaType):
            exc = OpenAiError("Send the request as JSON (Content-Type: application/json).", None,
                              status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        elif isinstance(exc, exceptions.ParseError):
            exc = OpenAiError(f"The body is not valid JSON ({exc.detail}).")
        response = super().handle_exception(exc)
        body = response.data if isinstance(response.data, dict) else {}
        response.data = {
            "error": {
                "message": body.get("error", "The request failed."),
                "type": ERROR_TYPES.get(response.status_code, "invalid_request_error"),
                "param": body.get("param"),
                "code": body.get("code"),
            }
        }
        return response


OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
_CONTENT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["image_url", "text"]},
        "image_url": {"type": "object", "properties": {"url": {"type": "string"}},
                      "description": "The page: data:image/png;base64,…"},
        "text": {"type": "string", "description": f"{IMAGE_PLACEHOLDER} and one of dots.ocr's prompts."},
    },
}
CHAT_REQUEST = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {"type": "string", "description": "Any name; echoed back."},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": ["user", "system"]},
                    "content": {"type": "array", "items": _CONTENT_PART},
                },
            },
        },
        "max_tokens": {"type": "integer", "minimum": 1, "description": "Recorded, not applied."},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "description": "Recorded, not applied."},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "Recorded, not applied."},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "description": "Recorded, not applied."},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    },
}
CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                    },
                    "finish_reason": {"type": "string", "enum": ["stop", "length"]},
                    "logprobs": {"type": "object", "nullable": True},
                },
            },
        },
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    },
}
ERRORS = {
    code: OpenApiResponse(OPENAI_ERROR, description=words)
    for code, words in {
        400: "The request names something wrong (the message says what).",
        401: "No token, or an unknown or revoked one.",
        409: "Someone cancelled the job meanwhile.",
        413: "The image is over the size limit.",
        415: "The body is not JSON.",
        502: "The job failed; the message says why.",
        504: "The job did not end in time; it was cancelled.",
    }.items()
}


class ChatCompletionsView(OpenAiErrorsMixin, AsyncAPIView):
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="chat_completions",
        summary="OCR one page, OpenAI chat-completion style (what a dots.ocr client sends to vLLM)",
        description=__doc__,
        request={"application/json": CHAT_REQUEST},
        responses={
            (200, "application/json"): OpenApiResponse(CHAT_COMPLETION, description="stream false"),
            (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR,
                                                        description="stream true: one chunk, then [DONE]"),
            **ERRORS,
        },
        tags=["openai"],
    )
    async def post(self, request):
        limit = settings.MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > limit:
            raise OpenAiError(f"The request is over the limit of {human_bytes(limit)}.", None,
                              status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "too_large")
        asked = await sync(lambda: parse_request(request.data))()  # a page's JSON can be tens of MB
        job = await sync(make_job)(request.user, request.auth, asked)
        timeout = settings.CHAT_COMPLETION_TIMEOUT
        await wait_until_ended(job.pk, timeout)
        job = await sync(_reload)(job.pk)
        page = reverse("job-detail", args=[job.pk])
        if not job.ended:
            job = await sync(_cancel_after_timeout)(job, request.user)
            if not job.ended or job.state == jobstate.CANCELLED:
                raise OpenAiError(
                    f"Job {job.pk} did not end within {timeout} s (the queue is long or the page is slow), so it "
                    f"was cancelled. Upload through /api/v1/jobs to wait longer.",
                    None, status.HTTP_504_GATEWAY_TIMEOUT, "timeout",
                )
        if job.state == jobstate.FAILED:
            raise OpenAiError(f"Job {job.pk} failed: {job.message} ({page})", None, status.HTTP_502_BAD_GATEWAY,
                              "job_failed")
        if job.state == jobstate.CANCELLED:
            raise OpenAiError(f"Job {job.pk} was cancelled: {job.message} ({page})", None, status.HTTP_409_CONFLICT,
                              "job_cancelled")
        if asked["stream"]:
            response = HttpResponse(event_stream(job, asked["model"], asked["include_usage"]),
                                    content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
        else:
            response = Response(completion(job, asked["model"]))
        response["X-Ocrdash-Job"] = request.build_absolute_uri(page)
        return response


class ModelsView(OpenAiErrorsMixin, APIView):
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="models",
        summary="The models this server answers for (OpenAI style)",
        responses={
            200: OpenApiResponse(
                {
                    "type": "object",
                    "required": ["object", "data"],
                    "properties": {
                        "object": {"type": "string", "enum": ["list"]},
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "object": {"type": "string"},
                                    "created": {"type": "integer"},
                                    "owned_by": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            ),
            401: ERRORS[401],
        },
        tags=["openai"],
    )
    def get(self, request):
        configured = taskchoice.configured_model()
        return Response(
            {
                "object": "list",
                # The configured model first (it answers every request), then the rest of the catalog.
                "data": [
                    {"id": m.name, "object": "model", "created": MODEL_CREATED, "owned_by": "ocrdash", "root": m.repo,
                     "tasks": list(m.tasks)}
                    for m in sorted(catalog.MODELS, key=lambda m: m is not configured)
                ],
            }
        )


class NoSuchEndpointView(OpenAiErrorsMixin, APIView):
    authentication_classes = [ApiTokenAuthentication]

    @extend_schema(exclude=True)
    def get(self, request, rest: str = ""):
        raise OpenAiError(f"ocrdash answers /v1/chat/completions and /v1/models only, not {request.path}.", None,
                          status.HTTP_404_NOT_FOUND, "not_found")

    post = put = patch = delete = get
