"""A websocket lives as long as the login it was opened with: logging out (in another tab, on
another machine), changing the password, or the session expiring closes it."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client

from dashboard.asgi import application
from ocr_app import consumers

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")
CLOSED = {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def socket_headers(client: Client) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), ORIGIN]


async def open_socket(client: Client) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=socket_headers(client))
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


def test_logging_out_closes_that_session_s_sockets_at_once_and_no_other(make_user, redis_server):
    alice = make_user("alice")
    laptop, phone = logged_in(alice), logged_in(alice)

    async def scenario():
        on_laptop = await open_socket(laptop)
        on_phone = await open_socket(phone)
        # The laptop's tab is left open; the user logs out on the laptop in another tab.
        await database_sync_to_async(laptop.post)("/logout/")
        assert await on_laptop.receive_output(timeout=5) == CLOSED
        assert await on_phone.receive_nothing(timeout=0.5), "the phone's login is still valid"
        await on_laptop.disconnect()
        await on_phone.disconnect()

    async_to_sync(scenario)()


def test_a_new_password_closes_the_sockets_of_every_other_session(make_user, redis_server):
    alice = make_user("alice")
    thief, owner = logged_in(alice), logged_in(alice)

    def change_password():
        alice.set_password("a-brand-new-passphrase")
        alice.save()

    async def scenario():
        stolen = await open_socket(thief)
        await database_sync_to_async(change_password)()
        assert await stolen.receive_output(timeout=5) == CLOSED
        await stolen.disconnect()

    async_to_sync(scenario)()
    # The owner's own next login works with the new password; the thief's session is worthless.
    assert owner.get("/").status_code == 302


def test_a_session_that_ends_without_a_signal_is_found_by_the_periodic_check(make_user, monkeypatch, redis_server):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0.2)  # the watch runs at most once a second
    alice = make_user("alice")
    browser = logged_in(alice)

    async def scenario():
        socket = await open_socket(browser)
        # An admin clears sessions straight in the database (or the session expired): no signal.
        await database_sync_to_async(Session.objects.all().delete)()
        assert await socket.receive_output(timeout=5) == CLOSED
        await socket.disconnect()

    async_to_sync(scenario)()
