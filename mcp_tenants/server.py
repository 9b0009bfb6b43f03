"""The MCP server core shared by both servers: tools, the one call path, the worker pool.

Design: the protocol runs on one asyncio event loop, on the SDK's low-level ``Server``; no tool
handler ever runs on the loop. Each tool is a plain synchronous function (``toolspec``), run in
one bounded, named thread pool (``MCP_WORKER_THREADS``), so a slow database call never blocks the
protocol and the number of concurrent handlers is capped in one place.

Every ``tools/call`` takes the same path, in ``TenantServer.call``: validate the arguments →
who is calling (the principal) → may they (grant and role) → the tenant's gate → a worker →
the result → one audit record and the metrics. It is also the one error boundary: the project's
typed errors become tool errors with their (redacted) message; anything else becomes a generic
"internal error", with details only in the server log. Tools never check principals themselves.

Why the low-level ``Server`` and not ``MCPServer``: ``MCPServer`` validates every result against
its output schema and dumps it twice more on the way out; for 100,000 rows that is most of a
call. Here a result is checked by the code that built it and serialised once, by the transport
(``ResultPassthrough``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from mcp_tenants import __version__, rawjson
from mcp_tenants.calls import CallGate, CallObserver, CallPolicy, CallRecord, OpenPolicy, ResultPassthrough
from mcp_tenants.config import redact
from mcp_tenants.errors import (
    InvalidInput,
    QueryError,
    StorageError,
    TenantBusy,
    TenantsError,
    UnknownTenant,
    unknown_tenant,
)
from mcp_tenants.feedback import (
    LOG_LEVEL_STATE,
    MCP_LEVELS,
    ProgressTicker,
    client_log_scope,
    connection_state,
    current_call,
)
from mcp_tenants.settings import Settings
from mcp_tenants.toolspec import Action, ActionRule, ToolSpec, build_spec

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Truthful annotations for the kinds of tool.
READS = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
WRITES = types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
#: Writes that can destroy data: delete, overwrite, run arbitrary DDL.
DESTRUCTIVE_WRITES = types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
DELETES = types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)

#: How long in-flight calls may run on after a stop signal before they are cancelled.
GRACE_SECONDS = 5.0

#: The principal of the call a worker thread is running.
_caller: contextvars.ContextVar[Any] = contextvars.ContextVar("mcp_tenants.caller")


class TenantServer:
    """The low-level MCP ``Server`` with this project's tools, call path and worker pool."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        instructions: str | None = None,
        env_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.name = name
        self.policy: CallPolicy = OpenPolicy()
        self.observers: list[CallObserver] = []
        #: Every tenant id the server knows of (for "did you mean"); the tenant manager's.
        self.known_ids: Callable[[], set[str]] = set
        self._env_prefix = env_prefix
        # Set while the tools are being registered in the background (``set_up``).
        self._setup: asyncio.Future[None] | None = None
        self._specs: dict[str, ToolSpec] = {}
        self._listing: types.ListToolsResult | None = None
        self._executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="mcp-tool")
        # A tenant runs at most as many calls as its pool has connections: the rest of its backlog
        # waits here, on the event loop, not in worker threads blocked on its pool. With the
        # defaults (pool 8, workers 16) half the workers stay free for other tenants.
        self._gate = CallGate(min(settings.pool_max_size, settings.worker_threads), settings.pool_timeout_ms / 1000)
        # And one caller at most MCP_PRINCIPAL_MAX_CALLS (half the workers by default), so one team
        # with several tenants cannot occupy every worker either.
        self._fair = CallGate(settings.principal_limit, settings.pool_timeout_ms / 1000, what="caller")
        self._passthrough = ResultPassthrough()
        self.lowlevel: Server[Any] = Server(
            name,
            version=__version__,
            instructions=instructions,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,  # type: ignore[arg-type]  # the runner takes wire dicts too
        )
        self.lowlevel.middleware.append(self._passthrough)
        # Registered as a plain handler: the constructor argument for it warns on every start.
        self.lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self.draining = False
        #: True when the transport writes ``RawJson`` values itself (stdio); else they are parsed.
        self.raw_output = False

    # -- tools --------------------------------------------------------------------------------

    def tool(
        self, annotations: types.ToolAnnotations, *, title: str | None = None, action: ActionRule | None = None
    ) -> Callable[[F], F]:
        """Register a plain synchronous function as a tool; its signature is the input schema.

        ``action`` is what a caller's role must allow (default: from the annotations); a function
        of the arguments when it depends on them.
        """

        def decorator(fn: F) -> F:
            spec = build_spec(fn, annotations, title=title, action=action)
            self._specs[spec.name] = spec
            self._listing = None
            return fn

        return decorator

    def remove_tool(self, name: str) -> None:
        """Take a tool off the list (e.g. tenant management when ``MCP_TENANT_TOOLS=off``)."""
        self._specs.pop(name, None)
        self._listing = None

    @property
    def tools(self) -> Mapping[str, ToolSpec]:
        """The registered tools by name."""
        return self._specs

    def set_up(self, setup: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``setup`` (which registers the tools) on a thread while the protocol already
        answers: ``initialize`` needs none of it. Listing and calling tools wait for it."""
        self._setup = asyncio.get_running_loop().run_in_executor(None, setup)
        return self._setup

    async def _set_up(self) -> None:
        if self._setup is not None:
            await asyncio.shield(self._setup)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        await self._set_up()
        if self._listing is None:
            self._listing = types.ListToolsResult(tools=[spec.listing for spec in self._specs.values()])
        return self._listing

    async def _set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        connection_state(ctx.session)[LOG_LEVEL_STATE] = MCP_LEVELS[params.level]
        return types.EmptyResult()

    # -- the call path ------------------------------------------------------------------------

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> dict[str, Any]:
        await self._set_up()
        return self._passthrough.park(ctx, await self.call(ctx, params.name, params.arguments))

    async def call(
        self, ctx: ServerRequestContext[Any, Any], name: str, arguments: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Run one tool call to its wire-form result (``CallToolResult`` as a dict)."""
        started = time.monotonic()
        spec = self._specs.get(name)
        principal = self.policy.principal(ctx)
        record = CallRecord(
            time=time.time(),
            principal=str(getattr(principal, "name", principal)),
            kind=getattr(principal, "kind", None),
            tool=name,
        )
        tenant_id: str | None = None
        mask: Callable[[str], str] = redact
        self._enter()
        for observer in self.observers:
            observer.call_started(name)
        ticker = ProgressTicker(asyncio.get_running_loop(), ctx, name)
        try:
            if spec is None:
                raise InvalidInput(f"unknown tool {name!r}; tools/list shows the tools of this server")
            if self.draining:
                raise TenantBusy("the server is shutting down; retry on another instance or after the restart")
            kwargs = spec.parse(arguments)
            tenant_id = kwargs.get("tenant_id") if spec.tenant_scoped else None
            record.update(tenant=tenant_id, subject=_subject(kwargs))
            mask = self.policy.redactor(principal, tenant_id, kwargs)
            self.policy.authorize(principal, spec.action_for(kwargs), tenant_id)
            async with self._fair.slot(self.policy.fair_share(principal)), self._gate.slot(tenant_id):
                result = await self._run(ctx, spec, principal, kwargs, mask)
            text = rawjson.dumps(result)
            record.update(outcome="ok", rows=result.get("row_count"), bytes=len(text))
            if not self.raw_output and rawjson.holds_raw(result):
                result = rawjson.decoded(result)
            return {"content": [{"type": "text", "text": text}], "structuredContent": result, "isError": False}
        except TenantsError as exc:
            message = self._message(exc, principal, tenant_id)
            record.update(outcome="error", error=type(exc).__name__)
            # The database's or the object store's words about the caller's own statement or
            # request come back as they were, like query results do: masking text the caller can
            # make the backend compute (reverse($$guess$$)::int) would tell them which guess is a
            # secret. Everything else (connections, Redis, our own messages) is masked.
            return _error(message if isinstance(exc, _CALLER_ECHOES) else mask(message))
        except Exception:
            logger.exception("tool %s failed unexpectedly", name)
            record.update(outcome="error", error="InternalError")
            return _error(f"internal error in {name}; the server log has the details")
        finally:
            ticker.cancel()
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
            self._leave()
            for observer in self.observers:
                observer.call_finished(record)

    async def _run(
        self,
        ctx: ServerRequestContext[Any, Any],
        spec: ToolSpec,
        principal: Any,
        kwargs: dict[str, Any],
        mask: Callable[[str], str] = redact,
    ) -> Any:
        loop = asyncio.get_running_loop()
        # The copied context carries the call scope and the principal into the worker thread.
        run_context = contextvars.copy_context()
        chosen = connection_state(ctx.session).get(LOG_LEVEL_STATE)
        run_context.run(current_call.set, client_log_scope(loop, ctx, chosen, mask))

        run_context.run(_caller.set, principal)

        def work() -> Any:
            with self.policy.use(principal):
                return spec.fn(**kwargs)

        return await loop.run_in_executor(self._executor, run_context.run, work)

    def caller_may(self, action: Action) -> bool:
        """Inside a tool: True when the caller of the running call may ``action`` (read, write, admin)."""
        return self.policy.may(_caller.get(None), action)

    def visible(self) -> Callable[[str], bool]:
        """Inside a tool: which tenant ids exist for the caller of the running call."""
        principal = _caller.get(None)
        return lambda tenant_id: self.policy.sees(principal, tenant_id)

    def _message(self, exc: TenantsError, principal: Any, tenant_id: str | None) -> str:
        """The text a caller sees. Every unknown tenant reads the same, whether it does not exist
        or is outside the caller's grant; suggestions come only from the tenants the caller sees."""
        if not isinstance(exc, UnknownTenant):
            return str(exc)
        wanted = exc.tenant_id or tenant_id or ""
        try:
            candidates = {t for t in self.known_ids() if self.policy.sees(principal, t)}
        except TenantsError:
            candidates = set()
        return unknown_tenant(wanted, self._env_prefix, candidates)

    # -- draining -----------------------------------------------------------------------------

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def drain(self, grace: float = GRACE_SECONDS) -> bool:
        """Refuse new calls and wait up to ``grace`` seconds for the running ones; True if they all ended."""
        self.draining = True
        if self._in_flight == 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        return self._in_flight == 0

    def close(self) -> None:
        """Stop accepting work; wait for running handlers, drop queued ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


#: Errors whose text the backend derived from the caller's own statement or request.
_CALLER_ECHOES = (QueryError, StorageError)

_SUBJECT_MAX = 2048


def _subject(kwargs: Mapping[str, Any]) -> str | None:
    """What a call acted on, for the audit trail: the statement, or bucket/key (cut at 2 KiB)."""
    if isinstance(kwargs.get("sql"), str):
        subject: str = kwargs["sql"]
    elif isinstance(kwargs.get("bucket"), str):
        key = kwargs.get("key")
        subject = f"{kwargs['bucket']}/{key}" if isinstance(key, str) else kwargs["bucket"]
    else:
        return None
    return subject if len(subject) <= _SUBJECT_MAX else subject[: _SUBJECT_MAX - 3] + "..."
