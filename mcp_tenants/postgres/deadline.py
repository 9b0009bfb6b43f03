"""One deadline per tool call: checking, executing and every fetch, together.

A timer thread cancels whatever the connection runs when the deadline passes
(``cancel_safe``: PostgreSQL's cancel request on a separate connection); the call then fails
with the timeout and its transaction is rolled back, so no lock outlives it. Each statement
also gets ``statement_timeout`` = the time left, so the server enforces the deadline on its own
if the cancel request cannot get through.

PostgreSQL acts on a cancel only when it next checks for interrupts, and some work does not
check for a long time (one row's target list, ``md5`` of a 100 MB value, constants folded while
planning). So if the call has not ended ``ABANDON_AFTER_S`` after the cancel, the connection's
socket is shut down from this side: the call ends at once with the timeout, the pool discards
the connection, and the server process stops when it next checks for interrupts (its work until
then is lost, and it still holds a connection slot; a transaction it holds is rolled back when
it stops, so no lock outlives it either).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any

import psycopg

from mcp_tenants.errors import QueryError

logger = logging.getLogger(__name__)

_CANCEL_TIMEOUT_S = 2.0
#: Seconds a cancelled call may go on before its connection is abandoned.
ABANDON_AFTER_S = 1.0


class Deadline:
    """Cancel ``conn``'s work ``timeout_ms`` after entering; use as a context manager."""

    def __init__(self, conn: psycopg.Connection[Any], timeout_ms: int) -> None:
        self.conn = conn
        self.timeout_ms = timeout_ms
        self.expired = False
        self._end = monotonic() + timeout_ms / 1000
        # The lock orders the timer's cancel against the end of the call: once the call has
        # ended, the timer must not cancel the next call that gets this connection.
        self._lock = threading.Lock()
        self._over = False

    def __enter__(self) -> Deadline:
        self._entry = _WATCHDOG.schedule(self._end, self._cancel)
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        with self._lock:
            self._over = True
        _WATCHDOG.drop(self._entry)

    def remaining_ms(self) -> int:
        """Milliseconds left (at least 1); raises the timeout error once none are left."""
        left = int((self._end - monotonic()) * 1000)
        if left <= 0:
            self.expired = True
            raise self.error()
        return left

    def error(self) -> QueryError:
        """The error a call that ran out of time reports."""
        return QueryError(
            f"statement timed out after {self.timeout_ms} ms (the limit covers checking, running and "
            "fetching); add a filter or a LIMIT, or ask the operator to raise MCP_STATEMENT_TIMEOUT_MS"
        )

    def _cancel(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
            logger.info("deadline of %d ms passed: cancelling the running statement", self.timeout_ms)
            with contextlib.suppress(psycopg.Error):
                self.conn.cancel_safe(timeout=_CANCEL_TIMEOUT_S)
            self._entry = _WATCHDOG.schedule(monotonic() + ABANDON_AFTER_S, self._abandon)

    def _abandon(self) -> None:
        """The cancel was not honoured in time: shut the socket down, so that the call ends now."""
        with self._lock:
            if self._over:
                return
            logger.warning(
                "statement still running %.1f s after its cancel (%d ms deadline): abandoning the connection",
                ABANDON_AFTER_S,
                self.timeout_ms,
            )
            # On a duplicate of the descriptor: the socket is shut down for both, and the
            # descriptor libpq holds stays valid until psycopg closes it.
            with (
                contextlib.suppress(OSError, psycopg.Error),
                socket.socket(fileno=os.dup(self.conn.pgconn.socket)) as sock,
            ):
                sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that runs each scheduled callback at its time (a thread per call costs more
    than a short query). A call that ends drops its entry: the thread is woken only when an
    entry becomes the earliest, and dropped entries are swept out once they are the majority,
    so the heap holds about as many entries as calls in flight."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []  # [when, order, callback or None once dropped]
        self._dropped = 0
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, callback: Callable[[], None]) -> list[Any]:
        entry = [when, next(self._order), callback]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._cond.notify()
        return entry

    def drop(self, entry: list[Any]) -> None:
        with self._cond:
            if entry[2] is None:
                return
            entry[2] = None
            self._dropped += 1
            if self._dropped > 64 and self._dropped * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._dropped = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > monotonic():
                    self._cond.wait(self._heap[0][0] - monotonic() if self._heap else None)
                entry = heapq.heappop(self._heap)
                callback = entry[2]
                if callback is None:
                    self._dropped -= 1
                    continue
                entry[2] = None  # run once; a later drop is a no-op
            callback()  # outside the lock: a cancel is a network round trip


_WATCHDOG = _Watchdog()
