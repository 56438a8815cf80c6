"""Helpers for the API tests: tokens and clients that send them."""

from __future__ import annotations

from django.test import Client

from ocr_app.models import ApiToken


def token_for(user, name: str = "script") -> str:
    """A new token's key for `user`."""
    return ApiToken.create_for(user, name)[1]


def api_client(user=None, key: str | None = None, scheme: str = "Bearer") -> Client:
    """A client that sends `Authorization: <scheme> <key>` with every request (no session, no CSRF)."""
    if key is None:
        key = token_for(user)
    return Client(HTTP_AUTHORIZATION=f"{scheme} {key}")


def error_of(response) -> dict:
    """The JSON error body, checked for the shape every API error has."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    return body
