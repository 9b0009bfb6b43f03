"""The deadline's watchdog: one thread, and no entry outlives the call that made it."""

from __future__ import annotations

import threading
from typing import Any

from mcp_tenants.postgres import deadline as deadline_module
from mcp_tenants.postgres.deadline import Deadline


class FakeConnection:
    """Records cancel requests."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel_safe(self, timeout: float) -> None:
        self.cancelled.set()


def test_calls_that_end_leave_no_entries_behind() -> None:
    conn: Any = FakeConnection()
    for _ in range(5_000):
        with Deadline(conn, 30_000):
            pass
    live = [entry for entry in deadline_module._WATCHDOG._heap if entry[2] is not None]
    assert live == []
    assert len(deadline_module._WATCHDOG._heap) <= 200  # swept, not kept for their 30 s
    assert not conn.cancelled.is_set()


def test_a_call_still_running_at_its_deadline_is_cancelled() -> None:
    conn: Any = FakeConnection()
    with Deadline(conn, 1) as running:
        assert conn.cancelled.wait(10)
        assert running.expired
