"""Token authentication: `Authorization: Bearer <key>` (or `Token <key>`).

The key is looked up by its SHA-256 (see ocr_app.models.ApiToken); a revoked token, an unknown
key, an expired token or an inactive user is a 401 with a sentence saying which.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from ocr_app.lockout import TokenAttempt, client_address, minutes_left
from ocr_app.models import ApiToken

SCHEMES = ("bearer", "token")
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenProblem(Exception):
    """Why a presented key does not authenticate, in a sentence."""


def key_from_header(header: str) -> str | None:
    """The key in an Authorization header; None when the header names another scheme (or none)."""
    parts = header.split()
    if not parts or parts[0].lower() not in SCHEMES:
        return None
    if len(parts) != 2:
        raise TokenProblem(f"Send the token as 'Authorization: {parts[0]} <key>', with one key and no spaces in it.")
    return parts[1]


def user_for_key(key: str, address: str | None = None) -> tuple[object, ApiToken]:
    """(user, token) for a key, or TokenProblem. Marks the token as used (when, and from `address`)."""
    try:
        token = ApiToken.objects.select_related("user").get(key_hash=ApiToken.hash_key(key))
    except ApiToken.DoesNotExist:
        raise TokenProblem("This API token is not known. Create one on your profile page (/profile/).") from None
    if token.revoked_at is not None:
        raise TokenProblem("This API token was revoked. Create a new one on your profile page (/profile/).")
    if token.expired:
        raise TokenProblem(
            f"This API token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC. Create a new one on your profile "
            "page (/profile/)."
        )
    if not token.user.is_active:
        raise TokenProblem("The account this API token belongs to is disabled.")
    now = timezone.now()
    if (
        token.last_used_at is None
        or now - token.last_used_at > LAST_USED_RESOLUTION
        or (address and address != token.last_used_from)
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)
        token.last_used_at, token.last_used_from = now, address
    return token.user, token


def _address(request) -> str | None:
    address = client_address(getattr(request, "_request", request))
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


class LockedOut(exceptions.Throttled):
    default_code = "locked_out"

    def __init__(self, message: str, wait_seconds: int):
        super().__init__(wait=wait_seconds)
        self.detail = exceptions.ErrorDetail(message, self.default_code)


def check_key(request, key: str) -> tuple[object, ApiToken]:
    """(user, token) for a key sent with `request`, counted by the lock-out: LockedOut while the key or the
    address is locked out, TokenProblem (counted as a failure) when the key is wrong."""
    attempt = TokenAttempt(request, key)
    if not attempt.allowed():
        raise LockedOut(attempt.message(), minutes_left(attempt.request) * 60)
    try:
        return user_for_key(key, _address(request))
    except TokenProblem:
        attempt.failed()
        raise


def refusal_before_body(request) -> tuple[int, str, int | None] | None:
    """For dashboard/bodylimit.py, before a request's body is read: None when its Authorization header
    carries a valid token, else the status (401, or 429 when locked out), the sentence to answer with and,
    when locked out, the seconds to wait.
    Only a valid token lets a body in; a wrong one counts as a failed try, as it does in the API."""
    try:
        key = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if key is None:
            return 401, "Log in first: send 'Authorization: Bearer <key>' with a token made on your profile page.", None
        check_key(request, key)
    except TokenProblem as problem:
        return 401, str(problem), None
    except LockedOut as locked:
        return 429, str(locked.detail), locked.wait
    return None


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """DRF authentication by an ocrdash API token; request.auth is the ApiToken.

    Wrong tokens count as failed logins (ocr_app.lockout): at the limit, the key and the address
    get 429 until the failures are old enough, whatever key they send meanwhile."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        try:
            key = key_from_header(header)
        except TokenProblem as problem:
            raise exceptions.AuthenticationFailed(str(problem)) from None
        if key is None:
            return None  # no token: the session (or nothing) decides
        try:
            return check_key(request._request, key)
        except TokenProblem as problem:
            raise exceptions.AuthenticationFailed(str(problem)) from None

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="ocrdash"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ocr_app.api.auth.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A token made on your profile page (/profile/): `Authorization: Bearer <key>`. "
            "`Authorization: Token <key>` works too.",
        }
