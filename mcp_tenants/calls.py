"""The parts of one tool call that the server core composes: who may do what (``CallPolicy``,
implemented by ``mcp_tenants.access``), who hears about it (``CallObserver``: the audit trail and
the metrics), how many run at once (``CallGate``), and how a result reaches the transport
unchanged (``ResultPassthrough``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_tenants.config import redact
from mcp_tenants.errors import TenantBusy
from mcp_tenants.toolspec import Action


class CallGate:
    """Caps how many calls of one key (a tenant, a principal) run at once; a call that waits too
    long is refused with "busy".

    Used only from the event loop (single-threaded), so it needs no lock. A key's semaphore lives
    while calls use it and is dropped after, so the table stays as small as the traffic.
    """

    def __init__(self, limit: int, timeout: float, *, what: str = "tenant") -> None:
        self._limit = limit
        self._timeout = timeout
        self._what = what
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # key → (semaphore, [users])

    @contextlib.asynccontextmanager
    async def slot(self, key: object) -> AsyncIterator[None]:
        """Hold one of the key's slots for the duration of a call (no-op when ``key`` is None)."""
        if not isinstance(key, str):
            yield
            return
        semaphore, users = self._slots.setdefault(key, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            try:
                await asyncio.wait_for(semaphore.acquire(), self._timeout)
            except TimeoutError:
                raise TenantBusy(
                    f"{self._what} {key!r} is busy: {self._limit} calls of it were already running for "
                    f"{self._timeout:g} s; retry later"
                ) from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._slots[key]


class CallPolicy(Protocol):
    """Who is calling and what they may do (``mcp_tenants.access`` implements it)."""

    def principal(self, ctx: ServerRequestContext[Any, Any]) -> Any:
        """The caller of this request."""

    def authorize(self, principal: Any, action: Action, tenant_id: str | None) -> None:
        """Raise ``UnknownTenant`` for a tenant outside the grant, ``AccessDenied`` for a missing role."""

    def sees(self, principal: Any, tenant_id: str) -> bool:
        """True when ``tenant_id`` exists for ``principal`` (for suggestions and listings)."""

    def may(self, principal: Any, action: Action) -> bool:
        """True when ``principal``'s role allows ``action`` (whatever the tenant)."""

    def use(self, principal: Any) -> contextlib.AbstractContextManager[None]:
        """Make ``principal`` the current caller while a tool runs (in the worker thread)."""

    def redactor(self, principal: Any, tenant_id: str | None, arguments: Mapping[str, Any]) -> Callable[[str], str]:
        """How to mask secrets in what this call returns."""

    def fair_share(self, principal: Any) -> str | None:
        """The key under which ``principal``'s calls share ``MCP_PRINCIPAL_MAX_CALLS`` (None: no cap)."""


class OpenPolicy:
    """Everyone may do everything: the operator on stdio, until an access policy is installed."""

    def principal(self, ctx: ServerRequestContext[Any, Any]) -> str:
        return "operator"

    def authorize(self, principal: Any, action: Action, tenant_id: str | None) -> None:
        return None

    def sees(self, principal: Any, tenant_id: str) -> bool:
        return True

    def may(self, principal: Any, action: Action) -> bool:
        return True

    def use(self, principal: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def redactor(self, principal: Any, tenant_id: str | None, arguments: Mapping[str, Any]) -> Callable[[str], str]:
        return redact

    def fair_share(self, principal: Any) -> str | None:
        return None


class CallObserver(Protocol):
    """Audit and metrics: told about every call once it has ended. Must never block."""

    def call_started(self, tool: str) -> None: ...

    def call_finished(self, record: CallRecord) -> None: ...


class CallRecord(dict[str, Any]):
    """What one call did: time, principal, tenant, tool, subject, outcome, error kind, duration, size."""


class ResultPassthrough:
    """Server middleware: a ``tools/call`` result goes to the transport as the tool built it.

    The SDK validates and re-dumps every result against the protocol's models before it is sent,
    which for a large structured result costs more than producing it. The call handler hands
    the runner a small placeholder (validated as usual: envelope, ``_meta``, ``resultType``) and
    parks the real content here under its request context; this middleware puts it back.
    """

    def __init__(self) -> None:
        # Keyed by id(ctx): the runner passes the same context object to the middleware and the
        # handler, and it lives until the middleware returns, so the key is unique meanwhile.
        self._parked: dict[int, dict[str, Any]] = {}

    def park(self, ctx: ServerRequestContext[Any, Any], result: dict[str, Any]) -> dict[str, Any]:
        """A placeholder for ``result`` (a wire-form ``CallToolResult``)."""
        self._parked[id(ctx)] = result
        # resultType: required from 2026-07-28 on; the sieve drops it for older versions.
        return {"content": [], "isError": result.get("isError", False), "resultType": "complete"}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            result = await call_next(ctx)
        finally:
            parked = self._parked.pop(id(ctx), None)
        if parked is None or not isinstance(result, dict):
            return result
        return {**result, **parked}
