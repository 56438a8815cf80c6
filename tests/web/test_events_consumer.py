"""The websocket at /ws/events/: logged-in users only, events from the real Redis channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from core.events import JobStatusEvent, problems
from dashboard.asgi import application
from ocr_app import consumers
from ocr_app.events import publish_job

# The consumer reads users and sessions from the database in other threads: rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")


def session_headers(client, user, origin=ORIGIN) -> list[tuple[bytes, bytes]]:
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), origin]


def run(scenario) -> None:
    async_to_sync(scenario)()


async def connected_communicator(headers) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    assert connected, f"refused with {code}"
    return communicator


def test_it_refuses_an_anonymous_connection(redis_server):
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=[ORIGIN])
        connected, code = await communicator.connect(timeout=5)
        assert connected is False
        assert code == consumers.CLOSE_UNAUTHENTICATED
        await communicator.disconnect()

    run(scenario)


def test_it_refuses_a_stale_session_cookie(redis_server):
    async def scenario():
        headers = [(b"cookie", b"sessionid=not-a-real-session"), ORIGIN]
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
        connected, code = await communicator.connect(timeout=5)
        assert connected is False
        assert code == consumers.CLOSE_UNAUTHENTICATED
        await communicator.disconnect()

    run(scenario)


def test_it_refuses_a_deactivated_user_with_a_live_session(client, make_user, redis_server):
    dave = make_user("dave")
    headers = session_headers(client, dave)
    dave.is_active = False
    dave.save(update_fields=["is_active"])

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
        connected, code = await communicator.connect(timeout=5)
        assert connected is False
        assert code == consumers.CLOSE_UNAUTHENTICATED
        await communicator.disconnect()

    run(scenario)


def test_it_refuses_a_page_from_a_foreign_origin(client, alice, redis_server):
    headers = session_headers(client, alice, origin=(b"origin", b"http://evil.example"))

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected is False
        await communicator.disconnect()

    run(scenario)


def test_it_relays_a_published_job_event_to_a_logged_in_user(client, alice, make_job, redis_server):
    headers = session_headers(client, alice)
    job = make_job(name="live.png")

    async def scenario():
        communicator = await connected_communicator(headers)
        await database_sync_to_async(publish_job)(job)
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        assert event["type"] == "job.status"
        assert problems(event, JobStatusEvent) == []  # the shape core/events.py declares
        assert event["job"]["id"] == job.pk
        assert event["job"]["name"] == "live.png"
        assert event["job"]["state"] == "queued"
        assert event["job"]["queue_position"] == 1
        assert event["job"]["owner"] == "alice"

    run(scenario)


def test_it_relays_a_colleagues_job_too(client, alice, bob, make_job, redis_server):
    headers = session_headers(client, bob)
    job = make_job(owner=alice)

    async def scenario():
        communicator = await connected_communicator(headers)
        await database_sync_to_async(publish_job)(job)
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        assert event["job"]["id"] == job.pk
        assert event["job"]["owner"] == "alice"

    run(scenario)


def test_it_stops_a_user_deactivated_while_connected(client, alice, make_job, monkeypatch, redis_server):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0)
    headers = session_headers(client, alice)
    job = make_job()

    def deactivate():
        alice.is_active = False
        alice.save(update_fields=["is_active"])

    async def scenario():
        communicator = await connected_communicator(headers)
        await database_sync_to_async(publish_job)(job)
        assert (await communicator.receive_json_from(timeout=5))["job"]["id"] == job.pk

        await database_sync_to_async(deactivate)()
        await database_sync_to_async(publish_job)(job)
        output = await communicator.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
        # Until the browser finishes the close handshake, later events still bring no data.
        await database_sync_to_async(publish_job)(job)
        later = []
        while not await communicator.receive_nothing(timeout=0.3):
            later.append(await communicator.receive_output())
        assert all(output["type"] == "websocket.close" for output in later)
        await communicator.disconnect()

    run(scenario)


def test_it_stops_a_user_deleted_while_connected(client, make_user, make_job, monkeypatch, redis_server):
    monkeypatch.setattr(consumers, "RECHECK_SECONDS", 0)
    carol = make_user("carol")
    headers = session_headers(client, carol)
    job = make_job()

    async def scenario():
        communicator = await connected_communicator(headers)
        await database_sync_to_async(carol.delete)()
        await database_sync_to_async(publish_job)(job)
        output = await communicator.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": consumers.CLOSE_UNAUTHENTICATED}
        await communicator.disconnect()

    run(scenario)


def test_it_answers_a_ping_with_a_pong(client, alice, redis_server):
    headers = session_headers(client, alice)

    async def scenario():
        communicator = await connected_communicator(headers)
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await communicator.disconnect()

    run(scenario)


def test_it_ignores_messages_it_does_not_know(client, alice, redis_server):
    headers = session_headers(client, alice)

    async def scenario():
        communicator = await connected_communicator(headers)
        await communicator.send_json_to({"type": "subscribe", "job": 1})
        await communicator.send_json_to(["ping"])
        await communicator.send_to(text_data="this is not JSON")
        await communicator.send_to(bytes_data=b"\x00\x01")
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()

    run(scenario)
