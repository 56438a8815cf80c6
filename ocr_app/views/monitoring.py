"""GET /metrics (Prometheus text format) and GET /healthz, both without a login.

/metrics answers a client that sends `Authorization: Bearer <OCRDASH_METRICS_TOKEN>`, or one
whose address is in OCRDASH_METRICS_ALLOW_FROM (default: this machine only); anyone else gets 403.
When the request carries X-Forwarded-For, every address in it must be allowed too: a proxy
appends the real client's address there, so naming 127.0.0.1 in the header gains nothing. What it
holds is ocr_app/metrics.py's collector.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ocr_app import livestate
from ocr_app.metrics import OcrdashCollector

log = logging.getLogger(__name__)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [::1]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 1.2.3.4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_addresses(request: HttpRequest) -> list[str]:
    """The peer's address and every address a proxy named in X-Forwarded-For."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return [request.META.get("REMOTE_ADDR", ""), *(part for part in forwarded.split(",") if part.strip())]


def from_allowed_network(request: HttpRequest) -> bool:
    networks = settings.METRICS_ALLOW_FROM
    if not networks:
        return False
    for text in client_addresses(request):
        address = _address(text)
        if address is None or not any(address in network for network in networks):
            return False
    return True


def has_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@login_not_required
@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not (has_token(request) or from_allowed_network(request)):
        return HttpResponse(
            "Forbidden: send Authorization: Bearer <OCRDASH_METRICS_TOKEN>, or scrape from a network in "
            "OCRDASH_METRICS_ALLOW_FROM.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OcrdashCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception:
        log.warning("healthz: the database does not answer", exc_info=True)
        return False


def _redis_answers() -> bool:
    try:
        return bool(livestate.client().ping())
    except Exception:
        log.warning("healthz: Redis does not answer", exc_info=True)
        return False


@login_not_required
@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For the container health check and load balancers: 200 when the database and Redis answer,
    else 503. Says only yes or no, to anyone."""
    db, redis_ok = _database_answers(), _redis_answers()
    ok = db and redis_ok
    return JsonResponse({"ok": ok, "db": db, "redis": redis_ok}, status=200 if ok else 503)
