"""One error shape for every API answer that is not a success:

    {"error": "A sentence that names the problem.", "code": "machine_readable_code", ...}

Validation errors add `field_errors` ({"name": ["what is wrong"]}); some errors add their own keys
(`available` formats, `state` of a job, `refused` files).
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with its HTTP status, a code and extra keys for the body."""

    def __init__(self, message: str, status_code: int = status.HTTP_400_BAD_REQUEST, code: str = "invalid", **extra):
        super().__init__(message, code)
        self.status_code = status_code
        self.code = code
        self.extra = extra


def _flatten(detail) -> dict[str, list[str]] | list[str]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for name, value in detail.items():
            flat = _flatten(value)
            out[str(name)] = [str(v) for v in (flat.values() if isinstance(flat, dict) else flat)] if flat else []
            if isinstance(flat, dict):
                out[str(name)] = [f"{k}: {'; '.join(v)}" for k, v in flat.items()]
        return out
    if isinstance(detail, list):
        items: list[str] = []
        for value in detail:
            flat = _flatten(value)
            items.extend(flat if isinstance(flat, list) else [f"{k}: {'; '.join(v)}" for k, v in flat.items()])
        return items
    return [str(detail)]


def error_body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, ApiError):
        return {"error": str(exc.detail), "code": exc.code, **exc.extra}
    if isinstance(exc, exceptions.ValidationError):
        flat = _flatten(exc.detail)
        fields = flat if isinstance(flat, dict) else {"non_field_errors": flat}
        sentences = [
            (msg if name == "non_field_errors" else f"{name}: {msg}") for name, msgs in fields.items() for msg in msgs
        ]
        return {"error": " ".join(sentences) or "The request is not valid.", "code": "invalid", "field_errors": fields}
    detail = exc.detail
    if isinstance(detail, (dict, list)):
        flat = _flatten(detail)
        text = " ".join(flat if isinstance(flat, list) else [m for msgs in flat.values() for m in msgs])
    else:
        text = str(detail)
    code = getattr(detail, "code", None) or exc.default_code
    return {"error": text, "code": str(code)}


NOT_AUTHENTICATED = (
    "Log in first: send 'Authorization: Bearer <key>' with a token made on your profile page (/profile/)."
)


def exception_handler(exc, context):
    if isinstance(exc, exceptions.NotAuthenticated) and exc.detail == exceptions.NotAuthenticated.default_detail:
        original = exc
        exc = exceptions.NotAuthenticated(NOT_AUTHENTICATED)
        exc.status_code = original.status_code
        exc.auth_header = getattr(original, "auth_header", None)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    response.data = error_body(exc)
    return response


class LenientContentNegotiation(DefaultContentNegotiation):
    """The best renderer for the Accept header, or else the first (JSON): never a 406.

    Results in other formats are plain Django responses chosen by `?format=`, so a script sending
    `Accept: text/plain` or `*/*` must still get its answer, and its errors as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            return renderers[0], renderers[0].media_type
