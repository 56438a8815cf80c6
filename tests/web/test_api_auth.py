"""Who may call the API: tokens (Bearer or Token), the session with CSRF, nobody anonymous; the
profile page that makes and revokes tokens; the admin that lists everyone's."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from ocr_app.models import ApiToken
from tests.web.api_support import api_client, error_of, token_for

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/v1/jobs"),
    ("post", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{id}"),
    ("get", "/api/v1/jobs/{id}/result?format=txt"),
    ("get", "/api/v1/jobs/{id}/wait?timeout=0"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("post", "/api/v1/jobs/{id}/retry"),
    ("get", "/api/v1/gpu"),
    ("get", "/api/v1/backend"),
    ("get", "/api/schema/"),
]


@pytest.fixture
def job(make_job):
    return make_job(state="succeeded", text="Secret text", text_preview="Secret text")


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
def test_an_anonymous_script_gets_a_401_in_json_from_every_endpoint(client, job, method, template):
    response = getattr(client, method)(template.format(id=job.pk))

    assert response.status_code == 401
    body = error_of(response)
    assert "Authorization: Bearer" in body["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"Secret" not in response.content


@pytest.mark.parametrize(("method", "template"), ENDPOINTS)
def test_a_revoked_token_gets_a_401_from_every_endpoint(alice, job, method, template):
    key = token_for(alice)
    ApiToken.objects.get(user=alice).revoke()

    response = getattr(api_client(key=key), method)(template.format(id=job.pk))

    assert response.status_code == 401
    assert "revoked" in error_of(response)["error"]


def test_an_unknown_key_is_a_401_that_says_so(job):
    response = api_client(key="ocrd_not-a-real-key").get("/api/v1/jobs")

    assert response.status_code == 401
    assert "not known" in error_of(response)["error"]


def test_a_malformed_authorization_header_is_a_401_that_says_how(job):
    response = Client(HTTP_AUTHORIZATION="Bearer two words").get("/api/v1/jobs")

    assert response.status_code == 401
    assert "Authorization: Bearer <key>" in error_of(response)["error"]


def test_a_token_of_a_disabled_account_is_refused(alice, job):
    key = token_for(alice)
    alice.is_active = False
    alice.save()

    response = api_client(key=key).get("/api/v1/jobs")

    assert response.status_code == 401
    assert "disabled" in error_of(response)["error"]


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_it_accepts_the_token_in_either_scheme(alice, job, scheme):
    response = api_client(alice, scheme=scheme).get(f"/api/v1/jobs/{job.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == job.pk


def test_it_records_when_a_token_was_last_used(alice, job):
    key = token_for(alice)
    assert ApiToken.objects.get(user=alice).last_used_at is None

    api_client(key=key).get("/api/v1/jobs")

    used = ApiToken.objects.get(user=alice).last_used_at
    assert used is not None and timezone.now() - used < timedelta(seconds=10)


def test_only_a_hash_of_the_key_is_stored(alice):
    token, key = ApiToken.create_for(alice, "nightly")

    stored = ApiToken.objects.filter(pk=token.pk).values()[0]
    assert key not in [str(v) for v in stored.values()]
    assert stored["key_hash"] == ApiToken.hash_key(key) and len(stored["key_hash"]) == 64
    assert key.startswith(stored["key_start"])


def test_the_browser_session_reads_the_api(alice_client, job):
    response = alice_client.get(f"/api/v1/jobs/{job.pk}")

    assert response.status_code == 200


def test_the_browser_session_must_send_the_csrf_token_to_change_anything(alice, make_job):
    queued = make_job()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    refused = browser.post(f"/api/v1/jobs/{queued.pk}/cancel")
    browser.get("/profile/")  # sets the CSRF cookie, as any page does
    allowed = browser.post(f"/api/v1/jobs/{queued.pk}/cancel", HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)

    assert refused.status_code == 403 and "CSRF" in error_of(refused)["error"]
    assert allowed.status_code == 200 and allowed.json()["state"] == "cancelled"


def test_a_token_request_needs_no_csrf_token(alice, make_job):
    queued = make_job()
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token_for(alice)}")

    response = client.post(f"/api/v1/jobs/{queued.pk}/cancel")

    assert response.status_code == 200


# -- the profile page -------------------------------------------------------------------------------


def test_the_profile_page_makes_a_token_and_shows_its_key_once(alice_client, alice):
    made = alice_client.post("/profile/", {"name": "  nightly   scans "})

    assert made.status_code == 200
    key = re.search(r'id="new-token-key" value="(ocrd_[^"]+)"', made.content.decode())[1]
    token = ApiToken.objects.get(user=alice)
    assert token.name == "nightly scans" and token.key_hash == ApiToken.hash_key(key)
    again = alice_client.get("/profile/").content.decode()
    assert key not in again and "nightly scans" in again and token.key_start in again
    assert api_client(key=key).get("/api/v1/jobs").status_code == 200


def test_the_profile_page_wants_a_name(alice_client, alice):
    response = alice_client.post("/profile/", {"name": "   "})

    assert response.status_code == 200 and b"new-token-key" not in response.content
    assert not ApiToken.objects.filter(user=alice).exists()


def test_the_profile_page_lists_only_the_users_own_tokens(alice_client, alice, bob):
    ApiToken.create_for(alice, "alice-script")
    ApiToken.create_for(bob, "bob-script")

    page = alice_client.get("/profile/").content.decode()

    assert "alice-script" in page and "bob-script" not in page


def test_a_user_revokes_their_token_on_the_profile_page(alice_client, alice):
    key = token_for(alice, "old")
    token = ApiToken.objects.get(user=alice)

    response = alice_client.post(f"/profile/tokens/{token.pk}/revoke")

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in alice_client.get("/profile/").content.decode()
    assert api_client(key=key).get("/api/v1/jobs").status_code == 401


def test_nobody_revokes_another_users_token(alice_client, bob):
    token, _ = ApiToken.create_for(bob, "bob-script")

    response = alice_client.post(f"/profile/tokens/{token.pk}/revoke")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_profile_page_is_for_logged_in_users_only(client):
    response = client.get("/profile/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_admin_lists_every_users_tokens_and_revokes_them(client, make_user, alice, bob):
    admin = make_user("root", is_staff=True, is_superuser=True)
    ApiToken.create_for(alice, "alice-script")
    bobs, _ = ApiToken.create_for(bob, "bob-script")
    client.force_login(admin)

    listing = client.get("/admin/ocr_app/apitoken/").content.decode()
    client.post("/admin/ocr_app/apitoken/", {"action": "revoke", "_selected_action": [bobs.pk]})

    assert "alice-script" in listing and "bob-script" in listing
    bobs.refresh_from_db()
    assert bobs.revoked_at is not None
    assert client.get("/admin/ocr_app/apitoken/add/").status_code == 403  # made on the profile page only
