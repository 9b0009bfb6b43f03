"""Start-up and shutdown shared by both servers: command line, settings, logging, the process.

``serve`` reads the command line and the settings, checks that the server may start as asked
(authentication on a non-loopback bind, a free port), then builds a ``ServerProcess`` (Redis,
the tenant manager, the ``TenantServer`` with its access policy, audit trail and metrics) and
serves on stdio or streamable HTTP (``transports``) until the client leaves or a signal arrives.
Closing the process cancels what still runs, closes the pools and flushes the audit trail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mcp_tenants import __version__
from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.config import TenantConfig, redact
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import InvalidInput, TenantsError
from mcp_tenants.feedback import ClientLogHandler
from mcp_tenants.server import TenantServer
from mcp_tenants.settings import Settings, load_env_file
from mcp_tenants.transports import bind, run_http, run_stdio, signals_ignored

if TYPE_CHECKING:
    from mcp_tenants.registry import TenantBackend, TenantManager

#: Registers a server's tools on the app, over its tenant manager.
AddTools = Callable[[TenantServer, "TenantManager[Any, Any]"], None]

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


class ServerProcess:
    """Everything one server process holds besides its protocol front (``TenantServer``): Redis,
    the tenant manager, the server's tools, the access policy, the audit trail and the metrics.

    Built after the protocol is up on stdio (see ``serve``): Redis, the database driver and the
    SQL parser are imported here, not before the client's ``initialize`` is answered.
    ``app.policy`` and ``app.observers`` are the access policy, the audit trail and the metrics;
    the benchmark swaps them to measure what they cost.
    """

    def __init__(
        self,
        app: TenantServer,
        make_backend: Callable[[Settings], TenantBackend[Any, Any]],
        add_tools: AddTools,
        *,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        from mcp_tenants.access.audit import AuditLog
        from mcp_tenants.access.policy import AccessPolicy
        from mcp_tenants.ops import Ops
        from mcp_tenants.redisconn import make_redis_client
        from mcp_tenants.registry import TenantManager
        from mcp_tenants.store import TenantStore

        self.app = app
        settings = self.settings = app.settings
        backend = make_backend(settings)
        registration = RegistrationPolicy.from_settings(settings)
        # API keys and the audit trail share one client (thread-safe); the store has its own.
        self.redis = make_redis_client(settings.redis)
        self.store = TenantStore(
            settings.redis, backend.server, backend.config_type, SecretCodec(settings.encryption_keys)
        )
        self.manager: TenantManager[Any, Any] = TenantManager(
            backend,
            self.store,
            environ,
            policy=registration,
            max_open=settings.max_open_tenants,
            idle_seconds=settings.tenant_idle_s,
        )
        app.known_ids = self.manager.known_ids
        add_tools(app, self.manager)
        if not registration.tools_enabled:  # MCP_TENANT_TOOLS=off
            for name in ("register_tenant", "remove_tenant"):
                app.remove_tool(name)
        app.policy = AccessPolicy.from_settings(settings, peek=self.manager.peek)
        self.audit = AuditLog(self.redis, backend.server, max_len=settings.audit_max_len)
        self.ops = Ops(backend.server, settings, store=self.store, manager=self.manager)
        self.ops.use_tools(app.tools)  # metric labels only for this server's tools
        self.ops.metrics.watch(audit_dropped=lambda: self.audit.dropped)
        app.observers += [self.audit, self.ops.observer]

    def start(self) -> None:
        """Load the tenants (Redis in the background), start the audit writer and the metrics."""
        self.manager.open()
        self.audit.start()
        self.ops.start()

    def close(self) -> None:
        """Cancel running queries and close the pools first, so the worker threads return at
        once; then drain the workers, flush the audit trail, stop the metrics."""
        with signals_ignored():  # a second signal does not stop the cleanup
            self.manager.close()
            self.app.close()
            self.audit.close()  # after the workers: every call's record is queued by now
            self.ops.close()
            self.redis.close()


def serve(
    prog: str,
    server: str,
    config_type: type[TenantConfig],
    make_backend: Callable[[Settings], TenantBackend[Any, Any]],
    add_tools: AddTools,
    argv: Sequence[str] | None = None,
    *,
    instructions: str | None = None,
) -> int:
    """Start-up shared by both servers: settings → logging → checks → serve → close.

    Over stdio the protocol starts first and the rest (``ServerProcess``) is built on a thread,
    so a desktop client's ``initialize`` is answered in the time the MCP SDK takes to import;
    listing and calling tools wait until it is built. Over HTTP everything is built first: the
    authentication check needs Redis before the port opens.
    """
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
        SecretCodec(settings.encryption_keys)  # a bad key is a usage error, before anything starts
        RegistrationPolicy.from_settings(settings)
    except TenantsError as exc:
        print(f"{prog}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    if not settings.encryption_keys:
        logger.warning("MCP_TENANT_ENCRYPTION_KEY is not set: tenant secrets are stored in Redis in plain text")
    app = TenantServer(prog, settings, instructions=instructions, env_prefix=config_type.ENV_PREFIX)
    built: list[ServerProcess] = []

    def build() -> ServerProcess:
        process = ServerProcess(app, make_backend, add_tools)
        built.append(process)
        return process

    logger.info("%s %s starting (pid %d, %s)", prog, __version__, os.getpid(), settings.transport)
    try:
        if settings.transport == "stdio":
            asyncio.run(run_stdio(app, lambda: build().start()))
        else:
            process = build()
            try:
                auth, listener = _http_entry(settings, process.redis)
            except InvalidInput as exc:
                logger.error("%s", exc)
                return EXIT_USAGE
            try:
                process.start()
                asyncio.run(run_http(app, listener, auth, process.ops))
            finally:
                auth.close()
    except KeyboardInterrupt:  # a signal before the loop could take it over
        logger.info("signal received, shutting down")
    finally:
        for process in built:
            process.close()
        if not built:
            app.close()
    logger.info("%s stopped", prog)
    if built:
        _last_line_written()
    return EXIT_OK


def _last_line_written() -> None:
    """Nothing is logged after this: the process is about to end, and daemon threads may still
    run (the Sentinel listeners, the deadline watcher). One of them writing a log line while the
    interpreter shuts down holds stderr's lock when the interpreter flushes it, and Python then
    aborts the process (SIGABRT, "could not acquire lock for <stderr> at interpreter shutdown")
    instead of exiting with 0."""
    logging.disable(logging.CRITICAL)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()


def _http_entry(settings: Settings, redis_client: Any) -> tuple[Any, socket.socket]:
    """The HTTP authentication and the bound socket; ``InvalidInput`` when the server may not
    serve as configured (no way to authenticate on a non-loopback bind, a busy port)."""
    from mcp_tenants.access.http import build_http_auth, is_loopback  # only the HTTP transport needs it

    auth = build_http_auth(settings, redis_client)
    if not is_loopback(settings.host) and not settings.allow_unauthenticated and not auth.can_authenticate():
        auth.close()
        raise InvalidInput(
            f"refusing to serve {settings.host} without authentication: set MCP_AUTH_TOKEN or MCP_OAUTH_ISSUER, "
            "create an API key (mcp-tenants key create; none is stored, or Redis cannot be reached), bind "
            "127.0.0.1, or pass --allow-unauthenticated"
        )
    if settings.allow_unauthenticated and not is_loopback(settings.host):
        logger.warning("serving %s: callers without credentials are let in (--allow-unauthenticated)", settings.host)
    try:
        return auth, bind(settings.host, settings.port)
    except InvalidInput:
        auth.close()
        raise
