"""A real HTTP server that speaks the OpenAI chat API the way vLLM's server does, for dots.ocr.

It listens on 127.0.0.1 (a free port unless one is given) in a thread and answers:

- ``GET /health``: 200 with an empty body (``health_status`` changes it, as a dead engine's 503);
- ``GET /v1/models``: ``{"object": "list", "data": [{"id": <served name>, "max_model_len": …}]}``;
- ``POST /v1/chat/completions``: a ``chat.completion`` object, or with ``"stream": true`` server-sent
  events (``data: {chat.completion.chunk}\\n\\n`` … ``data: [DONE]\\n\\n``, chunked transfer encoding),
  the usage in a last chunk with empty choices when ``stream_options.include_usage`` is set.

Each chat request is checked against dots.ocr's request format (``check_chat_request``): the model
name, one user message whose content is an ``image_url`` part holding a PNG data URL (sides multiples
of 28, at most ``max_pixels`` pixels) and a ``text`` part that is ``<|img|><|imgpad|><|endofimg|>``
followed by exactly one of the prompts of ``core.dots.prompts``, temperature 0.1, top_p 0.9 and
``max_completion_tokens`` (or ``max_tokens``). A request that fails a check gets vLLM's 400 error
body, and the reason is kept in ``problems``; every request is kept in ``requests``.

``behaviour`` picks how it answers chat requests: ``ok``, ``slow`` (sleeps ``slow_seconds`` before
answering), ``error500``, ``garbage`` (an HTML page with status 200), ``empty_choices``,
``empty_content`` (an empty text and no usage, as a broken server), ``blank`` (an empty text that
the model ended itself: finish_reason ``stop``, one completion token), ``length`` (finish_reason
``length``), ``slow_stream`` (one token every ``stream_interval`` seconds, ``stream_tokens`` of
them; a client that goes away is noted in ``disconnects``) and ``loop`` (the answer's start, then
``loop_piece`` over and over, one piece per token every ``stream_interval`` seconds, until
``stream_tokens`` or the client goes away: a model stuck repeating itself). For a server that is
down, ``stop()`` it: its port then refuses connections.

Requests are served concurrently, as vLLM batches them: ``in_flight`` counts the chat requests
being answered and ``max_in_flight`` the most at once. ``answer`` may be a function of the
request (a ChatRequest) that gives its text.
"""

from __future__ import annotations

import base64
import io
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from core.dots.prompts import GROUNDING, IMAGE_PLACEHOLDER, IMAGE_TO_SVG, PROMPTS, QUESTION, QUESTION_SYSTEM_PROMPT
from core.dots.resize import FACTOR, MAX_PIXELS

BEHAVIOURS = (
    "ok",
    "slow",
    "error500",
    "garbage",
    "empty_choices",
    "empty_content",
    "blank",
    "length",
    "slow_stream",
    "loop",
)

DEFAULT_ANSWERS = {
    "layout_all": '[{"bbox": [28, 28, 280, 84], "category": "Title", "text": "# Hello"}]',
    "layout_only": '[{"bbox": [28, 28, 280, 84], "category": "Title"}]',
    "text": "Hello world",
    "grounding": "Hello",
}
_BOX_RE = re.compile(r"^\[(-?\d+), (-?\d+), (-?\d+), (-?\d+)\]$")
_SVG_RE = re.compile(re.escape(PROMPTS[IMAGE_TO_SVG].split("{width}")[0]) + r'\d+ \d+"$')
DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass
class ChatRequest:
    """What one chat request asked for, as the server understood it."""

    body: dict[str, Any]
    mode: str | None = None
    bbox: list[int] | None = None
    image_size: tuple[int, int] | None = None
    stream: bool = False
    max_tokens: int | None = None
    problems: list[str] = field(default_factory=list)


def check_chat_request(body: Any, model_name: str, max_pixels: int) -> ChatRequest:
    """Check a chat request against dots.ocr's format; the result lists what is wrong."""
    req = ChatRequest(body=body if isinstance(body, dict) else {})
    problems = req.problems
    if not isinstance(body, dict):
        problems.append("the body is not a JSON object")
        return req
    if body.get("model") != model_name:
        problems.append(f"model is {body.get('model')!r}, the server serves {model_name!r}")
    budget = body.get("max_completion_tokens", body.get("max_tokens"))
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        problems.append(f"max_completion_tokens (or max_tokens) must be a positive integer, not {budget!r}")
    else:
        req.max_tokens = budget
    req.stream = bool(body.get("stream"))

    messages = body.get("messages")
    system = None
    if (
        isinstance(messages, list)
        and len(messages) == 2
        and isinstance(messages[0], dict)
        and messages[0].get("role") == "system"
    ):
        system, messages = messages[0].get("content"), messages[1:]
    if not isinstance(messages, list) or len(messages) != 1:
        problems.append("there must be exactly one message")
        return req
    message = messages[0]
    if not isinstance(message, dict) or message.get("role") != "user":
        problems.append("the message must come from the user")
        return req
    content = message.get("content")
    if not isinstance(content, list) or len(content) != 2:
        problems.append("the message content must be two parts: the image, then the text")
        return req
    image_part, text_part = content
    _check_image(image_part, max_pixels, req)
    _check_text(text_part, req, system)
    # dots.mocr's sampling (core/catalog.py): SVG at 0.9 / 1.0, everything else at 0.1 / 0.9.
    temperature, top_p = (0.9, 1.0) if req.mode == IMAGE_TO_SVG else (0.1, 0.9)
    if body.get("temperature") != temperature:
        problems.append(f"temperature is {body.get('temperature')!r}, the model uses {temperature}")
    if body.get("top_p") != top_p:
        problems.append(f"top_p is {body.get('top_p')!r}, the model uses {top_p}")
    return req


def _check_image(part: Any, max_pixels: int, req: ChatRequest) -> None:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        req.problems.append("the first part must be an image_url")
        return
    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIX):
        req.problems.append("the image must be a PNG data URL (data:image/png;base64,…)")
        return
    try:
        data = base64.b64decode(url[len(DATA_URL_PREFIX) :], validate=True)
        with Image.open(io.BytesIO(data)) as img:
            fmt, size = img.format, img.size
            img.load()
    except Exception as exc:
        req.problems.append(f"the image does not decode: {exc}")
        return
    if fmt != "PNG":
        req.problems.append(f"the image is {fmt}, not PNG")
    req.image_size = size
    w, h = size
    if w % FACTOR or h % FACTOR:
        req.problems.append(f"the image is {w}×{h}: its sides must be multiples of {FACTOR}")
    if w * h > max_pixels:
        req.problems.append(f"the image has {w * h:,} pixels, more than max_pixels {max_pixels:,}")


def _check_text(part: Any, req: ChatRequest, system: str | None = None) -> None:
    if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
        req.problems.append("the second part must be a text")
        return
    text = part["text"]
    if not text.startswith(IMAGE_PLACEHOLDER):
        req.problems.append(f"the text must start with {IMAGE_PLACEHOLDER}")
        return
    prompt = text[len(IMAGE_PLACEHOLDER) :]
    if system is not None:
        if system != QUESTION_SYSTEM_PROMPT or not prompt.strip():
            req.problems.append("a system message goes only with a question, and says " + QUESTION_SYSTEM_PROMPT)
        req.mode = QUESTION
        return
    if _SVG_RE.match(prompt):
        req.mode = IMAGE_TO_SVG
        return
    for mode, wording in PROMPTS.items():
        if mode == GROUNDING:
            if prompt.startswith(wording):
                m = _BOX_RE.match(prompt[len(wording) :])
                if not m:
                    box = prompt[len(wording) :]
                    req.problems.append(f"the grounding box is not [x1, y1, x2, y2]: {box!r}")
                    return
                req.mode, req.bbox = mode, [int(v) for v in m.groups()]
                if req.image_size:
                    w, h = req.image_size
                    x1, y1, x2, y2 = req.bbox
                    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                        req.problems.append(f"the box {req.bbox} is not inside the {w}×{h} image sent")
                return
        elif prompt == wording:
            req.mode = mode
            return
    req.problems.append(f"the prompt is not one of dots.ocr's prompts: {prompt[:80]!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    # -- helpers ----------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _error(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        # vLLM's ErrorResponse
        self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})

    def _authorized(self) -> bool:
        key = self.server.double.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._json(401, {"error": "Unauthorized"})
            return False
        return True

    # -- routes -----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        double = self.server.double
        if self.path == "/health":
            self._send(double.health_status, b"")
        elif self.path == "/v1/models":
            if not self._authorized():
                return
            item: dict[str, Any] = {
                "id": double.model_name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "vllm",
                "root": double.model_name,
                "parent": None,
            }
            if double.max_model_len:
                item["max_model_len"] = double.max_model_len
            self._json(200, {"object": "list", "data": [item]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        double = self.server.double
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
            return
        if not self._authorized():
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "the body is not JSON")
            return
        req = check_chat_request(body, double.model_name, double.max_pixels)
        with double.lock:
            double.requests.append(req)
            double.problems.extend(req.problems)
        if req.problems:
            self._error(400, "; ".join(req.problems))
            return

        with double.lock:
            double.in_flight += 1
            double.max_in_flight = max(double.max_in_flight, double.in_flight)
        try:
            self._chat(req, double.behaviour)
        finally:
            with double.lock:
                double.in_flight -= 1

    def _chat(self, req: ChatRequest, behaviour: str) -> None:
        double = self.server.double
        if behaviour == "slow":
            time.sleep(double.slow_seconds)
        if behaviour == "error500":
            self._error(500, "EngineCore encountered an issue. See stack trace above.", "InternalServerError")
            return
        if behaviour == "garbage":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        if req.stream:
            self._stream(req, behaviour)
        else:
            self._whole(req, behaviour)

    # -- answers ----------------------------------------------------------------------------------

    def _answer(self, req: ChatRequest, behaviour: str) -> tuple[list[str], str, dict[str, Any] | None]:
        """(pieces of text, finish_reason, usage) for a request."""
        double = self.server.double
        w, h = req.image_size or (0, 0)
        prompt_tokens = (w // FACTOR) * (h // FACTOR) + 60
        if behaviour in ("empty_content", "blank"):
            pieces: list[str] = []
        elif behaviour == "slow_stream":
            pieces = ["tok "] * double.stream_tokens
        elif behaviour == "loop":
            start = double.answer(req) if callable(double.answer) else (double.answer or "")
            head = [start[i : i + 4] for i in range(0, len(start), 4)]
            pieces = head + [double.loop_piece] * max(0, double.stream_tokens - len(head))
        else:
            text = double.answer(req) if callable(double.answer) else double.answer
            if text is None:
                text = DEFAULT_ANSWERS.get(req.mode or "", "Hello")
            pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        finish = "length" if behaviour == "length" else "stop"
        completion = max(1, len(pieces) + (0 if behaviour == "length" else 1))
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        }
        if behaviour == "empty_content":
            usage = None
        return pieces, finish, usage

    def _whole(self, req: ChatRequest, behaviour: str) -> None:
        pieces, finish, usage = self._answer(req, behaviour)
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces), "tool_calls": []},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        ]
        data: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.body.get("model"),
            "choices": [] if behaviour == "empty_choices" else choices,
            "prompt_logprobs": None,
        }
        if usage is not None:
            data["usage"] = usage
        self._json(200, data)

    def _stream(self, req: ChatRequest, behaviour: str) -> None:
        double = self.server.double
        pieces, finish, usage = self._answer(req, behaviour)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.body.get("model"),
                "choices": choices,
            }
            data.update(extra or {})
            return f"data: {json.dumps(data)}\n\n".encode()

        def delta(content: str | None, finish_reason: str | None = None, role: bool = False) -> list[dict]:
            d: dict[str, Any] = {}
            if role:
                d["role"] = "assistant"
            if content is not None:
                d["content"] = content
            return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish_reason}]

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            if behaviour == "empty_choices":
                self._write_chunk(chunk([]))
            else:
                self._write_chunk(chunk(delta("", role=True)))
                for piece in pieces:
                    if behaviour in ("slow_stream", "loop"):
                        time.sleep(double.stream_interval)
                        if self._client_gone():
                            raise ConnectionResetError("the client closed the connection")
                    self._write_chunk(chunk(delta(piece)))
                    sent += 1
                self._write_chunk(chunk(delta(None if behaviour == "empty_content" else "", finish)))
            include_usage = bool((req.body.get("stream_options") or {}).get("include_usage"))
            if include_usage and usage is not None:
                self._write_chunk(chunk([], {"usage": usage}))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            with double.lock:
                double.disconnects.append({"at": time.monotonic(), "tokens_sent": sent})

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """The client closed its side (as Starlette notices an http.disconnect)."""
        sock = self.connection
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: OpenAIServer


class OpenAIServer:
    """An OpenAI-compatible chat server like vLLM's, in a thread on 127.0.0.1."""

    def __init__(
        self,
        model_name: str = "dots.ocr",
        max_pixels: int = MAX_PIXELS,
        *,
        port: int = 0,
        max_model_len: int | None = None,
        api_key: str | None = None,
        answer: str | Callable[[ChatRequest], str] | None = None,
    ):
        self.model_name = model_name
        self.max_pixels = max_pixels
        self.max_model_len = max_model_len
        self.api_key = api_key
        #: The text every answer carries (None: a small answer in the format of the request's mode).
        self.answer = answer
        self.behaviour = "ok"
        self.slow_seconds = 2.0
        self.stream_interval = 0.05
        self.stream_tokens = 400
        #: What a looping answer repeats, one piece per token.
        self.loop_piece = "<td></td>"
        self.in_flight = 0
        self.max_in_flight = 0
        self.health_status = 200
        self.lock = threading.Lock()
        self.requests: list[ChatRequest] = []
        self.problems: list[str] = []
        self.disconnects: list[dict[str, Any]] = []
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._port
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> OpenAIServer:
        httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        httpd.double = self
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: the port refuses connections from now on (a server that is down)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> OpenAIServer:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_disconnect(self, timeout: float = 3.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.disconnects:
                    return self.disconnects[0]
            time.sleep(0.02)
        return None
