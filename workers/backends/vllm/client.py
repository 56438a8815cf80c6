"""A small client of vLLM's OpenAI-compatible server, with errors worded for the user.

Requests follow dots.ocr's own client (``dots_ocr/model/inference.py``): one user message with
the page as a PNG data URL and the text ``<|img|><|imgpad|><|endofimg|>{prompt}``, temperature
0.1, top_p 0.9, ``max_completion_tokens`` from the plan. They are streamed (server-sent events)
so that a cancelled job closes the connection: vLLM aborts a request whose client went away
(``vllm/entrypoints/utils.py`` ``with_cancellation`` while the request is prepared;
``vllm/v1/engine/async_llm.py`` ``AsyncLLM.generate`` calls ``abort()`` on
``CancelledError``/``GeneratorExit`` while it streams), which gives the GPU back at once.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

import requests
from PIL import Image

from core.dots.prompts import IMAGE_PLACEHOLDER
from core.loopguard import LoopGuard, Stopped
from core.results import BackendError, CancelCheck, JobCancelled

log = logging.getLogger(__name__)

SERVED_MODEL_NAME = "dots.ocr"
# dots.ocr's sampling (dots_ocr/model/inference.py).
TEMPERATURE = 0.1
TOP_P = 0.9
DEFAULT_TIMEOUT = 600.0


# -- the HTTP client -----------------------------------------------------------------------------


class VllmServerError(BackendError):
    """The server failed a request; `status` is the HTTP status (None without one)."""

    def __init__(self, message: str, *, url: str, status: int | None = None, out_of_memory: bool = False):
        super().__init__(message)
        self.url = url
        self.status = status
        self.out_of_memory = out_of_memory


def snippet(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(body: str) -> str:
    """The message of a vLLM/OpenAI error body ({"error": {"message"}} or {"message"}), else a snippet."""
    try:
        data = json.loads(body)
    except ValueError:
        return snippet(body) or "no details"
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
    return snippet(body) or "no details"


def png_data_url(image: Image.Image) -> str:
    """The image as dots.ocr's client sends it: ``data:image/png;base64,…``."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_messages(image: Image.Image, prompt: str, system: str | None = None) -> list[dict[str, Any]]:
    # Questions go with a system prompt (core.dots.prompts.system_prompt_for), the other tasks without.
    head = [{"role": "system", "content": system}] if system else []
    return head + [
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
    #: Set when the loop guard stopped the answer early (its text is what came before).
    stopped: Stopped | None = None

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
        tail = f" (it sent: {snippet(sample)})" if sample else ""
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
        system: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": chat_messages(image, prompt, system),
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
        guard: LoopGuard | None = None,
        system: str | None = None,
    ) -> ChatAnswer:
        """The answer; with a `guard` (streamed requests), each streamed piece is fed to it and the
        request is aborted once it says stop (repeating output, time limit): the answer then holds
        the text that came before, and `stopped` says why. `system`: the system prompt, if any."""
        body = self.request_body(image, prompt, max_tokens, temperature, top_p, stream=stream, system=system)
        if cancel is not None and cancel():
            raise JobCancelled()
        state = _Stream()
        reader = threading.Thread(target=self._read, args=(body, state, stream), name="vllm-request", daemon=True)
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
                if guard is not None and guard.check_time():
                    return self._stopped(state, events, guard.stopped)
                continue
            if kind == "error":
                raise value
            if kind == "json":  # a whole non-streamed answer
                return self._parse_whole(value)
            if kind == "event":
                events.append(value)
                if guard is not None and guard.feed(_pieces(value)):
                    return self._stopped(state, events, guard.stopped)
            elif kind == "raw":
                raw_sample.append(value)
            elif kind == "end":
                return self._parse_events(events, "".join(raw_sample))

    def _stopped(self, state: _Stream, events: list[Any], stopped: Stopped) -> ChatAnswer:
        """Abort the request (vLLM frees its KV cache at once) and keep what came before."""
        state.abort()
        text = "".join(p for e in events for p in _pieces(e))
        usage = {"completion_tokens": stopped.tokens}
        return ChatAnswer(text=text, usage=usage, finish_reason="stopped", stopped=stopped)

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
            raise self._garbage("with something that is not an OpenAI chat stream" if raw else "with nothing", raw)
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


def _pieces(event: Any) -> list[str]:
    """The text pieces of one stream chunk (vLLM sends one piece per generated token)."""
    if not isinstance(event, dict):
        return []
    choices = event.get("choices")
    out = []
    for choice in choices if isinstance(choices, list) else []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        piece = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(piece, str) and piece:
            out.append(piece)
    return out


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
    return snippet(str(exc), 160) or type(exc).__name__
