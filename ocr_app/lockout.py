"""Failed logins and failed API tokens, counted and locked out by django-axes.

The limits are settings (LOGIN_FAILURE_LIMIT failures per username and per client address; the
lock lasts until the failures are LOGIN_LOCKOUT_MINUTES old). A locked-out login form answers 429
with a page that says so and until when; the API answers 429 in its JSON error shape. Each
lock-out is logged (logger `ocr_app.lockout`), and an admin lifts it by deleting the access
attempts in the admin (Axes → Access attempts) or with `manage.py axes_reset_username <name>` /
`axes_reset_ip <address>`.

A token is "the username" of a token try: `token ocrd_AbCdEfG` (the key's first characters, as the
profile page shows them). Token tries are counted apart from logins (LockoutHandler): a key is
locked out after LOGIN_FAILURE_LIMIT wrong tries, an address only after TOKEN_ADDRESS_FAILURE_LIMIT
wrong token tries (higher: a whole team may sit behind one address, and one member's broken script
must not lock out the others' tokens). Wrong tokens do not count towards an address's login lock,
nor wrong passwords towards its token lock; a revoked or stolen key used again and again is locked
out by itself, without locking its owner's password login.
"""

from __future__ import annotations

import logging
import math

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render

log = logging.getLogger(__name__)

TOKEN_KEY_SHOWN = 12  # ApiToken.key_start's length
TOKEN_USERNAME = "token "  # no account name has a space


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' gate, for logins that come with a request (the login forms). A check without
    one (the shell, a management command, the test client's login()) is no try from the network."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_address(request) -> str | None:
    # The web server puts the peer (or, with --proxy-headers behind OCRDASH_BEHIND_PROXY, the proxy's
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
    return {"username": f"{TOKEN_USERNAME}{key[:TOKEN_KEY_SHOWN]}", "api_token": True}


def _failures(attempts) -> int:
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


class LockoutHandler(AxesDatabaseHandler):
    """django-axes' database handler, with token tries counted apart from logins (see the module's
    docstring). Axes locks out at get_failures() >= LOGIN_FAILURE_LIMIT."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        if not (credentials or {}).get("api_token"):
            return max(
                _failures(attempts.exclude(username__startswith=TOKEN_USERNAME))
                for attempts in self.get_user_attempts(request, credentials)
            )
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        by_key = _failures(recent.filter(username=get_client_username(request, credentials)))
        by_address = _failures(recent.filter(ip_address=request.axes_ip_address, username__startswith=TOKEN_USERNAME))
        if by_address >= settings.TOKEN_ADDRESS_FAILURE_LIMIT:
            return max(by_key, get_failure_limit(request, credentials))
        return by_key


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
            f"Too many failed API token tries with this key ({settings.LOGIN_FAILURE_LIMIT}) or from this address "
            f"({settings.TOKEN_ADDRESS_FAILURE_LIMIT}). Try again in {minutes_left(self.request)} minutes, or ask an "
            "admin to lift the lock."
        )
