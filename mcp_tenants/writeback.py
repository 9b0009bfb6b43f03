"""WriteBack: tenant writes that Redis could not take yet, retried in the background until it does.

It also keeps the store's view of Redis: *reachable* (reads go to Redis, or fail at once when it
is known to be down) and *held* (writes join the queue). An outage on a write, or Redis becoming
unreachable, holds writes; a daemon thread pings with exponential backoff and, once Redis answers,
sends the queued writes in order; when none is left, writes go straight to Redis again. A write
that Redis refuses for good (see ``redisfaults``) while queued is dropped with an error log and
reported by ``unpersisted()``; it cannot succeed by waiting.

Thread-safety: ``_lock`` guards every attribute; no Redis call is made while holding it.
Invariant: while the queue is not empty, writes are held, so writes to one tenant reach Redis in
the order they were made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from mcp_tenants.redisfaults import is_outage, reason, refusal_hint

logger = logging.getLogger(__name__)

#: A queued entry: the JSON object to store, or None for a delete.
Entry = dict[str, Any] | None


class WriteBack:
    """The queue of writes Redis owes, and whether Redis answers and takes writes."""

    def __init__(
        self,
        where: str,
        keys: str,
        *,
        ping: Callable[[], object],
        send: Callable[[str, Entry], None],
        max_backoff: float,
        background: bool,
    ) -> None:
        self._where = where  # "Redis at redis://host:port/db", for messages
        self._keys = keys  # the keys a write needs, for messages
        self._ping = ping
        self._send = send  # writes one entry (and announces it); raises redis-py's errors
        self._max_backoff = max_backoff
        self._background = background  # False (the CLI): no thread, nothing queued
        self._lock = threading.Lock()
        self._pending: dict[str, Entry] = {}
        self._refused: dict[str, str] = {}  # tenant id -> why Redis refused its queued write
        self._reachable: bool | None = None  # None: not tried yet
        self._held = False
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    # -- state ----------------------------------------------------------------------------------

    @property
    def reachable(self) -> bool | None:
        """False while Redis is known not to answer (reads then fail at once); None before the first try."""
        return self._reachable

    @property
    def writing(self) -> bool:
        """True while Redis answers and writes go straight to it."""
        with self._lock:
            return bool(self._reachable) and not self._held

    def answered(self) -> None:
        """Redis answered a call."""
        with self._lock:
            was, self._reachable = self._reachable, True
        if was is False:
            logger.info("%s answers again", self._where)

    def went_down(self, exc: redis.RedisError, *, writes_only: bool = False) -> None:
        """An outage (``writes_only``: Redis answers but refuses writes for now): hold writes, retry."""
        with self._lock:
            was_down = self._held and (writes_only or self._reachable is False)
            self._held = True
            if not writes_only:
                self._reachable = False
            start = self._start_locked()
        if not was_down and self._background:
            logger.warning(
                "%s %s (%s); tenant writes are kept in memory and retried in the background",
                self._where,
                "refuses writes for now" if writes_only else "is unavailable",
                reason(exc),
            )
        if start is not None:
            start.start()

    def _start_locked(self) -> threading.Thread | None:
        """Under ``_lock``: the retry thread to start (outside the lock), if none runs."""
        if not self._background or self._thread is not None or self._closed.is_set():
            return None
        self._thread = threading.Thread(target=self._loop, name="tenant-store-retry", daemon=True)
        return self._thread

    # -- the queue ------------------------------------------------------------------------------

    def hold(self, tenant_id: str, entry: Entry) -> bool:
        """Queue the write when writes are held (True); False: the caller writes to Redis now."""
        with self._lock:
            if not (self._held and self._background):
                return False
            self._enqueue_locked(tenant_id, entry)
            start = self._start_locked()
        if start is not None:
            start.start()
        return True

    def enqueue(self, tenant_id: str, entry: Entry) -> None:
        """Queue a write that just met an outage (the caller then calls ``went_down``)."""
        with self._lock:
            self._enqueue_locked(tenant_id, entry)

    def _enqueue_locked(self, tenant_id: str, entry: Entry) -> None:
        self._pending[tenant_id] = entry  # supersedes an older queued write of this tenant
        self._refused.pop(tenant_id, None)

    def sent(self, tenant_id: str) -> None:
        """A write of ``tenant_id`` reached Redis directly."""
        with self._lock:
            self._refused.pop(tenant_id, None)

    def pending(self) -> dict[str, Entry]:
        """A snapshot of the queued writes."""
        with self._lock:
            return dict(self._pending)

    def unpersisted(self) -> set[str]:
        """Tenant ids whose latest write is not in Redis (queued, or refused while queued)."""
        with self._lock:
            return set(self._pending) | set(self._refused)

    # -- the retry thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        """Ping with exponential backoff; once Redis answers, flush; stop when nothing is left."""
        delay = 0.25
        try:
            while not self._closed.wait(delay):
                delay = min(delay * 2, self._max_backoff)
                try:
                    self._ping()
                except redis.RedisError:
                    continue
                self.answered()
                if self.flush():
                    logger.info("%s takes writes again; pending writes flushed", self._where)
                    return
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def flush(self) -> bool:
        """Send every queued write; True when none is left (writes are then no longer held)."""
        for tenant_id, entry in self.pending().items():
            try:
                self._send(tenant_id, entry)
            except redis.RedisError as exc:
                if is_outage(exc):
                    return False
                message = f"{self._where} refused to store tenant {tenant_id!r}: {reason(exc)}"
                logger.error(
                    "%s; %s; the tenant is only in this process's memory", message, refusal_hint(exc, self._keys)
                )
                self._settle(tenant_id, entry, refused=message)
                continue
            self._settle(tenant_id, entry)
            logger.info("persisted pending %s of tenant %r", "delete" if entry is None else "write", tenant_id)
        with self._lock:
            if self._pending:
                return False
            self._held = False
            # Release writes and retire the retry thread in one step: a write that fails right
            # after this must find no thread, and start a new one.
            if self._thread is threading.current_thread():
                self._thread = None
            return True

    def _settle(self, tenant_id: str, entry: Entry, *, refused: str | None = None) -> None:
        with self._lock:
            # Only drop it if no newer write for this tenant arrived meanwhile.
            if tenant_id in self._pending and self._pending[tenant_id] is entry:
                del self._pending[tenant_id]
                if refused is not None:
                    self._refused[tenant_id] = refused

    def close(self) -> None:
        """Stop the thread, make a last attempt at the queue, and log what Redis never took."""
        self._closed.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        if self.pending():
            try:
                self._ping()
                self.flush()
            except redis.RedisError:
                pass
        lost = sorted(self.pending())
        if lost:
            logger.error(
                "closing with %d tenant write(s) %s never took: %s; register them again once it is back",
                len(lost),
                self._where,
                ", ".join(lost),
            )
