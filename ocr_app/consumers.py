"""The websocket every page opens: it relays events from ocr_app.events to the browser.

A socket lives as long as the login it was opened with: it closes (code 4401) when that session
ends (logout, here or in another tab), when the password changes (Django then ends every other
session of the user), or when the user is deactivated. Those changes reach the socket at once
through the user's own group (ocr_app.events.publish_session_check); expiry and anything done
straight in the database are found by a check every RECHECK_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from importlib import import_module

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare
from redis.exceptions import ConnectionError as RedisConnectionError

from ocr_app.events import GROUP, user_group

# How long a permission check is trusted before the session and user are read again.
RECHECK_SECONDS = 30.0
CLOSE_UNAUTHENTICATED = 4401


def session_still_valid(session_key: str | None, user_id) -> bool:
    """The session still exists, is still this user's, and was made with the user's current
    password; the user is still active."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id) or BACKEND_SESSION_KEY not in data:
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return constant_time_compare(data.get(HASH_SESSION_KEY) or "", user.get_session_auth_hash())


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            # Closing before accept() refuses the handshake (HTTP 403).
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.checked_at = time.monotonic()
        self.allowed = True
        try:
            await self.channel_layer.group_add(GROUP, self.channel_name)
        except (RedisConnectionError, OSError):
            # After a Redis restart the layer's pool still holds a connection to the old server;
            # that call dropped it, and a fresh one answers (if Redis is up: else the browser retries).
            await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        await self.accept()
        self.watch = asyncio.ensure_future(self._watch_session())

    async def disconnect(self, code):
        watch = getattr(self, "watch", None)
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if getattr(self, "user_id", None) is not None:
            await self.channel_layer.group_discard(GROUP, self.channel_name)
            await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)

    async def _watch_session(self):
        while self.allowed:
            await asyncio.sleep(max(RECHECK_SECONDS, 1.0))
            await self.session_check({})

    async def session_check(self, message):
        """Sent to the user's group on logout, password change and account changes."""
        self.allowed = await self._session_still_valid()
        self.checked_at = time.monotonic()
        if not self.allowed:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # Whatever a client sends, bad JSON or a binary frame must not end the connection with an error.
        if not text_data:
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            return
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def broadcast(self, message):
        # Permission is checked per message: a user deactivated while the page is open stops
        # receiving job events within RECHECK_SECONDS.
        if not await self.still_allowed():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.send_json(message["event"])

    async def still_allowed(self) -> bool:
        if time.monotonic() - self.checked_at >= RECHECK_SECONDS:
            self.allowed = await self._session_still_valid()
            self.checked_at = time.monotonic()
        return self.allowed

    @database_sync_to_async
    def _session_still_valid(self) -> bool:
        return session_still_valid(self.session_key, self.user_id)
