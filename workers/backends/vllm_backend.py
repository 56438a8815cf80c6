"""dots.ocr served by vLLM's OpenAI-compatible server.

Two ways to run it:

- **external**: ``plan["vllm_url"]`` names a server someone else runs (``OCRDASH_VLLM_URL``).
  ocrdash only talks to it: ``load()`` waits for ``/health`` and checks ``/v1/models``.
- **managed**: no URL. ocrdash starts the ``vllm/vllm-openai`` container through the Docker SDK
  with the plan's flags, waits for ``/health`` while it reports the loading progress and the log
  tail, and stops and removes the container in ``unload()``. Every container it starts carries
  the labels ``ocrdash.role=vllm`` and ``ocrdash.managed=true``; nothing without them is ever
  stopped. ``ocrdash.config=<sha256 of the launch>`` lets a worker that restarted adopt a
  container that is still running with the same launch instead of loading the model again.

Requests follow dots.ocr's own client (``dots_ocr/model/inference.py``): one user message with
the page as a PNG data URL and the text ``<|img|><|imgpad|><|endofimg|>{prompt}``, temperature
0.1, top_p 0.9, ``max_completion_tokens`` from the plan. They are streamed (server-sent events)
so that a cancelled job closes the connection: vLLM aborts a request whose client went away
(``vllm/entrypoints/utils.py`` ``with_cancellation`` while the request is prepared;
``vllm/v1/engine/async_llm.py`` ``AsyncLLM.generate`` calls ``abort()`` on
``CancelledError``/``GeneratorExit`` while it streams), which gives the GPU back at once.

Plan keys read (all optional unless said):

=========================== ============================================================
``vllm_url``                external server (base URL, with or without ``/v1``)
``vllm_api_key``            bearer token for it
``vllm_model_name``         served model name (default ``dots.ocr``)
``vllm_timeout``            seconds without a byte from the server before a request fails (600)
``vllm_health_timeout``     external: seconds ``load()`` waits for ``/health`` (30)
``vllm_start_timeout``      managed: seconds to wait for a started container (1800)
``vllm_poll_seconds``       how often health and the container are checked (1.0)
``vllm_image``              container image (default ``VLLM_IMAGE``)
``vllm_port``               host port to publish on 127.0.0.1 (default: a free one)
``vllm_shm_size``           container /dev/shm (``2g``)
``vllm_stop_timeout``       seconds ``stop()`` waits before it kills (30)
``vllm_pull``               pull the image when it is missing (True)
``model``                   hub id or local folder (default ``rednote-hilab/dots.ocr``)
``revision``                managed, hub id: the pinned 40-hex commit (required; also read
                            as ``model_revision``)
``cache_dir``               host folder mounted as the container's ``/root/.cache/huggingface``
``allow_download``          False sets ``HF_HUB_OFFLINE=1`` in the container
``hf_token``                passed as ``HF_TOKEN``
``device_index``            the GPU the container gets (0)
``vllm_args``               the launch flags (``Plan.vllm_args()``; ``Plan.as_json()`` has them);
                            without it they are built from ``gpu_memory_utilization``,
                            ``max_model_len``, ``max_num_seqs``, ``max_num_batched_tokens``,
                            ``dtype``, ``quantization``, ``enforce_eager``, ``max_pixels`` and
                            ``mm_processor_kwargs``
``max_pixels``              largest image sent (also the processor's limit)
``max_new_tokens``          the answer budget (``max_completion_tokens``)
``estimated_bytes``         what ``memory_estimate()`` reports for a managed server
=========================== ============================================================

Grounding (mode ``grounding``) needs a box: ``ocr(..., bbox=[x1, y1, x2, y2])`` in the pixels of
the image given to ``ocr()`` (as the transformers backend takes it), scaled here to the image sent;
or ``sent_bbox=[...]`` already in the pixels of the image the model is sent
(``fit_for_model(image, max_pixels)``), put in the prompt as is. ``details["bbox_sent"]`` is the box
the model was asked about.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import io
import json
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from PIL import Image

from core.backends import VLLM
from core.containers import ROLE_LABEL, ROLE_VLLM
from core.dots.prompts import GROUNDING, IMAGE_PLACEHOLDER, MODES, prompt_for
from core.dots.resize import MAX_PIXELS, MIN_PIXELS, fit_for_model, image_tokens
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, ProgressCallback
from workers.backends.base import OcrBackend

log = logging.getLogger(__name__)

# The release dots.ocr's README names ("Since vLLM version 0.11.0, Dots OCR has been officially
# integrated into vLLM … e.g. vllm/vllm-openai:v0.11.0"): the model class is in vLLM itself, so no
# entrypoint patching; its V1 engine checks free memory at start as the planner assumes; and it
# ships a transformers 4.x, which dots.ocr's remote processor code needs (5.x breaks it).
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_MODEL = "rednote-hilab/dots.ocr"
SERVED_MODEL_NAME = "dots.ocr"
CONTAINER_PORT = 8000
CONTAINER_HF_CACHE = "/root/.cache/huggingface"
CONTAINER_MODEL_DIR = "/model"

MANAGED_LABEL = "ocrdash.managed"
CONFIG_LABEL = "ocrdash.config"
PORT_LABEL = "ocrdash.port"

# dots.ocr's sampling (dots_ocr/model/inference.py).
TEMPERATURE = 0.1
TOP_P = 0.9
# Room for the chat template and the longest prompt (the planner's prompt budget).
PROMPT_TOKEN_BUDGET = 512

DEFAULT_TIMEOUT = 600.0
DEFAULT_HEALTH_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 1800.0
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_STOP_TIMEOUT = 30
LOG_TAIL_LINES = 20

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHARDS_RE = re.compile(r"Loading safetensors checkpoint shards:\s*(\d+)%\s*Completed\s*\|\s*(\d+)/(\d+)")
# "(EngineCore_DP0 pid=253) INFO 10-09 21:14:07 [core.py:1100] " and the like.
_LOG_PREFIX_RE = re.compile(
    r"^(?:\([\w\s-]+pid=\d+\)\s*)?(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+[\d:.]+\s+(?:\[[^\]]*\]\s*)?)?"
)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


# -- the HTTP client -----------------------------------------------------------------------------


class VllmServerError(BackendError):
    """The server failed a request; `status` is the HTTP status (None without one)."""

    def __init__(self, message: str, *, url: str, status: int | None = None, out_of_memory: bool = False):
        super().__init__(message)
        self.url = url
        self.status = status
        self.out_of_memory = out_of_memory


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(body: str) -> str:
    """The message of a vLLM/OpenAI error body ({"error": {"message"}} or {"message"}), else a snippet."""
    try:
        data = json.loads(body)
    except ValueError:
        return _snippet(body) or "no details"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if data.get("message"):
            return str(data["message"])
        if data.get("detail"):
            return str(data["detail"])
    return _snippet(body) or "no details"


def png_data_url(image: Image.Image) -> str:
    """The image as dots.ocr's client sends it: ``data:image/png;base64,…``."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(image: Image.Image, prompt: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png_data_url(image)}},
                # Without the spelled-out placeholder, vLLM's chat template puts a newline after the image.
                {"type": "text", "text": f"{IMAGE_PLACEHOLDER}{prompt}"},
            ],
        }
    ]


@dataclass
class ChatAnswer:
    text: str
    usage: dict[str, Any]
    finish_reason: str | None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class _Stream:
    """What the reading thread shares with the caller of chat()."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.response: requests.Response | None = None
        self.cancelled = False
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()

    def abort(self) -> None:
        """Close the connection now: the server sees the client go and aborts the request."""
        with self.lock:
            self.cancelled = True
            response = self.response
        if response is not None:
            _shutdown(response)


def _shutdown(response: requests.Response) -> None:
    # shutdown() sends the FIN at once and wakes the thread blocked in recv(); close() alone would
    # wait for that thread to return.
    try:
        conn = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    except Exception as exc:  # the attributes above are urllib3's; stay safe if they move
        log.debug("could not shut the vLLM connection down: %s", exc)
    try:
        response.close()
    except Exception as exc:
        log.debug("closing the vLLM response: %s", exc)


class VllmClient:
    """A small client of vLLM's OpenAI-compatible server, with errors worded for the user."""

    def __init__(
        self,
        base_url: str,
        model_name: str = SERVED_MODEL_NAME,
        timeout: float = DEFAULT_TIMEOUT,
        api_key: str | None = None,
        *,
        poll_seconds: float = 0.1,
    ):
        url = base_url.strip().rstrip("/")
        if url.endswith("/v1"):
            url = url[: -len("/v1")]
        if not re.match(r"^https?://", url):
            raise BackendError(f"The vLLM server address {base_url!r} must start with http:// or https://.")
        self.base_url = url
        self.model_name = model_name
        self.timeout = float(timeout)
        self.api_key = api_key
        self.poll_seconds = poll_seconds
        #: max_model_len the server reported in /v1/models, when it did.
        self.max_model_len: int | None = None

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _connect_timeout(self) -> float:
        return min(10.0, self.timeout)

    def _unreachable(self, exc: Exception) -> VllmServerError:
        if isinstance(exc, (requests.Timeout, socket.timeout)):
            return VllmServerError(
                f"The vLLM server at {self.base_url} did not answer within {self.timeout:g} s. It may be "
                "overloaded, still loading, or stuck; check its log.",
                url=self.base_url,
            )
        reason = _reason(exc)
        return VllmServerError(
            f"The vLLM server at {self.base_url} is not reachable ({reason}). Check that it is running "
            "and that this address is right.",
            url=self.base_url,
        )

    def _http_error(self, status: int, body: str) -> VllmServerError:
        message = _error_message(body)
        oom = "out of memory" in message.lower()
        if status == 401 or status == 403:
            text = (
                f"The vLLM server at {self.base_url} refused the API key (HTTP {status}): {message}. "
                "Set the key the server was started with."
            )
        elif status == 404:
            text = (
                f"The vLLM server at {self.base_url} answered HTTP 404: {message}. It may serve another "
                f"model than {self.model_name!r}, or not be a vLLM server."
            )
        elif 400 <= status < 500:
            text = f"The vLLM server at {self.base_url} refused the request (HTTP {status}): {message}"
        else:
            text = f"The vLLM server at {self.base_url} failed (HTTP {status}): {message}"
        return VllmServerError(text, url=self.base_url, status=status, out_of_memory=oom)

    def _garbage(self, what: str, sample: str = "") -> VllmServerError:
        tail = f" (it sent: {_snippet(sample)})" if sample else ""
        return VllmServerError(
            f"The vLLM server at {self.base_url} answered {what}{tail}. Is this address an OpenAI-compatible "
            "vLLM server?",
            url=self.base_url,
        )

    # -- endpoints -------------------------------------------------------------------------------

    def health(self) -> bool:
        """True when ``/health`` answers 200 (vLLM: the engine is up)."""
        try:
            r = requests.get(f"{self.base_url}/health", headers=self._headers, timeout=(2.0, 5.0))
        except requests.RequestException:
            return False
        return r.status_code == 200

    def health_reason(self) -> str:
        """Why ``/health`` is not OK, in words ("" when it is)."""
        try:
            r = requests.get(f"{self.base_url}/health", headers=self._headers, timeout=(2.0, 5.0))
        except requests.RequestException as exc:
            return _reason(exc)
        if r.status_code == 200:
            return ""
        return f"HTTP {r.status_code}: {_error_message(r.text)}"

    def models(self) -> list[dict[str, Any]]:
        """The ``data`` of ``/v1/models``."""
        try:
            r = requests.get(
                f"{self.base_url}/v1/models",
                headers=self._headers,
                timeout=(self._connect_timeout(), self.timeout),
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from exc
        if r.status_code != 200:
            raise self._http_error(r.status_code, r.text)
        try:
            data = r.json()
        except ValueError:
            raise self._garbage("/v1/models with something that is not JSON", r.text) from None
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise self._garbage("/v1/models without a model list", r.text)
        for item in items:
            if isinstance(item, dict) and item.get("id") == self.model_name and item.get("max_model_len"):
                self.max_model_len = int(item["max_model_len"])
        return [i for i in items if isinstance(i, dict)]

    def request_body(
        self,
        image: Image.Image,
        prompt: str,
        max_tokens: int,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        stream: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(image, prompt),
            "max_completion_tokens": int(max_tokens),
            "temperature": temperature,
            "top_p": top_p,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def chat(
        self,
        image: Image.Image,
        prompt: str,
        max_tokens: int,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        cancel: CancelCheck | None = None,
        *,
        stream: bool = True,
    ) -> tuple[str, dict[str, Any]]:
        """The model's answer and the usage; ``usage["finish_reason"]`` and ``usage["truncated"]`` say
        whether it stopped by itself or hit ``max_tokens``."""
        answer = self.complete(image, prompt, max_tokens, temperature, top_p, cancel, stream=stream)
        usage = dict(answer.usage)
        usage["finish_reason"] = answer.finish_reason
        usage["truncated"] = answer.truncated
        return answer.text, usage

    def complete(
        self,
        image: Image.Image,
        prompt: str,
        max_tokens: int,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        cancel: CancelCheck | None = None,
        *,
        stream: bool = True,
    ) -> ChatAnswer:
        body = self.request_body(image, prompt, max_tokens, temperature, top_p, stream=stream)
        if cancel is not None and cancel():
            raise JobCancelled()
        state = _Stream()
        reader = threading.Thread(
            target=self._read, args=(body, state, stream), name="vllm-request", daemon=True
        )
        reader.start()
        events: list[Any] = []
        raw_sample: list[str] = []
        while True:
            if cancel is not None and cancel():
                state.abort()
                raise JobCancelled()
            try:
                kind, value = state.items.get(timeout=self.poll_seconds)
            except queue.Empty:
                continue
            if kind == "error":
                raise value
            if kind == "json":  # a whole non-streamed answer
                return self._parse_whole(value)
            if kind == "event":
                events.append(value)
            elif kind == "raw":
                raw_sample.append(value)
            elif kind == "end":
                return self._parse_events(events, "".join(raw_sample))

    # -- reading (in a thread, so that cancel() is polled while it blocks) -----------------------

    def _read(self, body: dict[str, Any], state: _Stream, stream: bool) -> None:
        put = state.items.put
        response = None
        try:
            response = requests.post(
                f"{self.base_url}/v1/chat/completions",
                json=body,
                headers=self._headers,
                stream=stream,
                timeout=(self._connect_timeout(), self.timeout),
            )
            with state.lock:
                state.response = response
                cancelled = state.cancelled
            if cancelled:
                return
            if response.status_code != 200:
                put(("error", self._http_error(response.status_code, response.text)))
                return
            if not stream:
                try:
                    put(("json", response.json()))
                except ValueError:
                    put(("error", self._garbage("with something that is not JSON", response.text)))
                return
            self._read_events(response, state)
            put(("end", None))
        except requests.RequestException as exc:
            if not state.cancelled:
                put(("error", self._unreachable(exc)))
        except Exception as exc:  # never leave the caller waiting
            if not state.cancelled:
                put(
                    (
                        "error",
                        VllmServerError(
                            f"Reading the answer of the vLLM server at {self.base_url} failed: {exc}",
                            url=self.base_url,
                        ),
                    )
                )
        finally:
            if response is not None:
                if state.cancelled:
                    _shutdown(response)
                else:
                    response.close()

    def _read_events(self, response: requests.Response, state: _Stream) -> None:
        """Server-sent events: ``data:`` lines, an event ends at a blank line; ``[DONE]`` ends the stream."""
        data: list[str] = []
        raw_bytes = 0
        for line in response.iter_lines(chunk_size=512, decode_unicode=False):
            if state.cancelled:
                return
            text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
            if text.startswith("data:"):
                data.append(text[5:].lstrip(" "))
                continue
            if text == "":
                if data and self._dispatch("\n".join(data), state):
                    return
                data = []
                continue
            if text.startswith((":", "event:", "id:", "retry:")):
                continue
            if raw_bytes < 400:  # not SSE at all: keep a sample for the error
                state.items.put(("raw", text[: 400 - raw_bytes] + "\n"))
                raw_bytes += len(text) + 1
        if data:
            self._dispatch("\n".join(data), state)

    def _dispatch(self, payload: str, state: _Stream) -> bool:
        """Queue one event; True at ``[DONE]``."""
        if payload.strip() == "[DONE]":
            return True
        try:
            state.items.put(("event", json.loads(payload)))
        except ValueError:
            state.items.put(("event", _NotJson(payload)))
        return False

    # -- parsing ---------------------------------------------------------------------------------

    def _check_error_object(self, data: Any) -> None:
        if isinstance(data, dict) and "error" in data and not data.get("choices"):
            message = _error_message(json.dumps(data))
            raise VllmServerError(
                f"The vLLM server at {self.base_url} failed while answering: {message}",
                url=self.base_url,
                out_of_memory="out of memory" in message.lower(),
            )

    def _parse_whole(self, data: Any) -> ChatAnswer:
        if not isinstance(data, dict):
            raise self._garbage("with JSON that is not a chat completion", json.dumps(data))
        self._check_error_object(data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self._garbage("without any choices", json.dumps(data))
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise self._garbage("without a message text", json.dumps(data))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return self._finish(content, usage, choice.get("finish_reason"))

    def _parse_events(self, events: list[Any], raw: str) -> ChatAnswer:
        if not events:
            raise self._garbage(
                "with something that is not an OpenAI chat stream" if raw else "with nothing", raw
            )
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish_reason = None
        saw_choice = False
        for event in events:
            if isinstance(event, _NotJson):
                raise self._garbage("with a stream event that is not JSON", event.text)
            if not isinstance(event, dict):
                raise self._garbage("with a stream event that is not a chat chunk", json.dumps(event))
            self._check_error_object(event)
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                saw_choice = True
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(piece, str):
                    parts.append(piece)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        if not saw_choice:
            raise self._garbage("without any choices", json.dumps(events[0]))
        return self._finish("".join(parts), usage, finish_reason)

    def _finish(self, text: str, usage: dict[str, Any], finish_reason: str | None) -> ChatAnswer:
        if not text.strip():
            # An empty answer is garbage, unless the model itself stopped at once (a blank page): then
            # vLLM counts the end-of-sequence token in the usage.
            generated = usage.get("completion_tokens") if isinstance(usage, dict) else None
            if not (finish_reason == "stop" and isinstance(generated, int) and generated >= 1):
                raise self._garbage(f"with an empty text (finish_reason {finish_reason!r})")
        return ChatAnswer(text=text, usage=dict(usage or {}), finish_reason=finish_reason)


@dataclass
class _NotJson:
    text: str


def _reason(exc: BaseException) -> str:
    """'connection refused', 'name not known', … from a requests exception chain."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ConnectionRefusedError):
            return "connection refused"
        if isinstance(node, socket.gaierror):
            return "the host name cannot be resolved"
        text = str(node)
        if "Connection refused" in text:
            return "connection refused"
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "the host name cannot be resolved"
        if "timed out" in text.lower():
            return "the connection timed out"
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            return "the server closed the connection"
        following = node.__cause__ or node.__context__ or getattr(node, "reason", None)
        if following is None and node.args and isinstance(node.args[0], BaseException):
            following = node.args[0]
        node = following if isinstance(following, BaseException) else None
    return _snippet(str(exc), 160) or type(exc).__name__


# -- startup errors ------------------------------------------------------------------------------

# (pattern in the log, what it means for the person looking at the dashboard)
_STARTUP_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"Free memory on device.*less than desired GPU memory utilization", re.S),
        "Another program took GPU memory after the plan was made: vLLM found less free memory than the "
        "planned share of the card. Free some GPU memory (see the GPU page) and start again; the planner "
        "then picks a configuration for what is free now.",
    ),
    (
        re.compile(
            r"larger than the maximum number of tokens that can be stored in KV cache"
            r"|To serve at least one request with the models's max seq len"
            r"|No available memory for the cache blocks",
            re.I,
        ),
        "The memory left for vLLM's KV cache cannot hold one page and its answer (max_model_len). "
        "Lower the largest image size or the answer budget, or free GPU memory.",
    ),
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory", re.I),
        "The GPU ran out of memory while vLLM loaded the model or measured its needs (another program "
        "may have grown meanwhile). A smaller image size or another backend fits in less memory.",
    ),
    (
        re.compile(r"Bfloat16 is only supported on GPUs with compute capability", re.I),
        "This GPU cannot run bfloat16; the plan must use --dtype half (float16).",
    ),
    (
        re.compile(
            r"No CUDA GPUs are available|Failed to infer device type"
            r"|CUDA driver version is insufficient|Found no NVIDIA driver",
            re.I,
        ),
        "The container does not see a usable NVIDIA GPU: check the driver and the NVIDIA Container Toolkit "
        "on the host.",
    ),
    (
        re.compile(r"RevisionNotFoundError|Invalid rev id|revision .* not found", re.I),
        "The pinned model revision does not exist on the Hugging Face hub; check the revision setting.",
    ),
    (
        re.compile(r"RepositoryNotFoundError|Repository Not Found|GatedRepoError|401 Client Error", re.I),
        "The model repository cannot be read from the Hugging Face hub (wrong name, or it needs a token).",
    ),
    (
        re.compile(
            r"LocalEntryNotFoundError|We couldn't connect to 'https://huggingface.co'"
            r"|offline mode is enabled|Cannot find an appropriate cached snapshot",
            re.I,
        ),
        "The model files are not in the cache and could not be downloaded. Get them with "
        "`python manage.py fetch_model` (on a machine with internet), into the cache folder the "
        "container mounts.",
    ),
    (
        re.compile(r"unrecognized arguments|error: argument", re.I),
        "This vLLM image does not understand one of the launch flags; use the pinned image "
        f"{VLLM_IMAGE} or a version that has the flags.",
    ),
)


def explain_startup_failure(log_text: str) -> str | None:
    """A plain explanation for the known ways a vLLM start fails, from its log; None if unknown."""
    for pattern, meaning in _STARTUP_ERRORS:
        if pattern.search(log_text):
            return meaning
    return None


def _clean_line(line: str) -> str:
    return _ANSI_RE.sub("", line).strip()


def _short_line(line: str) -> str:
    """A log line without the process/level/time prefix, for the dashboard."""
    return _LOG_PREFIX_RE.sub("", _clean_line(line), count=1).strip()


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """(done, total, message) for the loading lines worth a progress bar, else None."""
    m = _SHARDS_RE.search(line)
    if m:
        done, total = int(m.group(2)), int(m.group(3))
        return done, total, f"Loading the model weights: {done}/{total} checkpoint shards"
    return None


# -- Docker --------------------------------------------------------------------------------------


def docker_unavailable(exc: BaseException) -> BackendError:
    return BackendError(
        f"Docker is not available here ({_snippet(str(exc) or type(exc).__name__, 300)}): set "
        "OCRDASH_VLLM_URL to an external vLLM server or give the worker access to the Docker socket"
    )


def _labels_filter(config_hash: str | None = None) -> list[str]:
    labels = [f"{ROLE_LABEL}={ROLE_VLLM}", f"{MANAGED_LABEL}=true"]
    if config_hash:
        labels.append(f"{CONFIG_LABEL}={config_hash}")
    return labels


def is_managed(container: Any) -> bool:
    labels = getattr(container, "labels", None) or {}
    return labels.get(ROLE_LABEL) == ROLE_VLLM and labels.get(MANAGED_LABEL) == "true"


def find_managed_container(client: Any, config_hash: str | None = None) -> Any | None:
    """A running vLLM container that ocrdash started (with this launch, when `config_hash` is given)."""
    for container in client.containers.list(filters={"label": _labels_filter(config_hash)}):
        if is_managed(container) and getattr(container, "status", "running") == "running":
            return container
    return None


def stop_managed_containers(client: Any, keep: Any = None, timeout: int = DEFAULT_STOP_TIMEOUT) -> list[str]:
    """Stop and remove every vLLM container ocrdash started (running or not), except `keep`.
    Containers without both of ocrdash's labels are never touched. Returns the names removed."""
    import docker.errors

    keep_id = getattr(keep, "id", None)
    removed = []
    for container in client.containers.list(all=True, filters={"label": _labels_filter()}):
        if not is_managed(container) or container.id == keep_id:
            continue
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=timeout)
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            log.warning("could not remove the leftover vLLM container %s: %s", container.name, exc)
    return removed


def _has_flag(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def launch_flags(plan: dict[str, Any]) -> list[str]:
    """The memory flags of the plan: its ``vllm_args`` when it has them, else built from its keys."""
    args = plan.get("vllm_args")
    if args:
        return [str(a) for a in args]
    out: list[str] = []

    def add(flag: str, key: str) -> None:
        if plan.get(key) is not None:
            out.extend([flag, str(plan[key])])

    add("--gpu-memory-utilization", "gpu_memory_utilization")
    add("--max-model-len", "max_model_len")
    add("--max-num-seqs", "max_num_seqs")
    add("--max-num-batched-tokens", "max_num_batched_tokens")
    add("--dtype", "dtype")
    out += ["--limit-mm-per-prompt", json.dumps({"image": 1})]
    mm = plan.get("mm_processor_kwargs")
    if not mm and plan.get("max_pixels"):
        mm = {"min_pixels": int(plan.get("min_pixels") or MIN_PIXELS), "max_pixels": int(plan["max_pixels"])}
    if mm:
        out += ["--mm-processor-kwargs", json.dumps(mm)]
    if plan.get("quantization"):
        out += ["--quantization", str(plan["quantization"])]
    if plan.get("enforce_eager"):
        out.append("--enforce-eager")
    return out


@dataclass(frozen=True)
class Launch:
    """Everything that decides what a managed container runs; its hash names the configuration."""

    image: str
    command: list[str]
    device_index: int
    cache_dir: str
    model_dir: str | None  # a local model folder mounted read-only, else None
    environment: dict[str, str]

    @property
    def config_hash(self) -> str:
        data = {
            "image": self.image,
            "command": self.command,
            "device": self.device_index,
            "cache_dir": self.cache_dir,
            "model_dir": self.model_dir,
            "environment": sorted(k for k in self.environment if k != "HF_TOKEN"),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_launch(plan: dict[str, Any]) -> Launch:
    """The container launch for a managed server (raises BackendError for a plan it cannot run)."""
    model = str(plan.get("model") or DEFAULT_MODEL)
    revision = plan.get("revision") or plan.get("model_revision")
    model_dir = None
    if os.path.isdir(model):
        model_dir = os.path.abspath(model)
        model_arg = CONTAINER_MODEL_DIR
    else:
        if not revision:
            raise BackendError(
                f"No revision is pinned for {model}. dots.ocr runs its repository's own code "
                "(--trust-remote-code), so ocrdash starts it only at a fixed commit: set the model revision "
                "(a 40-character commit hash) in the backend settings."
            )
        if not _COMMIT_RE.match(str(revision)):
            raise BackendError(
                f"The model revision {revision!r} is not a commit hash. A branch or tag can change under "
                "you while --trust-remote-code runs its code: pin the 40-character commit hash."
            )
        model_arg = model
    cache_dir = os.path.abspath(os.path.expanduser(str(plan.get("cache_dir") or "~/.cache/huggingface")))
    flags = launch_flags(plan)
    # vLLM's `serve` takes the model as its first argument (`--model` is deprecated there).
    command = [model_arg]
    if model_dir is None:
        command += ["--revision", str(revision)]
    command += [
        "--host", "0.0.0.0",
        "--port", str(CONTAINER_PORT),
        "--served-model-name", str(plan.get("vllm_model_name") or SERVED_MODEL_NAME),
        "--trust-remote-code",
        "--chat-template-content-format", "string",
    ]  # fmt: skip
    command += flags
    if not _has_flag(command, "--mm-processor-kwargs") and plan.get("max_pixels"):
        command += ["--mm-processor-kwargs", json.dumps({"max_pixels": int(plan["max_pixels"])})]
    environment = {}
    if plan.get("allow_download") is False:
        environment["HF_HUB_OFFLINE"] = "1"
    if plan.get("hf_token"):
        environment["HF_TOKEN"] = str(plan["hf_token"])
    return Launch(
        image=str(plan.get("vllm_image") or VLLM_IMAGE),
        command=command,
        device_index=int(plan.get("device_index") or 0),
        cache_dir=cache_dir,
        model_dir=model_dir,
        environment=environment,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LogFollower:
    """Reads a container's log stream in a thread and keeps the last lines."""

    def __init__(self, container: Any, tail: int | str = "all", keep: int = 200):
        self.lines: deque[str] = deque(maxlen=keep)
        self.lock = threading.Lock()
        self.count = 0
        self._stream = container.logs(stream=True, follow=True, tail=tail)
        self._thread = threading.Thread(target=self._run, name="vllm-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        try:
            for chunk in self._stream:
                text = decoder.decode(chunk) if isinstance(chunk, bytes) else str(chunk)
                pending += text
                # tqdm redraws with "\r"; Docker keeps them, so both end a line here.
                *complete, pending = re.split(r"\r\n|\r|\n", pending)
                self._add(complete)
        except Exception as exc:  # the stream ends with the container, or when closed
            log.debug("vLLM log stream ended: %s", exc)
        self._add([pending])

    def _add(self, lines: Iterable[str]) -> None:
        with self.lock:
            for line in lines:
                line = _clean_line(line)
                if line:
                    self.lines.append(line)
                    self.count += 1

    def snapshot(self) -> tuple[int, list[str]]:
        with self.lock:
            return self.count, list(self.lines)

    def close(self, wait: float = 0.0) -> None:
        try:
            self._stream.close()
        except Exception as exc:
            log.debug("closing the vLLM log stream: %s", exc)
        if wait:
            self._thread.join(wait)


# -- the backend ---------------------------------------------------------------------------------


class VllmBackend(OcrBackend):
    name = VLLM.name

    def __init__(
        self,
        docker_client_factory: Callable[[], Any] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._docker_factory = docker_client_factory or _docker_client
        self._sleep = sleep
        self._clock = clock
        self._client: VllmClient | None = None
        self._plan: dict[str, Any] = {}
        self._docker: Any = None
        self._container: Any = None
        self._launch: Launch | None = None
        self._logs: _LogFollower | None = None
        self._key: tuple[Any, ...] | None = None
        #: The last lines of the managed server's log, for the dashboard.
        self.log_tail: list[str] = []
        #: "external" or "managed" once loaded.
        self.mode: str | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> VllmClient | None:
        return self._client

    @property
    def container(self) -> Any:
        return self._container

    def memory_estimate(self) -> int:
        if self.mode == "managed":
            return int(self._plan.get("estimated_bytes") or 0)
        return 0

    # -- loading ---------------------------------------------------------------------------------

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        plan = _plan_dict(plan)
        report = progress or (lambda done, total, message: None)
        url = (plan.get("vllm_url") or "").strip()
        if url:
            key: tuple[Any, ...] = ("external", url, plan.get("vllm_model_name"))
        else:
            key = ("managed", build_launch(plan).config_hash)
        if self.loaded and key == self._key:
            self._plan = plan
            return
        if self.loaded:
            self.unload()
        if url:
            self._load_external(plan, url, report)
        else:
            self._load_managed(plan, report)
        self._plan = plan
        self._key = key

    def _new_client(self, plan: dict[str, Any], url: str) -> VllmClient:
        return VllmClient(
            url,
            model_name=str(plan.get("vllm_model_name") or SERVED_MODEL_NAME),
            timeout=float(plan.get("vllm_timeout") or DEFAULT_TIMEOUT),
            api_key=plan.get("vllm_api_key") or None,
        )

    def _load_external(self, plan: dict[str, Any], url: str, report: ProgressCallback) -> None:
        client = self._new_client(plan, url)
        wait = float(plan.get("vllm_health_timeout") or DEFAULT_HEALTH_TIMEOUT)
        poll = float(plan.get("vllm_poll_seconds") or DEFAULT_POLL_SECONDS)
        report(0, 0, f"Waiting for the vLLM server at {client.base_url}")
        deadline = self._clock() + wait
        while True:
            reason = client.health_reason()
            if not reason:
                break
            if self._clock() >= deadline:
                raise BackendError(
                    f"The vLLM server at {client.base_url} does not answer ({reason}; waited {wait:g} s for "
                    "/health). Check that it is running and that OCRDASH_VLLM_URL is right, or clear "
                    "OCRDASH_VLLM_URL to let ocrdash start its own server."
                )
            self._sleep(poll)
        self._check_model(client)
        self._client = client
        self.mode = "external"
        report(1, 1, f"Using the vLLM server at {client.base_url}")

    def _check_model(self, client: VllmClient) -> None:
        served = [str(m.get("id")) for m in client.models()]
        if client.model_name in served:
            return
        if len(served) == 1:
            # An external server named the model its own way ("model", the hub id, …).
            log.info("vLLM at %s serves %r, not %r; using it", client.base_url, served[0], client.model_name)
            client.model_name = served[0]
            client.models()  # learn its max_model_len under that name
            return
        raise BackendError(
            f"The vLLM server at {client.base_url} does not serve a model named {client.model_name!r} "
            f"(it serves: {', '.join(served) or 'nothing'}). Set the served model name in the settings."
        )

    def _docker_client(self) -> Any:
        if self._docker is None:
            try:
                self._docker = self._docker_factory()
            except Exception as exc:  # DockerException: no socket, no permission, no daemon; ImportError
                raise docker_unavailable(exc) from exc
        return self._docker

    def _load_managed(self, plan: dict[str, Any], report: ProgressCallback) -> None:
        import docker.errors
        import docker.types

        launch = build_launch(plan)
        client = self._docker_client()
        config_hash = launch.config_hash
        try:
            adopted = find_managed_container(client, config_hash)
            stop_managed_containers(client, keep=adopted, timeout=_stop_timeout(plan))
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc

        if adopted is not None:
            port = _published_port(adopted)
            container = adopted
            report(0, 0, f"Reusing the running vLLM container {adopted.name}")
            tail: int | str = 50
        else:
            self._ensure_image(client, launch.image, plan, report)
            port = int(plan.get("vllm_port") or _free_port())
            os.makedirs(launch.cache_dir, exist_ok=True)
            volumes = {launch.cache_dir: {"bind": CONTAINER_HF_CACHE, "mode": "rw"}}
            if launch.model_dir:
                volumes[launch.model_dir] = {"bind": CONTAINER_MODEL_DIR, "mode": "ro"}
            labels = {
                ROLE_LABEL: ROLE_VLLM,
                MANAGED_LABEL: "true",
                CONFIG_LABEL: config_hash,
                PORT_LABEL: str(port),
            }
            report(0, 0, f"Starting the vLLM container ({launch.image}) on GPU {launch.device_index}")
            try:
                container = client.containers.run(
                    launch.image,
                    command=launch.command,
                    entrypoint=["vllm", "serve"],
                    detach=True,
                    name=f"ocrdash-vllm-{config_hash[:12]}",
                    labels=labels,
                    device_requests=[
                        docker.types.DeviceRequest(
                            device_ids=[str(launch.device_index)], capabilities=[["gpu"]]
                        )
                    ],
                    volumes=volumes,
                    ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
                    shm_size=str(plan.get("vllm_shm_size") or "2g"),
                    environment=launch.environment,
                )
            except docker.errors.ImageNotFound as exc:
                raise BackendError(
                    f"The vLLM image {launch.image} is not on this machine and could not be "
                    f"found: {exc.explanation or exc}"
                ) from exc
            except docker.errors.APIError as exc:
                raise BackendError(_run_error(exc, launch.image)) from exc
            except docker.errors.DockerException as exc:
                raise docker_unavailable(exc) from exc
            tail = "all"

        self._container = container
        self._launch = launch
        self._logs = _LogFollower(container, tail=tail)
        client_http = self._new_client(plan, f"http://127.0.0.1:{port}")
        try:
            self._wait_until_healthy(container, client_http, plan, report)
            self._check_model(client_http)
        except BaseException:
            self._discard_container()
            raise
        self._client = client_http
        self.mode = "managed"
        report(1, 1, f"vLLM is ready ({container.name}, GPU {launch.device_index})")

    def _ensure_image(self, client: Any, image: str, plan: dict[str, Any], report: ProgressCallback) -> None:
        import docker.errors

        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc
        if plan.get("vllm_pull") is False:
            raise BackendError(
                f"The vLLM image {image} is not on this machine. Get it with: docker pull {image}"
            )
        repo, _, tag = image.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = image, "latest"
        report(0, 0, f"Downloading the vLLM image {image} (several GB, once)")
        layers: dict[str, tuple[int, int]] = {}
        last = 0.0
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise BackendError(f"Downloading the vLLM image {image} failed: {event['error']}")
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                now = self._clock()
                if layers and now - last >= 1.0:
                    last = now
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    sizes = f"{done / 1e9:.1f} of {total / 1e9:.1f} GB"
                    report(done, total, f"Downloading the vLLM image {image}: {sizes}")
        except docker.errors.APIError as exc:
            why = exc.explanation or exc
            raise BackendError(f"Downloading the vLLM image {image} failed: {why}") from exc
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc

    def _wait_until_healthy(
        self, container: Any, client: VllmClient, plan: dict[str, Any], report: ProgressCallback
    ) -> None:
        import docker.errors

        assert self._logs is not None
        wait = float(plan.get("vllm_start_timeout") or DEFAULT_START_TIMEOUT)
        poll = float(plan.get("vllm_poll_seconds") or DEFAULT_POLL_SECONDS)
        deadline = self._clock() + wait
        seen = 0
        last_message = ""

        def report_fresh() -> None:
            nonlocal seen, last_message
            count, lines = self._logs.snapshot()
            self.log_tail = lines[-LOG_TAIL_LINES:]
            if count <= seen:
                return
            fresh = lines[-min(count - seen, len(lines)) :]
            seen = count
            # Every line is reported in order: a step of the shards bar as done/total, others as text.
            for line in fresh:
                message = parse_progress(line) or (0, 0, _short_line(line) or line)
                if message[2] != last_message:
                    last_message = message[2]
                    report(*message)

        while True:
            report_fresh()
            if client.health():
                self._sleep(min(poll, 0.1))  # let the log reader hand over what came with readiness
                report_fresh()
                return
            try:
                container.reload()
                status = container.status
            except docker.errors.NotFound:
                raise BackendError(
                    f"The vLLM container {container.name} was removed while it started (by someone else?)."
                ) from None
            except docker.errors.DockerException as exc:
                raise docker_unavailable(exc) from exc
            if status in ("exited", "dead"):
                raise self._startup_failed(container)
            if self._clock() >= deadline:
                tail = "\n".join(self.log_tail)
                raise BackendError(
                    f"vLLM did not become ready within {wait:g} s (container {container.name}). Its last log "
                    f"lines:\n{tail}"
                )
            self._sleep(poll)

    def _startup_failed(self, container: Any) -> BackendError:
        assert self._logs is not None
        self._logs.close(wait=2.0)
        try:
            text = container.logs(stdout=True, stderr=True, tail=200)
            text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
            lines = [_clean_line(x) for x in re.split(r"\r\n|\r|\n", text)]
            lines = [x for x in lines if x]
        except Exception:
            lines = self._logs.snapshot()[1]
        self.log_tail = lines[-LOG_TAIL_LINES:]
        state = (getattr(container, "attrs", None) or {}).get("State") or {}
        code = state.get("ExitCode")
        explanation = explain_startup_failure("\n".join(lines))
        if explanation is None and state.get("OOMKilled"):
            explanation = "The container ran out of host memory (RAM) and was killed."
        head = f"vLLM stopped while starting (container {container.name}, exit code {code})."
        if explanation:
            head += " " + explanation
        return BackendError(head + "\nIts last log lines:\n" + "\n".join(self.log_tail))

    def _discard_container(self) -> None:
        """Stop and remove the managed container (only if it carries our labels)."""
        container, self._container = self._container, None
        if self._logs is not None:
            self._logs.close()
            self._logs = None
        if container is None or not is_managed(container):
            return
        import docker.errors

        try:
            container.reload()
            if container.status in ("running", "restarting", "paused", "created"):
                container.stop(timeout=_stop_timeout(self._plan))
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            log.warning("could not remove the vLLM container %s: %s", getattr(container, "name", "?"), exc)

    def _server_failed(self, exc: VllmServerError) -> VllmServerError:
        """A request failed: when the managed container has stopped, say so, with its log."""
        container = self._container
        if self.mode != "managed" or container is None:
            return exc
        import docker.errors

        try:
            container.reload()
            status = container.status
            text = container.logs(stdout=True, stderr=True, tail=200) if status != "running" else b""
        except docker.errors.NotFound:
            status, text = "removed", b""
        except docker.errors.DockerException:
            return exc
        if status == "running":
            return exc
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
        lines = [x for x in (_clean_line(x) for x in re.split(r"\r\n|\r|\n", text)) if x]
        self.log_tail = lines[-LOG_TAIL_LINES:]
        oom = exc.out_of_memory or bool(re.search(r"out of memory|OutOfMemoryError", text, re.I))
        message = f"The vLLM container {container.name} stopped during this page ({status})."
        if oom:
            message += " The GPU ran out of memory (CUDA out of memory)."
        if self.log_tail:
            message += "\nIts last log lines:\n" + "\n".join(self.log_tail)
        # It is gone: the next load() starts a new one.
        self.unload()
        return VllmServerError(message, url=exc.url, status=exc.status, out_of_memory=oom)

    def unload(self) -> None:
        self._discard_container()
        self._client = None
        self._launch = None
        self._key = None
        self.mode = None

    # -- recognition -----------------------------------------------------------------------------

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        sent_bbox: Sequence[float] | None = None,
    ) -> OcrResult:
        """Read one page. For ``grounding``, `bbox` is the box in the pixels of `image`, or
        `sent_bbox` the box in the pixels of the image sent (after ``fit_for_model``)."""
        if self._client is None:
            raise BackendError("The vLLM backend is not loaded.")
        if mode not in MODES:
            raise BackendError(f"Unknown OCR mode {mode!r}; known: {', '.join(MODES)}.")
        if cancel():
            raise JobCancelled()
        plan = self._plan
        max_pixels = int(plan.get("max_pixels") or MAX_PIXELS)
        try:
            sent, sx, sy = fit_for_model(image, max_pixels=max_pixels)
        except ValueError as exc:
            raise BackendError(f"This page cannot be sent to the model: {exc}.") from exc

        box = None
        given = bbox if bbox is not None else sent_bbox
        if mode != GROUNDING and given is not None:
            raise BackendError(f"The {mode} mode reads the whole page and takes no box.")
        if mode == GROUNDING:
            if given is None or len(given) != 4:
                raise BackendError("Grounding needs a box [x1, y1, x2, y2] to read the text from.")
            if bbox is not None:
                x1, y1, x2, y2 = (float(v) for v in bbox)
                given = [x1 / sx, y1 / sy, x2 / sx, y2 / sy]
            box = [int(round(float(v))) for v in given]
        try:
            prompt = prompt_for(mode, box)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc

        client = self._client
        max_tokens = int(plan.get("max_new_tokens") or 24_000)
        tokens = image_tokens(sent.height, sent.width)
        if client.max_model_len:
            room = client.max_model_len - tokens - PROMPT_TOKEN_BUDGET
            if room < 1:
                raise BackendError(
                    f"The page is too large for the vLLM server at {client.base_url}: {tokens:,} image "
                    f"tokens do not fit its context of {client.max_model_len:,} tokens. Lower the largest "
                    "image size."
                )
            max_tokens = min(max_tokens, room)

        started = time.monotonic()
        try:
            answer = client.complete(sent, prompt, max_tokens, TEMPERATURE, TOP_P, cancel)
        except VllmServerError as exc:
            raise self._server_failed(exc) from exc
        seconds = time.monotonic() - started
        details: dict[str, Any] = {
            "backend": self.name,
            "mode": mode,
            "server": client.base_url,
            "model": client.model_name,
            "image_size_sent": [sent.width, sent.height],
            "scale": [sx, sy],
            "usage": answer.usage,
            "finish_reason": answer.finish_reason,
            "truncated": answer.truncated,
            "max_tokens": max_tokens,
            "seconds": round(seconds, 3),
        }
        if box is not None:
            details["bbox_sent"] = box
        if answer.truncated:
            details["warning"] = (
                f"The answer was cut at {max_tokens:,} tokens (the output budget); the end of the page "
                "may be missing."
            )
        return OcrResult(text=answer.text, raw=answer.text, details=details)


def _plan_dict(plan: Any) -> dict[str, Any]:
    """Accept a dict, or a core.planner.Plan (its as_json() holds every key read here)."""
    if isinstance(plan, dict):
        return dict(plan)
    if hasattr(plan, "as_json"):
        return dict(plan.as_json())
    raise TypeError(f"a plan must be a dict, not {type(plan).__name__}")


def _published_port(container: Any) -> int:
    """The host port of a managed container's server: its label, else what Docker reports."""
    label = (getattr(container, "labels", None) or {}).get(PORT_LABEL)
    if label and str(label).isdigit():
        return int(label)
    ports = ((getattr(container, "attrs", None) or {}).get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{CONTAINER_PORT}/tcp") or []:
        if str(binding.get("HostPort") or "").isdigit():
            return int(binding["HostPort"])
    raise BackendError(f"The running vLLM container {getattr(container, 'name', '?')} publishes no port.")


def _stop_timeout(plan: dict[str, Any]) -> int:
    return int(plan.get("vllm_stop_timeout") or DEFAULT_STOP_TIMEOUT)


def _run_error(exc: Any, image: str) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    low = text.lower()
    if "could not select device driver" in low or "nvidia-container" in low or "unknown runtime" in low:
        return (
            f"Docker cannot give the vLLM container a GPU ({_snippet(text)}). Install the NVIDIA Container "
            "Toolkit on the host and restart Docker, or set OCRDASH_VLLM_URL to an external vLLM server."
        )
    if "port is already allocated" in low or "address already in use" in low:
        return f"The port for the vLLM container is taken ({_snippet(text)}); choose another vLLM port."
    if "conflict" in low and "name" in low:
        return f"A container with the vLLM container's name already exists ({_snippet(text)})."
    return f"Docker could not start the vLLM container from {image}: {_snippet(text, 400)}"
