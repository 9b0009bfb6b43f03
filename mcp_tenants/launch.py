"""Start-up and shutdown shared by both servers: command line, settings, logging, transports, signals.

``serve`` reads the settings, builds the tenant manager and the ``TenantServer``, then serves on
stdio or streamable HTTP until the client leaves or a signal arrives. SIGTERM and SIGINT are
handled the same way on both transports: stop taking calls, give the running ones
``GRACE_SECONDS`` to finish, cancel what still runs (in PostgreSQL too), close the pools, exit 0
— whether or not a stdio client keeps stdin open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mcp_tenants import __version__
from mcp_tenants.access.audit import AuditLog
from mcp_tenants.access.policy import AccessPolicy
from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.config import Settings, load_env_file, redact
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import InvalidInput, TenantsError
from mcp_tenants.feedback import ClientLogHandler
from mcp_tenants.ops import Ops
from mcp_tenants.redisconn import make_redis_client
from mcp_tenants.registry import TenantBackend, TenantManager
from mcp_tenants.server import GRACE_SECONDS, TenantServer
from mcp_tenants.store import TenantStore

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2


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
    # Warnings (the SDK's deprecation notices among them) go to the log, not raw onto stderr.
    logging.captureWarnings(True)


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
        registration = RegistrationPolicy.from_settings(settings)
    except TenantsError as exc:
        print(f"{prog}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    # API keys and the audit trail share one client (thread-safe); the store has its own.
    redis_client = make_redis_client(settings.redis)
    auth = None
    if settings.transport != "stdio":
        from mcp_tenants.access.http import build_http_auth, is_loopback  # only the HTTP transport needs it

        try:
            auth = build_http_auth(settings, redis_client)
        except TenantsError as exc:
            logger.error("%s", exc)
            return EXIT_USAGE
        if not is_loopback(settings.host) and not settings.allow_unauthenticated and not auth.can_authenticate():
            auth.close()
            logger.error(
                "refusing to serve %s without authentication: set MCP_AUTH_TOKEN or MCP_OAUTH_ISSUER, create "
                "an API key (mcp-tenants key create; none is stored, or Redis cannot be reached), bind "
                "127.0.0.1, or pass --allow-unauthenticated",
                settings.host,
            )
            return EXIT_USAGE
        if settings.allow_unauthenticated and not is_loopback(settings.host):
            logger.warning(
                "serving %s: callers without credentials are let in (--allow-unauthenticated)", settings.host
            )
    if not codec.enabled:
        logger.warning("MCP_TENANT_ENCRYPTION_KEY is not set: tenant secrets are stored in Redis in plain text")

    listener = None
    if settings.transport != "stdio":
        try:
            listener = bind(settings.host, settings.port)
        except InvalidInput as exc:
            logger.error("%s", exc)
            return EXIT_USAGE

    backend = make_backend(settings)
    store = TenantStore(settings.redis, backend.server, backend.config_type, codec)
    manager = TenantManager(
        backend,
        store,
        os.environ,
        policy=registration,
        max_open=settings.max_open_tenants,
        idle_seconds=settings.tenant_idle_s,
    )
    app = TenantServer(
        prog,
        settings,
        instructions=instructions,
        env_prefix=backend.config_type.ENV_PREFIX,
        known_ids=manager.known_ids,
    )
    add_tools(app, manager)
    if not registration.tools_enabled:  # MCP_TENANT_TOOLS=off
        for name in ("register_tenant", "remove_tenant"):
            app.remove_tool(name)
    app.policy = AccessPolicy.from_settings(settings, peek=manager.peek)
    audit = AuditLog(redis_client, backend.server, max_len=settings.audit_max_len).start()
    ops = Ops(server, settings, store=store, manager=manager)
    ops.metrics.watch(audit_dropped=lambda: audit.dropped)
    app.observers += [audit, ops.observer]
    logger.info("%s %s starting (pid %d, %s)", prog, __version__, os.getpid(), settings.transport)
    manager.open()
    try:
        ops.start()
        if listener is None:
            asyncio.run(run_stdio(app))
        else:
            asyncio.run(run_http(app, listener, auth, ops))
    except KeyboardInterrupt:  # a signal before the loop could take it over
        logger.info("signal received, shutting down")
    finally:
        # Cancel running queries and close the pools first, so the worker threads return at
        # once; then drain the workers. A second signal meanwhile does not stop the cleanup.
        with _signals_ignored():
            manager.close()
            app.close()
            audit.close()  # after the workers: every call's record is queued by now
            ops.close()
            if auth is not None:
                auth.close()
            redis_client.close()
    logger.info("%s stopped", prog)
    return EXIT_OK


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving", so a busy port is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidInput(
                f"cannot listen on {host}:{port}: the port is already in use; stop the other process "
                "or choose another port with --port or MCP_PORT"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidInput(
                f"cannot listen on {host}:{port}: {host} is not an address of this machine; check --host or MCP_HOST"
            ) from None
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


async def run_stdio(app: TenantServer) -> None:
    """Serve one client on stdin/stdout until it closes stdin or a signal arrives."""
    from mcp_tenants.stdio import stdio_streams

    stop = _stop_on_signals()
    app.raw_output = True  # the stdio writer splices pre-encoded JSON into its messages
    async with stdio_streams(app.settings.request_limit) as (read_stream, write_stream, traffic):
        serving = asyncio.create_task(
            app.lowlevel.run(read_stream, write_stream, app.lowlevel.create_initialization_options())
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            logger.info("signal received, shutting down")
            app.draining = True  # calls that arrive now are refused at once
            try:
                await asyncio.wait_for(traffic.answered(), GRACE_SECONDS)
            except TimeoutError:
                logger.warning("calls still running after %g s are cancelled", GRACE_SECONDS)
            traffic.end_input()  # the server returns as if the client had closed stdin
        stopping.cancel()
        try:
            await asyncio.wait_for(serving, GRACE_SECONDS)
        except TimeoutError:
            logger.warning("the protocol loop did not end; leaving it")


async def run_http(app: TenantServer, listener: socket.socket, auth: Any, ops: Ops | None = None) -> None:
    """Serve streamable HTTP (stateless, so replicas can share a load balancer) until a signal.

    ``auth`` (``access.http.HttpAuth``) guards every path but the public ones and adds the OAuth
    protected-resource metadata."""
    import uvicorn  # only the HTTP transport needs it

    settings = app.settings
    asgi: Any = app.lowlevel.streamable_http_app(
        stateless_http=True,
        host=settings.host,
        max_request_body_size=settings.request_limit,
        custom_starlette_routes=auth.routes,
    )
    asgi = auth.wrap(asgi)
    ops = ops or Ops(settings.server, settings)
    asgi = ops.wrap(asgi)  # /healthz and /readyz answer ahead of authentication
    config = uvicorn.Config(
        asgi, log_level="warning", lifespan="on", timeout_graceful_shutdown=int(GRACE_SECONDS), access_log=False
    )
    server = _uvicorn_server(config)
    stop = _stop_on_signals()

    async def on_stop() -> None:
        while not server.started and not stop.is_set():
            await asyncio.sleep(0.02)
        if not stop.is_set():
            ops.readiness.mark_ready()
        await stop.wait()
        logger.info("signal received, shutting down")
        await ops.drain()  # /readyz is 503 now; keep serving MCP_DRAIN_SECONDS
        app.draining = True
        server.should_exit = True  # uvicorn stops accepting, then waits for open requests

    watcher = asyncio.create_task(on_stop())
    host, port = listener.getsockname()[:2]
    logger.info("serving streamable HTTP on http://%s:%d/mcp", _url_host(host), port)
    try:
        await server.serve(sockets=[listener])
    finally:
        watcher.cancel()


def _uvicorn_server(config: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its own signal handling: ``run_http`` owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a second one is ignored while shutting down)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
