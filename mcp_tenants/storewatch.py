"""Changes made by other server processes that share one Redis, delivered to this one.

Two paths bring them, both on one daemon thread:

- the pub/sub channel ``mcp:{server}:tenant-events``: at once, but only while the subscription
  works (a lost one is renewed with backoff);
- the change log (``changelog.py``), read every ``POLL_SECONDS`` with the command connection:
  what the subscription missed still arrives within a second, whatever happened to it.

A change the channel announced is not delivered again when its log entry is read, and this
process's own changes are not delivered at all. When the log cannot vouch for what happened (the
entry this process read last was trimmed away, or it could not find its place in the log at
start), the receiver is told to compare everything with Redis (``on_change(None)``), and told
again until that succeeds. A malformed message or entry, however malformed, is logged and skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from mcp_tenants.changelog import Change, ChangeLog, entry_order
from mcp_tenants.config import validate_tenant_id
from mcp_tenants.errors import InvalidInput, StoreUnavailable
from mcp_tenants.redisfaults import is_outage, reason

logger = logging.getLogger(__name__)

#: How often the change log is read: a missed announcement is caught up within about this long.
POLL_SECONDS = 0.5
#: Announced entries remembered until the log reaches them (a bound against a flood of them).
_MAX_ANNOUNCED = 10_000
#: A subscription that lived this long had worked: a failure after it starts the backoff afresh.
_STABLE_SECONDS = 5.0


class ChangeWatcher:
    """Calls ``on_change(tenant_id)`` from a daemon thread for changes made by other processes.

    Every attribute but ``positioned`` and ``_closed`` is touched by the watcher thread only.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        origin: str,
        on_change: Callable[[str | None], None],
        *,
        log: ChangeLog,
        max_backoff: float,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._client = client
        self._channel = channel
        self._origin = origin
        self._on_change = on_change
        self._log = log
        self._closed = threading.Event()
        self._max_backoff = max_backoff
        self._poll_seconds = poll_seconds
        #: Set once the watcher tried to find its place in the log: a read of Redis that waits for
        #: it can miss no change (later changes are after that place, or a resync follows).
        self.positioned = threading.Event()
        self._since: str | None = None  # where the log reading started; None: no place yet
        self._last: str | None = None  # the last log entry handled
        self._announced: set[str] = set()  # log entries the channel delivered before the log
        self._resync_owed = False
        self._log_trouble: str | None = None  # why reading the log fails, while it does
        self._next_read = 0.0
        self.thread = threading.Thread(target=self._loop, name="tenant-store-watch", daemon=True)

    def close(self) -> None:
        """Stop the thread (within about half a second)."""
        self._closed.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    # -- the thread -----------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            # Not positioned: changes made until then may be missed; compare once it is.
            self._resync_owed = self._position() is None
        finally:
            self.positioned.set()
        delay = 0.25
        while not self._closed.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            subscribed = time.monotonic()
            try:
                pubsub.subscribe(self._channel)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=max(0.0, self._next_read - time.monotonic()))
                    if message is not None:
                        self._dispatch(message.get("data"))
                    self._read_log_when_due()
            # ValueError: a message that is not UTF-8 fails while redis-py decodes it; the
            # subscription is renewed, as after a lost connection. What it missed meanwhile
            # comes from the log.
            except (redis.RedisError, OSError, ValueError):
                if time.monotonic() - subscribed > _STABLE_SECONDS:
                    delay = 0.25
                self._idle(delay)
                delay = min(delay * 2, self._max_backoff)
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()

    def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` (the subscription's backoff), reading the log meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._closed.is_set():
            self._read_log_when_due()
            now = time.monotonic()
            if now >= deadline:
                return
            self._closed.wait(min(deadline, self._next_read) - now)

    # -- the channel ----------------------------------------------------------------------------

    def _dispatch(self, data: Any) -> None:
        try:
            event = json.loads(data)
            tenant_id = validate_tenant_id(event["tenant_id"])
        except (ValueError, TypeError, KeyError, RecursionError, InvalidInput):
            logger.warning("ignoring a malformed message on %s", self._channel)
            return
        if event.get("origin") == self._origin:
            return
        entry_id = event.get("id")
        if isinstance(entry_id, str) and entry_order(entry_id) is not None:
            if self._handled_by_log(entry_id):
                return
            if len(self._announced) >= _MAX_ANNOUNCED:
                self._announced.clear()  # at worst, some changes are delivered twice
            self._announced.add(entry_id)
        self._notify(tenant_id)

    def _handled_by_log(self, entry_id: str) -> bool:
        """True when the log delivered entry ``entry_id`` already (it lies after ``_since``, up to ``_last``)."""
        return self._since is not None and _order(self._since) < _order(entry_id) and self._reached(entry_id)

    def _reached(self, entry_id: str) -> bool:
        """True when the log reading is at or past entry ``entry_id``."""
        return self._last is not None and _order(entry_id) <= _order(self._last)

    # -- the log --------------------------------------------------------------------------------

    def _position(self) -> str | None:
        """Start reading the log at its newest entry (its id); None when Redis did not say which it is."""
        try:
            anchor = self._log.anchor(self._origin)
        except redis.RedisError as exc:
            self._trouble(exc)
            return None
        self._since = self._last = anchor
        self._announced.clear()
        return anchor

    def _read_log_when_due(self) -> None:
        if time.monotonic() < self._next_read:
            return
        try:
            self._read_log()
        except Exception:  # the watcher must survive whatever the log holds
            logger.exception("reading the change log %s failed", self._log.key)
        finally:
            self._next_read = time.monotonic() + self._poll_seconds

    def _read_log(self) -> None:
        """Deliver the entries after the last one handled; resync when the log cannot vouch for them."""
        last = self._last
        if last is None:
            last = self._position()
            if last is None:
                return
            self._resync_owed = True
        try:
            read = self._log.read_after(last)
        except redis.RedisError as exc:
            self._trouble(exc)
            return
        if self._log_trouble is not None:
            logger.info("reading the change log %s again", self._log.key)
            self._log_trouble = None
        if read is None:
            logger.warning(
                "the change log %s no longer holds entry %s (trimmed while this process was cut off, or "
                "lost with Redis's data): comparing every tenant held in memory with Redis",
                self._log.key,
                self._last,
            )
            self._since = self._last = None
            self._resync_owed = True
            if self._position() is None:
                return
        else:
            changes, self._last = read
            for change in changes:
                self._deliver(change)
            if self._announced:  # the log is past these now: forget them
                self._announced = {i for i in self._announced if not self._reached(i)}
        if self._resync_owed:
            self._resync_owed = not self._notify(None)

    def _deliver(self, change: Change) -> None:
        if change.id in self._announced or change.origin == self._origin:
            return
        self._notify(change.tenant_id)

    def _trouble(self, exc: redis.RedisError) -> None:
        """Reading the log failed: say so once (an outage only at debug level: the store reports those)."""
        if self._log_trouble is None:
            level = logging.DEBUG if is_outage(exc) else logging.WARNING
            logger.log(level, "cannot read the change log %s: %s; retrying", self._log.key, reason(exc))
        self._log_trouble = reason(exc)

    # -- the receiver ---------------------------------------------------------------------------

    def _notify(self, tenant_id: str | None) -> bool:
        """Call the receiver; False when Redis failed it (a resync is then tried again later)."""
        try:
            self._on_change(tenant_id)
        except StoreUnavailable as exc:
            logger.warning("could not compare the tenants in memory with Redis: %s; retrying", exc)
            return False
        except Exception:  # the watcher must survive a failing receiver
            logger.exception("handling a change of tenant %r failed", tenant_id)
        return True


def _order(entry_id: str) -> tuple[int, int]:
    """The sort key of an entry id; ids that are none sort first."""
    return entry_order(entry_id) or (-1, -1)
