"""The two transports and their shutdown: stdio and streamable HTTP, stopped by SIGTERM or SIGINT.

Both stop the same way: stop taking calls, give the running ones ``GRACE_SECONDS`` to finish and
send their answers, then return; the caller cancels what still runs (in PostgreSQL too) and
closes the pools. A stdio client that keeps stdin open does not hold the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

from mcp_tenants.errors import InvalidInput
from mcp_tenants.ops import Ops
from mcp_tenants.server import GRACE_SECONDS, TenantServer

logger = logging.getLogger(__name__)


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


async def run_stdio(app: TenantServer, setup: Callable[[], None] | None = None) -> None:
    """Serve one client on stdin/stdout until it closes stdin or a signal arrives.

    ``setup`` (registering the tools, opening the tenants) runs on a thread once the protocol
    answers; if it fails, the server stops (the log says why).
    """
    from mcp_tenants.stdio import stdio_streams

    stop = _stop_on_signals()
    app.raw_output = True  # the stdio writer splices pre-encoded JSON into its messages
    async with stdio_streams(app.settings.request_limit) as (read_stream, write_stream, traffic):
        serving = asyncio.create_task(
            app.lowlevel.run(read_stream, write_stream, app.lowlevel.create_initialization_options())
        )
        if setup is not None:
            app.set_up(setup).add_done_callback(lambda done: _stop_if_failed(done, stop))
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


def _stop_if_failed(setup: asyncio.Future[None], stop: asyncio.Event) -> None:
    if not setup.cancelled() and setup.exception() is not None:
        logger.error("the server could not start", exc_info=setup.exception())
        stop.set()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (a second one is ignored while shutting down)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGTERM and SIGINT for the duration (so a second signal cannot stop the cleanup)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
