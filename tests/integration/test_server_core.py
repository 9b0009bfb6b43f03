"""The server core as a client meets it: argument errors, unknown names, shutdown, a busy port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from .http import ROOT, HttpServer
from .stdio import Session
from .tenants import pg_env_tenant, pg_register_args

MODULE = "mcp_tenants.postgres"


@pytest.fixture
def make_server(stdio_servers, redis_db):
    return lambda **env: stdio_servers(MODULE, **{**redis_db.env(), "MCP_LOG_LEVEL": "INFO", **env})


def test_argument_errors_name_the_argument_and_never_echo_a_value(make_server, pg_database):
    server = make_server()
    password = pg_database["password"]

    async def scenario(session: Session):
        args = pg_register_args(pg_database)
        missing = await session.fail("register_tenant", **{k: v for k, v in args.items() if k != "database"})
        mistyped = await session.fail("register_tenant", **{**args, "port": password})
        not_a_string = await session.fail("register_tenant", **{**args, "password": {"value": password}})
        typo = await session.fail("register_tenant", **{**args, "databse": "x"})
        return missing, mistyped, not_a_string, typo

    missing, mistyped, not_a_string, typo = server.run(scenario)
    assert "register_tenant: invalid arguments: database: required" in missing
    assert "port: Input should be a valid integer" in mistyped
    assert "password: Input should be a valid string" in not_a_string
    assert "unknown argument 'databse' (did you mean 'database'?)" in typo
    for text in (missing, mistyped, not_a_string, typo, server.logs()):
        assert password not in text


def test_a_mistyped_tenant_id_gets_a_did_you_mean(make_server, pg_database):
    server = make_server(**pg_env_tenant("analytics", pg_database))

    async def scenario(session: Session):
        near = await session.fail("query", tenant_id="analytcs", sql="SELECT 1")
        far = await session.fail("query", tenant_id="zzz", sql="SELECT 1")
        return near, far

    near, far = server.run(scenario)
    assert near.startswith("unknown tenant 'analytcs' (did you mean 'analytics'?)")
    assert far.startswith("unknown tenant 'zzz': register it with register_tenant")
    assert "POSTGRES_TENANT_ZZZ_*" in far


def test_forwarded_log_lines_print_no_warning_on_stderr(make_server, pg_database):
    server = make_server()
    received: list[str] = []

    async def on_log(params):
        received.append(str(params.data))

    async def main():
        async with server.connect(logging_callback=on_log) as client:
            with contextlib.suppress(Exception):
                await client.set_logging_level("info")
            result = await client.call_tool("register_tenant", pg_register_args(pg_database))
            assert not result.is_error

    asyncio.run(main())
    assert any("registered postgres tenant 'acme'" in line for line in received)
    assert "Warning" not in server.logs()


def test_sigterm_over_stdio_lets_a_running_call_finish_while_stdin_stays_open(make_server, pg_database):
    server = make_server(**pg_env_tenant("envy", pg_database))

    seen: dict[str, object] = {}

    async def main():
        async with server.connect() as client:
            await client.list_tools()  # as clients do; the client checks results against the listing
            call = asyncio.create_task(client.call_tool("query", {"tenant_id": "envy", "sql": "SELECT pg_sleep(2), 7"}))
            await asyncio.sleep(0.5)
            pid = int(re.search(r"starting \(pid (\d+)", server.logs()).group(1))
            os.kill(pid, signal.SIGTERM)
            seen["result"] = await asyncio.wait_for(call, 30)
            began = time.monotonic()
            while _alive(pid) and time.monotonic() - began < 15:  # stdin is still open here
                await asyncio.sleep(0.05)
            seen["alive"] = _alive(pid)

    with contextlib.suppress(Exception):  # leaving the client may report the closed pipe
        asyncio.run(main())
    result = seen["result"]
    assert not result.is_error and result.structured_content["rows"] == [["", 7]]
    assert seen["alive"] is False
    assert "signal received, shutting down" in server.logs() and "stopped" in server.logs()


def test_sigterm_over_http_lets_a_call_sent_a_second_before_finish(pg_database, redis_db):
    server = HttpServer(MODULE, {**redis_db.env(), **pg_env_tenant("envy", pg_database)})
    try:
        server.wait_ready()

        async def main():
            async with server.client(None) as client:
                await client.list_tools()
                call = asyncio.create_task(
                    client.call_tool("query", {"tenant_id": "envy", "sql": "SELECT pg_sleep(3), 1"})
                )
                await asyncio.sleep(1)
                server.process.send_signal(signal.SIGTERM)
                return await asyncio.wait_for(call, 30)

        result = asyncio.run(main())
        assert not result.is_error and result.structured_content["rows"] == [["", 1]]
        assert server.process.wait(timeout=30) == 0
    finally:
        server.close()


def test_a_port_in_use_is_a_clear_error_before_anything_says_serving(redis_db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", MODULE, "--transport", "streamable-http", "--port", str(port)],
            env={"PATH": os.environ.get("PATH", ""), **redis_db.env()},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_request_over_the_size_limit_is_refused_unread_and_the_session_goes_on(make_server, pg_database):
    server = make_server(MCP_MAX_REQUEST_BYTES=str(1 << 20), **pg_env_tenant("envy", pg_database))

    async def scenario(session: Session):
        with pytest.raises(Exception, match="request too large: over 1048576 bytes"):
            await session.client.call_tool(
                "query", {"tenant_id": "envy", "sql": "SELECT $1", "params": ["x" * (2 << 20)]}
            )
        return await session.call("query", tenant_id="envy", sql="SELECT 2")

    assert server.run(scenario)["rows"] == [[2]]
    assert "refused a message over 1048576 bytes" in server.logs()
