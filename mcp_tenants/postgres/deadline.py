"""One deadline per tool call: checking, executing and every fetch, together.

A timer thread cancels whatever the connection runs when the deadline passes
(``cancel_safe``: PostgreSQL's cancel request on a separate connection); the call then fails
with the timeout and its transaction is rolled back, so no lock outlives it. Each statement
also gets ``statement_timeout`` = the time left, so the server enforces the deadline on its own
if the cancel request cannot get through.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from time import monotonic
from types import TracebackType
from typing import Any

import psycopg

from mcp_tenants.errors import QueryError

logger = logging.getLogger(__name__)

_CANCEL_TIMEOUT_S = 2.0


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
        _WATCHDOG.schedule(self._end, self._cancel)
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        with self._lock:
            self._over = True

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


class _Watchdog:
    """One thread that runs each scheduled callback at its time (a thread per call costs more
    than a short query). Callbacks of calls that ended find their deadline over and return."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="query-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > monotonic():
                    self._cond.wait(self._heap[0][0] - monotonic() if self._heap else None)
                _when, _n, callback = heapq.heappop(self._heap)
            callback()  # outside the lock: a cancel is a network round trip


_WATCHDOG = _Watchdog()
