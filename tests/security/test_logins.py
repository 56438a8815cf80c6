"""Guessing passwords and tokens: throttled per username and per address (django-axes), answered
429 with a sentence, logged, and lifted by an admin. Passwords must pass Django's validators."""

from __future__ import annotations

import io
import logging

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from ocr_app.models import ApiToken

pytestmark = pytest.mark.django_db

PASSWORD = "secret-pass-123"


def login(client: Client, username: str, password: str, url: str = "/login/"):
    return client.post(url, {"username": username, "password": password})


def test_twelve_wrong_passwords_in_a_row_end_in_a_lock_out_that_says_so(make_user, caplog):
    make_user("admin", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert settings.LOGIN_FAILURE_LIMIT == 10

    with caplog.at_level(logging.WARNING, logger="ocr_app.lockout"):
        answers = [login(client, "admin", f"guess-{n}") for n in range(12)]

    assert [a.status_code for a in answers[:9]] == [200] * 9  # the form again, with its error
    assert [a.status_code for a in answers[9:]] == [429] * 3
    page = answers[-1].content.decode()
    assert "Too many failed logins (10)" in page and "Try again in 15 minutes" in page
    assert answers[-1]["Retry-After"] == "900"
    assert any("locked out after 10 failed logins: username 'admin', address 203.0.113.7" in r.message
               for r in caplog.records)  # fmt: skip
    # The right password does not get through a lock-out either.
    assert login(client, "admin", PASSWORD).status_code == 429


def test_the_lock_out_holds_for_the_username_from_another_address_and_for_the_address_with_another_username(
    make_user,
):
    make_user("admin", is_staff=True, is_superuser=True)
    make_user("bob")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(10):
        login(attacker, "admin", f"guess-{n}")

    assert login(Client(REMOTE_ADDR="198.51.100.2"), "admin", PASSWORD).status_code == 429  # the username
    assert login(attacker, "bob", PASSWORD).status_code == 429  # the address
    bob_elsewhere = login(Client(REMOTE_ADDR="198.51.100.3"), "bob", PASSWORD)
    assert bob_elsewhere.status_code == 302, "another user from another address logs in"


def test_the_admin_login_is_throttled_too(make_user):
    make_user("admin", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.8")
    answers = [login(client, "admin", f"guess-{n}", url="/admin/login/").status_code for n in range(11)]
    assert answers[-1] == 429


def test_a_script_asking_for_json_gets_the_lock_out_as_json(make_user):
    make_user("admin")
    client = Client(REMOTE_ADDR="203.0.113.9", headers={"Accept": "application/json"})
    for n in range(10):
        login(client, "admin", f"guess-{n}")
    answer = login(client, "admin", PASSWORD)
    assert answer.status_code == 429
    assert answer.json()["code"] == "locked_out" and "Too many failed logins" in answer.json()["error"]


def test_an_admin_lifts_the_lock_out_by_deleting_the_attempts(make_user):
    make_user("alice")
    root = make_user("root", is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.10")
    for n in range(10):
        login(client, "alice", f"guess-{n}")
    assert login(client, "alice", PASSWORD).status_code == 429

    admin = Client()
    admin.force_login(root)
    ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    lifted = admin.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    assert lifted.status_code == 302

    assert not AccessAttempt.objects.exists()
    assert login(client, "alice", PASSWORD).status_code == 302


def test_wrong_api_tokens_lock_out_their_key_but_not_the_colleagues_behind_the_same_address(make_user):
    alice = make_user("alice")
    key = ApiToken.create_for(alice, "script")[1]
    guess = "ocrd_guess0000xxxxxxxxxxxxxxxx"
    for _ in range(10):
        wrong = Client(REMOTE_ADDR="203.0.113.20", HTTP_AUTHORIZATION=f"Bearer {guess}")
        assert wrong.get("/api/v1/jobs").status_code == 401

    locked = Client(REMOTE_ADDR="198.51.100.3", HTTP_AUTHORIZATION=f"Bearer {guess}").get("/api/v1/jobs")
    assert locked.status_code == 429, "the key is locked out wherever it comes from"
    body = locked.json()
    assert body["code"] == "locked_out" and "Too many failed API token tries with this key (10)" in body["error"]
    assert locked["Retry-After"] == "900"
    # The same address (a whole team behind one NAT): a right token and a password login still work.
    same_address = Client(REMOTE_ADDR="203.0.113.20", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert same_address.get("/api/v1/jobs").status_code == 200
    assert login(Client(REMOTE_ADDR="203.0.113.20"), "alice", PASSWORD).status_code == 302
    # The failures were recorded without the request's body, under the key's first characters.
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {f"token {guess[:12]}"}


def test_many_wrong_tokens_from_one_address_lock_it_out_at_the_higher_limit_and_an_admin_lifts_it(
    make_user, settings
):
    settings.TOKEN_ADDRESS_FAILURE_LIMIT = 15
    key = ApiToken.create_for(make_user("alice"), "script")[1]
    for n in range(15):
        wrong = Client(REMOTE_ADDR="203.0.113.21", HTTP_AUTHORIZATION=f"Bearer ocrd_{n:02d}guessxxxxxxxxxxxxxx")
        assert wrong.get("/api/v1/jobs").status_code == 401, n  # each key alone is under its limit

    locked = Client(REMOTE_ADDR="203.0.113.21", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")
    assert locked.status_code == 429
    assert "or from this address (15)" in locked.json()["error"]
    elsewhere = Client(REMOTE_ADDR="198.51.100.20", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")
    assert elsewhere.status_code == 200

    call_command("axes_reset_ip", "203.0.113.21", stdout=io.StringIO())
    lifted = Client(REMOTE_ADDR="203.0.113.21", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")
    assert lifted.status_code == 200


def test_a_revoked_token_used_again_and_again_is_locked_out_wherever_it_comes_from(make_user):
    alice = make_user("alice")
    token, key = ApiToken.create_for(alice, "leaked")
    token.revoke()
    for n in range(10):
        Client(REMOTE_ADDR=f"198.51.100.{n + 1}", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")

    again = Client(REMOTE_ADDR="198.51.100.99", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")
    assert again.status_code == 429
    # Alice's own password login is not locked by it.
    assert login(Client(REMOTE_ADDR="198.51.100.99"), "alice", PASSWORD).status_code == 302


def test_the_openai_compatible_endpoint_answers_the_lock_out_in_openai_s_shape(make_user):
    for _ in range(10):
        Client(REMOTE_ADDR="203.0.113.30", HTTP_AUTHORIZATION="Bearer wrong-x").get("/v1/models")
    answer = Client(REMOTE_ADDR="203.0.113.30", HTTP_AUTHORIZATION="Bearer wrong-x").get("/v1/models")
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["type"] == "rate_limit_error" and "Too many failed API token tries" in error["message"]


@pytest.mark.parametrize("weak", ["short1", "password123", "12345678901", "alice-smith-2"])
def test_weak_passwords_are_refused_by_the_validators(weak, make_user):
    user = make_user("alice-smith")
    user.first_name = "Alice"
    with pytest.raises(ValidationError):
        validate_password(weak, user)


def test_the_test_fixtures_and_the_documented_examples_pass_the_validators(make_user):
    validate_password(PASSWORD, make_user("alice"))
    validate_password("first-start-pw", make_user("admin"))
