"""The websocket every page opens: it relays events from ocr_app.events to the browser."""

from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model
from redis.exceptions import ConnectionError as RedisConnectionError

from ocr_app.events import GROUP

# How long a permission check is trusted before the user is read from the database again.
RECHECK_SECONDS = 30.0
CLOSE_UNAUTHENTICATED = 4401


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            # Closing before accept() refuses the handshake (HTTP 403).
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.checked_at = time.monotonic()
        self.allowed = True
        try:
            await self.channel_layer.group_add(GROUP, self.channel_name)
        except (RedisConnectionError, OSError):
            # After a Redis restart the layer's pool still holds a connection to the old server;
            # that call dropped it, and a fresh one answers (if Redis is up: else the browser retries).
            await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "user_id", None) is not None:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

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
            self.allowed = await self._user_is_active()
            self.checked_at = time.monotonic()
        return self.allowed

    @database_sync_to_async
    def _user_is_active(self) -> bool:
        return get_user_model().objects.filter(pk=self.user_id, is_active=True).exists()
