"""Change announcements between server processes that share one Redis (pub/sub).

Every write to a tenant is announced on the server's channel; each process drops its cached copy
of a tenant another process changed. A malformed message, however it is malformed, is logged and
skipped; a lost subscription is renewed with backoff, and the receiver is then told that it may
have missed changes (``on_change(None)``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from mcp_tenants.config import validate_tenant_id
from mcp_tenants.errors import InvalidInput

logger = logging.getLogger(__name__)


class ChangeWatcher:
    """Calls ``on_change(tenant_id)`` from a daemon thread for changes made by other processes."""

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        origin: str,
        on_change: Callable[[str | None], None],
        *,
        max_backoff: float,
    ) -> None:
        self._client = client
        self._channel = channel
        self._origin = origin
        self._on_change = on_change
        self._closed = threading.Event()
        self._max_backoff = max_backoff
        self.thread = threading.Thread(target=self._loop, name="tenant-store-watch", daemon=True)

    def close(self) -> None:
        """Stop the thread (within about half a second)."""
        self._closed.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def _loop(self) -> None:
        delay, missed = 0.25, False
        while not self._closed.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                if missed:
                    self._notify(None)
                delay, missed = 0.25, False
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._dispatch(message.get("data"))
            # ValueError: a message that is not UTF-8 fails while redis-py decodes it; the
            # subscription is renewed, as after a lost connection.
            except (redis.RedisError, OSError, ValueError):
                missed = True
                self._closed.wait(delay)
                delay = min(delay * 2, self._max_backoff)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def _dispatch(self, data: Any) -> None:
        try:
            event = json.loads(data)
            tenant_id = validate_tenant_id(event["tenant_id"])
        except (ValueError, TypeError, KeyError, RecursionError, InvalidInput):
            logger.warning("ignoring a malformed message on %s", self._channel)
            return
        if event.get("origin") != self._origin:
            self._notify(tenant_id)

    def _notify(self, tenant_id: str | None) -> None:
        try:
            self._on_change(tenant_id)
        except Exception:  # the watcher must survive a failing receiver
            logger.exception("handling a change of tenant %r failed", tenant_id)
