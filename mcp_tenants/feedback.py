"""What a running tool call tells its client: progress while it runs, and the log lines it emits.

A call that takes longer than a second sends a progress notification every second (when the
client asked for progress). Log records our code emits on the worker thread during a call are
forwarded to that call's client as MCP log messages, at or above the level the client chose
(``logging/setLevel``, or the per-request level of newer protocol versions).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp_types import LoggingLevel
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tenants.config import redact

#: Python logging level of each MCP log level name.
MCP_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}
#: A level above every real one: forward nothing.
NOTHING = logging.CRITICAL + 100
#: Seconds between progress notifications of a running call.
PROGRESS_INTERVAL = 1.0


@dataclass(frozen=True)
class CallScope:
    """What the worker thread needs to reach the client of the call it runs."""

    loop: asyncio.AbstractEventLoop
    ctx: ServerRequestContext[Any, Any]
    #: The lowest Python logging level the client takes for this call (above CRITICAL: none).
    min_level: int
    #: The MCP level names this request may receive (the SDK's per-request rule).
    allowed: frozenset[str]
    #: Masks secrets in what this call's client is sent (the call's scoped redactor).
    mask: Callable[[str], str] = redact


current_call: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("mcp_call", default=None)


LOG_LEVEL_STATE = "mcp_tenants.log_level"


def connection_state(session: Any) -> dict[str, Any]:
    """The SDK's per-connection scratch state (``Connection.state``) of a request's session.

    Sessions are per request in this SDK; the connection behind them lasts as long as the client.
    """
    state: dict[str, Any] = session._connection.state
    return state


class ClientLogHandler(logging.Handler):
    """Forwards records emitted during a tool call to that call's client as MCP log messages."""

    def emit(self, record: logging.LogRecord) -> None:
        scope = current_call.get()
        if scope is None or record.levelno < scope.min_level:
            return
        level: LoggingLevel = "debug"
        for name, number in MCP_LEVELS.items():  # the highest MCP level not above the record's
            if record.levelno >= number:
                level = name  # type: ignore[assignment]
        if level not in scope.allowed:
            return
        message = scope.mask(record.getMessage())
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(level=level, data=message, logger=record.name)
        )
        # Fire and forget: the worker thread never waits on the event loop. Request-scoped, so on
        # streamable HTTP the line rides the call's own response stream.
        asyncio.run_coroutine_threadsafe(
            scope.ctx.session.send_notification(notification, related_request_id=scope.ctx.request_id), scope.loop
        )


def client_log_scope(
    loop: asyncio.AbstractEventLoop,
    ctx: ServerRequestContext[Any, Any],
    chosen_level: int | None,
    mask: Callable[[str], str] = redact,
) -> CallScope:
    """The log forwarding rule of one call.

    Newer protocol versions opt in per request (the SDK says which levels this request takes);
    older ones choose a level for the connection with ``logging/setLevel`` (``chosen_level``;
    None: nothing until the client chooses).
    """
    allowed = allowed_log_levels(ctx.protocol_version, ctx.meta)
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        min_level = logging.DEBUG if allowed else NOTHING
    else:
        min_level = NOTHING if chosen_level is None else chosen_level
    return CallScope(loop, ctx, min_level, allowed, mask)


class ProgressTicker:
    """Tells the client every second that a call is still running (when it asked for progress).

    Costs one timer per call; the first notification goes out only after a second.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: ServerRequestContext[Any, Any], name: str) -> None:
        self._loop, self._ctx, self._name = loop, ctx, name
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None  # keeps the latest send alive until it finishes
        self._handle = loop.call_later(PROGRESS_INTERVAL, self._tick)

    def _tick(self) -> None:
        elapsed = time.monotonic() - self._started
        self._task = self._loop.create_task(self._send(elapsed))
        self._handle = self._loop.call_later(PROGRESS_INTERVAL, self._tick)

    async def _send(self, elapsed: float) -> None:
        with contextlib.suppress(Exception):  # progress is a courtesy; it must never fail a call
            await self._ctx.session.report_progress(elapsed, None, f"{self._name} running for {elapsed:.0f} s")

    def cancel(self) -> None:
        self._handle.cancel()
