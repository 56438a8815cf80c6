"""Failed logins and failed API tokens, counted and locked out by django-axes.

The limits are settings (LOGIN_FAILURE_LIMIT failures per username and per client address; the
lock lasts until the failures are LOGIN_LOCKOUT_MINUTES old). A locked-out login form answers 429
with a page that says so and until when; the API answers 429 in its JSON error shape. Each
lock-out is logged (logger `ocr_app.lockout`), and an admin lifts it by deleting the access
attempts in the admin (Axes → Access attempts) or with `manage.py axes_reset_username <name>` /
`axes_reset_ip <address>`.

A token is "the username" of a token try: `token ocrd_AbCdEfG` (the key's first characters, as the
profile page shows them). A wrong token therefore counts against the address it came from, and a
revoked or stolen key used again and again is locked out by itself, without locking its owner's
password login.
"""

from __future__ import annotations

import logging
import math

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render

log = logging.getLogger(__name__)

TOKEN_KEY_SHOWN = 12  # ApiToken.key_start's length


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' gate, for logins that come with a request (the login forms). A check without
    one (the shell, a management command, the test client's login()) is no try from the network."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_address(request) -> str | None:
    # daphne puts the peer (or, with --proxy-headers behind OCRDASH_BEHIND_PROXY, the proxy's
    # X-Forwarded-For) here; headers a client sends itself are never read.
    return request.META.get("REMOTE_ADDR")


def minutes_left(request) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else settings.LOGIN_LOCKOUT_MINUTES


def lockout_message(request) -> str:
    return (
        f"Too many failed logins ({settings.LOGIN_FAILURE_LIMIT}) for this account or from this address. "
        f"Try again in {minutes_left(request)} minutes, or ask an admin to lift the lock."
    )


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out login: the login page with the reason, or JSON."""
    message = lockout_message(request)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": message, "code": "locked_out"}, status=429)
    response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(minutes_left(request) * 60)
    return response


@receiver(user_locked_out)
def log_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    log.warning(
        "locked out after %s failed logins: username %r, address %s (lift it in Admin → Axes → Access attempts)",
        settings.LOGIN_FAILURE_LIMIT,
        username,
        ip_address,
    )


# -- API tokens ------------------------------------------------------------------------------------


def token_credentials(key: str) -> dict:
    return {"username": f"token {key[:TOKEN_KEY_SHOWN]}"}


def _bodiless(request: HttpRequest) -> HttpRequest:
    """The request as django-axes records it: address, path, user agent; never the body (a script's
    upload must not be read, let alone stored, because its token was wrong)."""
    copy = HttpRequest()
    copy.META = request.META
    copy.GET = request.GET
    copy.POST = QueryDict()
    copy.path = request.path
    copy.path_info = request.path_info
    copy.method = request.method
    return copy


class TokenAttempt:
    """One try of an API token: `allowed()` before the key is looked at, `failed()` when it was wrong."""

    def __init__(self, request: HttpRequest, key: str):
        self.request = _bodiless(request)
        self.credentials = token_credentials(key)

    def allowed(self) -> bool:
        return AxesProxyHandler.is_allowed(self.request, self.credentials)

    def failed(self) -> None:
        AxesProxyHandler.user_login_failed(sender=TokenAttempt, credentials=self.credentials, request=self.request)

    def message(self) -> str:
        return (
            f"Too many failed API token tries ({settings.LOGIN_FAILURE_LIMIT}) with this key or from this address. "
            f"Try again in {minutes_left(self.request)} minutes, or ask an admin to lift the lock."
        )
