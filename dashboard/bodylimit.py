"""Request bodies are refused before Django spools them, and strangers' bodies are never read.

Django's ASGI handler reads a whole request body into a temporary file before any view (or any
check) runs. This wrapper stands in front of it:

- a request that declares a Content-Length over its limit gets 413 at once, and a body that is
  streamed (chunked) is counted as it comes and cut off with 413 when it passes the limit;
- the limit is MAX_REQUEST_BYTES for the upload endpoints (the upload page, POST /api/v1/jobs,
  /v1/chat/completions) and MAX_FORM_REQUEST_BYTES for everything else;
- an anonymous request (no logged-in session, no valid API token) that carries a body gets 401
  (the API) or a redirect to the login page (a form) without a byte of its body being read; only
  the login and logout forms take a small body (ANONYMOUS_BYTES) from anyone. A token is checked
  here, as the API checks it (a wrong one counts towards the lock-out, a locked-out one gets 429):
  an `Authorization: Bearer` header with any made-up key is no way in.

The web server (uvicorn, dashboard/webserver.py) hands the body over as it arrives and reads no
further ahead than a small buffer while nobody asks for it, so nothing here has been held whole.
A reverse proxy in front should refuse large bodies too (nginx: client_max_body_size), so that
they do not cross the network; docs/deploy.md says what to set.
"""

from __future__ import annotations

import io
import json
from importlib import import_module
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.handlers.asgi import ASGIRequest
from django.shortcuts import resolve_url
from django.urls import Resolver404, resolve, reverse

# The login and logout forms: a user name, a password, a CSRF token.
ANONYMOUS_BYTES = 64 * 1024
UPLOAD_VIEWS = frozenset({"upload", "api-jobs", "openai-chat-completions"})
TOKEN_SCHEMES = (b"bearer", b"token")


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _headers(scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers") or []}


def _cookies(header: bytes) -> dict[str, str]:
    cookies = {}
    for part in header.decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies.setdefault(name, value)
    return cookies


def _session_has_user(session_key: str) -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return SESSION_KEY in store.load()


def _token_refusal(scope) -> tuple[int, str, int | None] | None:
    from ocr_app.api.auth import refusal_before_body  # the app's models: loaded after Django is set up

    # The request as Django would see it (address, headers), with no body: none has been read.
    return refusal_before_body(ASGIRequest(scope, io.BytesIO()))


class RequestBodyLimit:
    def __init__(self, app):
        self.app = app
        self._anonymous_paths: frozenset[str] | None = None

    def anonymous_paths(self) -> frozenset[str]:
        if self._anonymous_paths is None:
            names = ("login", "logout", "admin:login", "admin:logout")
            self._anonymous_paths = frozenset(reverse(name) for name in names)
        return self._anonymous_paths

    def limit_for(self, path: str) -> int:
        try:
            name = resolve(path).url_name
        except Resolver404:
            return settings.MAX_FORM_REQUEST_BYTES
        if name == "openai-chat-completions":
            # The image comes base64-encoded in JSON: 4 bytes for every 3.
            return settings.MAX_REQUEST_BYTES * 4 // 3
        return settings.MAX_REQUEST_BYTES if name in UPLOAD_VIEWS else settings.MAX_FORM_REQUEST_BYTES

    async def signed_in(self, scope, headers: dict[bytes, bytes]) -> bool | tuple[int, str, int | None]:
        """True for a logged-in session or a valid API token; (status, message, seconds to wait) for a
        token that is wrong or locked out; False for a stranger."""
        authorization = headers.get(b"authorization", b"").split()
        if authorization and authorization[0].lower() in TOKEN_SCHEMES:
            return await sync_to_async(_token_refusal)(scope) or True
        session_key = _cookies(headers.get(b"cookie", b"")).get(settings.SESSION_COOKIE_NAME)
        return bool(session_key) and await sync_to_async(_session_has_user)(session_key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        declared = headers.get(b"content-length")
        has_body = b"transfer-encoding" in headers or (declared not in (None, b"0"))
        if not has_body:
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self.limit_for(path)
        signed_in = await self.signed_in(scope, headers)
        if isinstance(signed_in, tuple):
            status, message, wait = signed_in
            code = "locked_out" if status == 429 else "not_authenticated"
            return await respond(send, status, message, code, path=path, retry_after=wait)
        if not signed_in:
            if path not in self.anonymous_paths():
                return await self.ask_to_log_in(scope, headers, send)
            limit = min(limit, ANONYMOUS_BYTES)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await respond(send, 400, "The Content-Length header is not a number.", "bad_request", path=path)
            if size > limit:
                return await self.too_large(send, size, limit, path=path)

        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django sees a client that went away; the client gets the 413.
                    refused = True
                    await self.too_large(send, received, limit, streamed=True, path=path)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        return await self.app(scope, counted_receive, guarded_send)

    async def too_large(self, send, size: int, limit: int, streamed: bool = False, path: str = ""):
        what = f"more than {human_bytes(limit)} so far" if streamed else human_bytes(size)
        message = (
            f"The request body is {what}, over the limit of {human_bytes(limit)} for this address; nothing was "
            f"stored. Files are accepted up to {human_bytes(settings.MAX_UPLOAD_BYTES)} each."
        )
        return await respond(send, 413, message, "too_large", path=path)

    async def ask_to_log_in(self, scope, headers: dict[bytes, bytes], send):
        path = scope["path"]
        wants_json = b"application/json" in headers.get(b"accept", b"") or path.startswith(("/api/", "/v1/"))
        if wants_json:
            message = "Log in first: send 'Authorization: Bearer <key>' with a token made on your profile page."
            return await respond(send, 401, message, "not_authenticated", path=path)
        login = resolve_url(settings.LOGIN_URL)
        location = f"{login}?next={quote(path)}"
        return await respond(send, 303, "Log in first.", "not_authenticated", location=location)


OPENAI_ERROR_TYPES = {
    401: "authentication_error", 413: "invalid_request_error", 400: "invalid_request_error", 429: "rate_limit_error"
}  # fmt: skip


async def respond(
    send, status: int, message: str, code: str, location: str | None = None, path: str = "", retry_after=None
):
    if path.startswith("/v1/"):
        # The OpenAI-compatible endpoint answers in OpenAI's error shape (ocr_app/api/openai.py).
        error = {"message": message, "type": OPENAI_ERROR_TYPES.get(status, "invalid_request_error"), "param": None,
                 "code": code}  # fmt: skip
        body = json.dumps({"error": error}).encode()
    else:
        # "refused" as the upload answers it, so that the upload page lists the message like any other.
        body = json.dumps({"error": message, "code": code, "refused": [{"name": "", "error": message}]}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; sandbox"),
        (b"cache-control", b"no-store"),
        # What Django's middleware adds to every other answer (these never reach it).
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
        # The body was not read: the connection cannot carry another request.
        (b"connection", b"close"),
    ]
    if location:
        headers.append((b"location", location.encode("latin-1")))
    if retry_after:
        headers.append((b"retry-after", str(int(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
