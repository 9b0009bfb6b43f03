"""The MCP server core shared by both servers: worker pool, error boundary, transports, start-up.

Design: the MCP protocol loop runs on one asyncio event loop; no tool handler ever runs on it.
Each tool is a plain synchronous function, run in one bounded, named thread pool
(``MCP_WORKER_THREADS``), so a slow database call never blocks the protocol and the number of
concurrent handlers is capped in one place. The async wrapper around each tool is also the one
error boundary: the project's typed errors become tool errors with their (redacted) message, and
anything else becomes a generic "internal error" with details only in the server log.

While a tool runs, the wrapper keeps its client informed (``feedback``: progress and log
messages), and a per-tenant gate keeps one slow tenant from occupying every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pydantic_core
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, EmptyResult, SetLevelRequestParams, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tenants import __version__
from mcp_tenants.config import Settings, redact
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import InvalidInput, TenantBusy, TenantsError
from mcp_tenants.feedback import (
    LOG_LEVEL_STATE,
    MCP_LEVELS,
    CallScope,
    ClientLogHandler,
    ProgressTicker,
    connection_state,
    current_call,
)
from mcp_tenants.hostguard import HostGuard
from mcp_tenants.httpauth import BearerTokenMiddleware, is_loopback
from mcp_tenants.registry import TenantBackend, TenantManager
from mcp_tenants.store import TenantStore

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Truthful annotations for the three kinds of tool.
READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)


class TenantGate:
    """Caps how many calls of one tenant run at once; a call that waits too long is "tenant busy".

    Used only from the event loop (single-threaded), so it needs no lock. A tenant's semaphore
    lives while calls use it and is dropped after, so the table stays as small as the traffic.
    """

    def __init__(self, per_tenant: int, timeout: float) -> None:
        self._per_tenant = per_tenant
        self._timeout = timeout
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # tenant → (semaphore, [users])

    @contextlib.asynccontextmanager
    async def slot(self, tenant_id: object) -> AsyncIterator[None]:
        """Hold one of the tenant's slots for the duration of a call (no-op for tenant-less tools)."""
        if not isinstance(tenant_id, str):
            yield
            return
        semaphore, users = self._slots.setdefault(tenant_id, (asyncio.Semaphore(self._per_tenant), [0]))
        users[0] += 1
        try:
            try:
                await asyncio.wait_for(semaphore.acquire(), self._timeout)
            except TimeoutError:
                raise TenantBusy(
                    f"tenant {tenant_id!r} is busy: {self._per_tenant} calls of it were already running for "
                    f"{self._timeout:g} s; retry later"
                ) from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._slots[tenant_id]


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, then masks every known secret in the text."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str) -> None:
    """Send every log line to stderr (stdout carries only protocol messages in stdio mode)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK logs every request at INFO; keep that out of the way unless debugging.
    for noisy in ("mcp", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    ours = logging.getLogger("mcp_tenants")
    if not any(isinstance(h, ClientLogHandler) for h in ours.handlers):
        ours.addHandler(ClientLogHandler())


class TenantServer:
    """An ``MCPServer`` whose tools run in a bounded thread pool behind one error boundary."""

    def __init__(self, name: str, settings: Settings, *, instructions: str | None = None) -> None:
        self.settings = settings
        self.mcp = MCPServer(name, version=__version__, instructions=instructions, log_level=settings.log_level)  # type: ignore[arg-type]
        self._executor = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="mcp-tool")
        # A tenant runs at most as many calls as its pool has connections: the rest of its backlog
        # waits here, on the event loop, not in worker threads blocked on its pool. With the
        # defaults (pool 8, workers 16) half the workers stay free for other tenants.
        self._gate = TenantGate(min(settings.pool_max_size, settings.worker_threads), settings.pool_timeout_ms / 1000)
        # MCPServer has no public hook for logging/setLevel; the low-level server does.
        self.mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, self._set_level)

    async def _set_level(self, ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        connection_state(ctx.session)[LOG_LEVEL_STATE] = MCP_LEVELS[params.level]
        return EmptyResult()

    def _client_level(self, ctx: Context) -> int:
        """The lowest level worth forwarding to this call's client (above CRITICAL: nothing)."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return logging.DEBUG  # the SDK drops what this request did not opt in to
        # Until the client chooses a level with logging/setLevel, nothing is forwarded.
        level: int = connection_state(ctx.session).get(LOG_LEVEL_STATE, logging.CRITICAL + 100)
        return level

    def tool(self, annotations: ToolAnnotations, *, title: str | None = None) -> Callable[[F], F]:
        """Register a plain synchronous function as a tool; its signature is the input schema."""

        def decorator(fn: F) -> F:
            name = fn.__name__

            @functools.wraps(fn)
            async def handler(ctx: Context, **kwargs: Any) -> Any:
                return await self.call(name, fn, kwargs, ctx)

            # The tool's own parameters plus the SDK's Context, which is injected, not advertised.
            # Annotations are evaluated here, in the tool's module, where their names are defined.
            signature = inspect.signature(fn, eval_str=True)
            context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
            parameters = [*signature.parameters.values(), context]
            handler.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
            handler.__annotations__ = {
                **{p.name: p.annotation for p in parameters},
                "return": signature.return_annotation,
            }
            self.mcp.add_tool(handler, name=name, title=title, annotations=annotations)
            return fn

        return decorator

    async def call(self, name: str, fn: Callable[..., Any], kwargs: dict[str, Any], ctx: Context) -> Any:
        """Run ``fn`` in the worker pool, turning failures into tool errors a person can act on."""
        loop = asyncio.get_running_loop()
        # The copied context carries the call scope into the worker thread (executors do not).
        run_context = contextvars.copy_context()
        run_context.run(current_call.set, CallScope(loop, ctx, self._client_level(ctx)))
        ticker = ProgressTicker(loop, ctx, name)
        try:
            async with self._gate.slot(kwargs.get("tenant_id")):
                result = await loop.run_in_executor(self._executor, run_context.run, functools.partial(fn, **kwargs))
            # The text block carries the same JSON as the structured content, compact: the SDK's
            # default indents it, which costs time and inflates every large result.
            text = pydantic_core.to_json(result, fallback=str).decode()
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result)
        except TenantsError as exc:
            raise ToolError(redact(str(exc))) from None
        except Exception:
            logger.exception("tool %s failed unexpectedly", name)
            raise ToolError(f"internal error in {name}; the server log has the details") from None
        finally:
            ticker.cancel()

    def close(self) -> None:
        """Stop accepting work; wait for running handlers, drop queued ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- transports ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve on the configured transport until stdin closes or a signal arrives."""
        if self.settings.transport == "stdio":
            asyncio.run(self.mcp.run_stdio_async())
        else:
            asyncio.run(self._serve_http())

    async def _serve_http(self) -> None:
        import uvicorn  # only the HTTP transport needs it

        settings = self.settings
        app: Any = self.mcp.streamable_http_app(stateless_http=True, host=settings.host)
        if settings.auth_token:
            app = BearerTokenMiddleware(app, settings.auth_token)
        # On SIGTERM uvicorn waits for open requests, but not for ever: then serve() cancels
        # what still runs (see ``serve``).
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        logger.info("serving streamable HTTP on http://%s:%d/mcp", settings.host, settings.port)
        await uvicorn.Server(config).serve()


def parse_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line shared by both servers."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog}: multi-tenant MCP server")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], help="default: $MCP_TRANSPORT or stdio")
    parser.add_argument("--host", help="HTTP bind address (default: $MCP_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default: $MCP_PORT or 8000)")
    parser.add_argument("--env-file", help="read settings from this .env file (default: ./.env when present)")
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address without MCP_AUTH_TOKEN",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: $MCP_LOG_LEVEL or INFO)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def load_env_file(path: str | None) -> None:
    """Read a .env file; variables already in the environment win."""
    from dotenv import load_dotenv

    if path is not None:
        if not Path(path).is_file():
            raise InvalidInput(f"--env-file {path!r}: no such file")
        load_dotenv(path, override=False)
    elif Path(".env").is_file():
        load_dotenv(".env", override=False)


def serve(
    prog: str,
    server: str,
    make_backend: Callable[[Settings], TenantBackend[Any, Any]],
    add_tools: Callable[[TenantServer, TenantManager[Any, Any]], None],
    argv: Sequence[str] | None = None,
    *,
    instructions: str | None = None,
) -> int:
    """Start-up shared by both servers: settings → logging → Redis and tenants → serve → close."""
    args = parse_args(prog, argv)
    try:
        load_env_file(args.env_file)
        settings = Settings.from_env(
            server,
            transport=args.transport,
            host=args.host,
            port=args.port,
            allow_unauthenticated=args.allow_unauthenticated,
            log_level=args.log_level.upper() if args.log_level else None,
        )
        codec = SecretCodec(settings.encryption_keys)
        guard = HostGuard(settings.allowed_hosts)
    except TenantsError as exc:
        print(f"{prog}: {redact(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.transport != "stdio" and not settings.auth_token and not is_loopback(settings.host):
        if not settings.allow_unauthenticated:
            logger.error(
                "refusing to serve %s without MCP_AUTH_TOKEN: set a token, bind 127.0.0.1, "
                "or pass --allow-unauthenticated",
                settings.host,
            )
            return 2
        logger.warning("serving %s without authentication (--allow-unauthenticated)", settings.host)
    if not codec.enabled:
        logger.warning("MCP_TENANT_ENCRYPTION_KEY is not set: tenant secrets are stored in Redis in plain text")

    # SIGTERM ends the server like Ctrl-C does: in-flight calls finish, pools close, exit 0.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    backend = make_backend(settings)
    store = TenantStore(settings.redis, backend.server, backend.config_type, codec)
    manager = TenantManager(
        backend,
        store,
        os.environ,
        guard=guard,
        max_open=settings.max_open_tenants,
        idle_seconds=settings.tenant_idle_s,
    )
    app = TenantServer(prog, settings, instructions=instructions)
    logger.info("%s %s starting (pid %d, %s)", prog, __version__, os.getpid(), settings.transport)
    manager.open()
    try:
        add_tools(app, manager)
        app.run()
    except KeyboardInterrupt:
        logger.info("signal received, shutting down")
    finally:
        # Cancel running queries and close the pools first, so the worker threads return at
        # once; then drain the workers. A second signal meanwhile does not stop the cleanup.
        with contextlib.suppress(KeyboardInterrupt):
            manager.close()
            app.close()
    return 0


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
