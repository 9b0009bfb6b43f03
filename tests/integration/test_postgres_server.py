"""The PostgreSQL server end to end over stdio: a real client, real Redis, real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time

import pytest

from mcp_tenants.devservices import RedisService, free_ports

from .stdio import Session, ToolFailed
from .tenants import POSTGRES_TOOLS, pg_env_tenant, pg_register_args

MODULE = "mcp_tenants.postgres"


@pytest.fixture
def make_server(stdio_servers, redis_db):
    """Servers on the test's Redis database; their logs are checked for secrets."""
    return lambda **env: stdio_servers(MODULE, **{**redis_db.env(), "MCP_LOG_LEVEL": "INFO", **env})


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def test_seed_scenario_register_restart_still_there_and_query_works(make_server, pg_database, redis_db):
    server = make_server()

    async def register(session: Session):
        result = await session.call("register_tenant", **pg_register_args(pg_database))
        assert result["persisted"] is True
        assert result["tenant"]["tenant_id"] == "acme" and "password" not in result["tenant"]
        return session.transcript

    async def after_restart(session: Session):
        tenants = (await session.call("list_tenants"))["tenants"]
        assert [(t["tenant_id"], t["source"]) for t in tenants] == [("acme", "redis")]
        rows = await session.call("query", tenant_id="acme", sql="SELECT $1::int + 1 AS answer", params=[41])
        assert rows["rows"] == [[42]] and rows["columns"][0]["name"] == "answer"
        return session.transcript

    first = server.run(register)
    stored = redis_db.client.get("mcp:postgres:tenant:acme")
    assert '"host"' in stored  # readable with redis-cli GET
    second = server.run(after_restart)
    assert_no_secret(pg_database["password"], *first, *second, server.logs())


def test_wrong_password_is_refused_and_nothing_is_stored(make_server, pg_database, redis_db):
    server = make_server()

    async def scenario(session: Session):
        error = await session.fail("register_tenant", **pg_register_args(pg_database, password="not-the-password-9"))
        assert "cannot connect" in error and "the password was refused" in error and "password argument" in error
        assert "not-the-password-9" not in error
        assert (await session.call("list_tenants"))["tenants"] == []
        assert "unknown tenant" in await session.fail("query", tenant_id="acme", sql="SELECT 1")

    server.run(scenario)
    assert redis_db.client.keys("mcp:*:tenant:*") == []  # tenants only: the audit stream records the attempt
    assert "not-the-password-9" not in server.logs()


def test_redis_down_at_start_serves_env_tenants_and_registers_in_memory(make_server, pg_database):
    (closed_port,) = free_ports(1)
    server = make_server(REDIS_HOST="127.0.0.1", REDIS_PORT=str(closed_port), **pg_env_tenant("envy", pg_database))

    async def scenario(session: Session):
        assert (await session.call("query", tenant_id="envy", sql="SELECT 1 AS one"))["rows"] == [[1]]
        result = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="offline"))
        assert result["persisted"] is False
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"envy": "env", "offline": "memory"}
        assert (await session.call("query", tenant_id="offline", sql="SELECT 2"))["rows"] == [[2]]

    started = time.monotonic()
    server.run(scenario)
    logs = server.logs()
    assert "unavailable" in logs and "WARNING" in logs
    assert time.monotonic() - started < 60  # a hang guard, not a performance claim
    assert_no_secret(pg_database["password"], logs)


def test_redis_killed_mid_run_then_restarted_persists_outage_registrations(make_server, pg_database):
    redis = RedisService()
    redis.start()
    try:
        server = make_server(REDIS_HOST=redis.host, REDIS_PORT=str(redis.port), REDIS_DB="0")
        client = redis.client(decode_responses=True)

        async def scenario(session: Session):
            assert (await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="before")))[
                "persisted"
            ] is True
            redis.kill()
            during = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="during"))
            assert during["persisted"] is False
            # Still serving while Redis is down.
            assert (await session.call("query", tenant_id="before", sql="SELECT 1"))["rows"] == [[1]]
            redis.start()  # same port, empty (no persistence configured)
            for _ in range(200):
                if client.exists("mcp:postgres:tenant:during"):
                    break
                await asyncio.sleep(0.05)
            assert client.exists("mcp:postgres:tenant:during"), "outage registration was not written back"
            after = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="after"))
            assert after["persisted"] is True
            sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
            assert sources["during"] == "redis" and sources["after"] == "redis"

        server.run(scenario)
        assert client.exists("mcp:postgres:tenant:after")
    finally:
        redis.stop()


def test_env_wins_over_redis_and_cannot_be_removed(make_server, pg_database, redis_db):
    redis_db.client.set(
        "mcp:postgres:tenant:envy",
        '{"tenant_id": "envy", "host": "elsewhere.invalid", "port": 5432, "database": "x", "user": "x",'
        ' "password": "x", "sslmode": "prefer", "access": "read-only"}',
    )
    server = make_server(**pg_env_tenant("envy", pg_database))

    async def scenario(session: Session):
        tenants = (await session.call("list_tenants"))["tenants"]
        assert [(t["tenant_id"], t["source"], t["host"]) for t in tenants] == [("envy", "env", pg_database["host"])]
        assert (await session.call("query", tenant_id="envy", sql="SELECT current_user"))["rows"] == [
            [pg_database["user"]]
        ]
        assert "environment" in await session.fail("remove_tenant", tenant_id="envy")
        assert "environment" in await session.fail("register_tenant", **pg_register_args(pg_database, tenant_id="envy"))

    server.run(scenario)


def test_tenant_registered_by_another_server_process_is_found_on_first_use(make_server, pg_database):
    one, two = make_server(), make_server()

    async def main():
        async with one.connect() as c1, two.connect() as c2:
            s1, s2 = Session(c1), Session(c2)
            assert "unknown tenant" in await s2.fail("query", tenant_id="shared", sql="SELECT 1")
            await s1.call("register_tenant", **pg_register_args(pg_database, tenant_id="shared"))
            assert (await s2.call("query", tenant_id="shared", sql="SELECT 7"))["rows"] == [[7]]
            await s1.call("remove_tenant", tenant_id="shared")
            assert "unknown tenant" in await s1.fail("query", tenant_id="shared", sql="SELECT 1")

    asyncio.run(main())


def test_corrupt_entry_fails_only_that_tenant(make_server, pg_database, redis_db):
    redis_db.client.set("mcp:postgres:tenant:broken", "{not json")
    server = make_server()

    async def scenario(session: Session):
        await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="fine"))
        listing = await session.call("list_tenants")
        assert [t["tenant_id"] for t in listing["tenants"]] == ["fine"]
        assert "not valid JSON" in listing["unreadable"]["broken"]
        assert "not valid JSON" in await session.fail("query", tenant_id="broken", sql="SELECT 1")
        assert (await session.call("query", tenant_id="fine", sql="SELECT 1"))["rows"] == [[1]]

    server.run(scenario)
    assert "broken" in server.logs()


def test_bad_tenant_ids_get_a_clear_error_and_touch_nothing(make_server, redis_db):
    server = make_server()
    bad_ids = ["*", "a:b", "a b", "../x", "", "x" * 100, "ténant"]

    async def scenario(session: Session):
        for bad in bad_ids:
            assert "tenant_id" in await session.fail("query", tenant_id=bad, sql="SELECT 1")
            assert "tenant_id" in await session.fail("remove_tenant", tenant_id=bad)

    server.run(scenario)
    assert redis_db.client.keys("mcp:*:tenant:*") == []  # tenants only: the audit stream records the attempt


def test_change_and_removal_in_one_process_reach_a_running_other_process(make_server, pg_database):
    one, two = make_server(), make_server()

    async def eventually(check, seconds=5.0):
        """Poll ``check`` until it returns truthy (a hang guard; the bench measures the delay)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            result = await check()
            if result or asyncio.get_running_loop().time() > deadline:
                return result
            await asyncio.sleep(0.05)

    async def main():
        async with one.connect() as c1, two.connect() as c2:
            s1, s2 = Session(c1), Session(c2)
            await s1.call("register_tenant", **pg_register_args(pg_database, tenant_id="moving"))
            assert (await s2.call("query", tenant_id="moving", sql="SELECT 1"))["rows"] == [[1]]
            assert "read-only" in await s2.fail("execute", tenant_id="moving", sql="CREATE TABLE x (i int)")
            await s1.call("register_tenant", **pg_register_args(pg_database, tenant_id="moving", access="read-write"))

            async def writable():
                try:
                    await s2.call("execute", tenant_id="moving", sql="CREATE TABLE IF NOT EXISTS x (i int)")
                    return True
                except ToolFailed:
                    return False

            assert await eventually(writable), "the other process kept the old read-only config"
            await s1.call("remove_tenant", tenant_id="moving")

            async def refused():
                try:
                    await s2.call("query", tenant_id="moving", sql="SELECT 1")
                    return False
                except ToolFailed as exc:
                    return "unknown tenant" in str(exc)

            assert await eventually(refused), "the other process kept serving a removed tenant"

    asyncio.run(main())


def test_every_tool_answers_through_mcp_with_its_output_schema(make_server, pg_database):
    server = make_server()

    async def scenario(session: Session):
        listed = {t.name: t for t in (await session.client.list_tools()).tools}
        assert set(listed) == POSTGRES_TOOLS
        assert all(t.output_schema and t.annotations for t in listed.values())
        assert listed["query"].annotations.read_only_hint and listed["remove_tenant"].annotations.destructive_hint
        await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="rw", access="read-write"))
        created = await session.call(
            "execute",
            tenant_id="rw",
            sql="CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x')",
        )
        assert created["status"] == "CREATE TABLE"
        inserted = await session.call(
            "execute", tenant_id="rw", sql="INSERT INTO parent VALUES ($1, $2), ($3, $4)", params=[1, "a", 2, "b"]
        )
        assert (inserted["status"], inserted["rowcount"]) == ("INSERT 0 2", 2)
        assert "public" in (await session.call("list_schemas", tenant_id="rw"))["schemas"]
        tables = (await session.call("list_tables", tenant_id="rw"))["tables"]
        assert [t["name"] for t in tables] == ["parent"]
        described = await session.call("describe_table", tenant_id="rw", table="parent")
        assert described["primary_key"] == ["id"]
        assert [c["name"] for c in described["columns"]] == ["id", "name"]
        plan = await session.call("explain_query", tenant_id="rw", sql="SELECT * FROM parent WHERE id = 1")
        assert "Plan" in json.dumps(plan["plan"])
        rows = await session.call("query", tenant_id="rw", sql="SELECT name FROM parent ORDER BY id", max_rows=1)
        assert (rows["rows"], rows["truncated"]) == ([["a"]], True)
        page = await session.call("list_tenants", limit=1)
        assert [t["tenant_id"] for t in page["tenants"]] == ["rw"] and page["next_cursor"] is None
        assert (await session.call("remove_tenant", tenant_id="rw"))["removed"] is True

    server.run(scenario)


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_slow_calls_report_progress_and_logs_reach_the_client_at_its_level(make_server, pg_database):
    server = make_server()
    progress: list[tuple[float, str | None]] = []
    logs: list[tuple[str, str]] = []

    async def on_progress(value, total, message):
        progress.append((value, message))

    async def on_log(params):
        logs.append((params.level, str(params.data)))

    async def main():
        async with server.connect(logging_callback=on_log) as client:
            session = Session(client)
            await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="quiet"))
            assert logs == []  # nothing before the client chose a level
            await client.set_logging_level("info")
            await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="loud"))
            result = await client.call_tool(
                "query", {"tenant_id": "loud", "sql": "SELECT pg_sleep(2.5)"}, progress_callback=on_progress
            )
            assert not result.is_error

    asyncio.run(main())
    assert any("registered postgres tenant 'loud'" in text for level, text in logs if level == "info")
    assert len(progress) >= 2 and "query running for" in (progress[0][1] or "")
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert all(pg_database["password"] not in text for _, text in logs)


def test_postgres_restart_mid_session_costs_at_most_one_clear_error(make_server, pg_database, postgres_service):
    server = make_server()

    async def scenario(session: Session):
        await session.call("register_tenant", **pg_register_args(pg_database))
        assert (await session.call("query", tenant_id="acme", sql="SELECT 1"))["rows"] == [[1]]
        postgres_service.restart()
        try:
            rows = await session.call("query", tenant_id="acme", sql="SELECT 2")
        except ToolFailed as exc:  # allowed once, and it must say what happened
            assert "connection" in str(exc).lower() and "Traceback" not in str(exc)
            rows = await session.call("query", tenant_id="acme", sql="SELECT 2")
        assert rows["rows"] == [[2]]

    server.run(scenario)


def test_a_slow_tenant_does_not_starve_another(make_server, pg_database):
    # 4 workers, pools of 2: one tenant runs 2 calls at most, so 6 slow calls leave room for another.
    server = make_server(MCP_WORKER_THREADS="4", MCP_POOL_MAX_SIZE="2")

    async def main():
        async with server.connect() as client:
            session = Session(client)
            await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="slow"))
            await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="fast"))
            finished: list[str] = []

            async def call(tenant_id, sql):
                await session.call("query", tenant_id=tenant_id, sql=sql)
                finished.append(tenant_id)

            slow = [asyncio.create_task(call("slow", "SELECT pg_sleep(1)")) for _ in range(6)]
            await asyncio.sleep(0.2)
            await call("fast", "SELECT 1")
            await asyncio.gather(*slow)
            # The fast tenant's call finished before any of the slow tenant's calls.
            assert finished[0] == "fast", finished

    asyncio.run(main())


def _running_sleeps(postgres_service, user: str) -> int:
    """Statements the tenant's role has running now (the sleeping query runs in a FETCH)."""
    rows = postgres_service.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND state = 'active'", (user,)
    )
    return rows[0][0]


def test_sigterm_cancels_a_running_query_and_exits_0_over_http(pg_database, postgres_service, redis_db):
    from .http import HttpServer

    server = HttpServer(MODULE, {**redis_db.env(), **pg_env_tenant("envy", pg_database)})
    try:
        server.wait_ready()

        async def main():
            async with server.client(None) as client:
                call = asyncio.create_task(
                    client.call_tool("query", {"tenant_id": "envy", "sql": "SELECT pg_sleep(60)"})
                )
                for _ in range(100):
                    if _running_sleeps(postgres_service, pg_database["user"]):
                        break
                    await asyncio.sleep(0.05)
                assert _running_sleeps(postgres_service, pg_database["user"]) == 1
                server.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(Exception):  # the connection may end before the answer
                    await asyncio.wait_for(call, 30)

        asyncio.run(main())
        assert server.process.wait(timeout=30) == 0
        assert _running_sleeps(postgres_service, pg_database["user"]) == 0  # cancelled, not left running in PostgreSQL
    finally:
        server.close()


def test_sigterm_cancels_a_running_query_and_exits_0_over_stdio(make_server, pg_database, postgres_service):
    server = make_server(**pg_env_tenant("envy", pg_database))

    async def main():
        async with server.connect() as client:
            call = asyncio.create_task(client.call_tool("query", {"tenant_id": "envy", "sql": "SELECT pg_sleep(60)"}))
            for _ in range(100):
                if _running_sleeps(postgres_service, pg_database["user"]):
                    break
                await asyncio.sleep(0.05)
            pid = int(re.search(r"starting \(pid (\d+)", server.logs()).group(1))
            os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(call, 30)
            for _ in range(300):  # the process is gone once its pid no longer answers
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                await asyncio.sleep(0.05)
            return pid

    with contextlib.suppress(Exception):  # the client reports the closed pipe on exit
        asyncio.run(main())
    assert "signal received, shutting down" in server.logs()
    assert _running_sleeps(postgres_service, pg_database["user"]) == 0


# Rows come from PostgreSQL as JSON text and are passed on without being parsed (RawJson): the
# stdio writer splices the text into its message, HTTP parses it. Both must give the client the
# same values, in the structured content and in the text block; a json value whose own
# whitespace holds a line break must not break stdio's one-message-per-line framing.
TRICKY_ROWS_SQL = (
    'SELECT 1 AS n, E\'\\u00e9 "q" \\n line\' AS t, E\'{"a": [1, 2],\\n "b": null}\'::json AS j,'
    " '{\"x\": 1}'::jsonb AS jb, 9007199254740993::bigint AS big, 'NaN'::float8 AS f,"
    " '\\xdeadbeef'::bytea AS b, ARRAY[1, 2] AS arr, NULL AS nothing"
    " UNION ALL SELECT 2, '', '[]', 'null', -1, 1.5, '', '{}', NULL"
)
TRICKY_ROWS = [
    [1, 'é "q" \n line', {"a": [1, 2], "b": None}, {"x": 1}, "9007199254740993", "NaN", "3q2+7w==", [1, 2], None],
    [2, "", [], None, -1, 1.5, "", [], None],
]


async def _tricky_rows(client) -> None:
    result = await client.call_tool("query", {"tenant_id": "envy", "sql": TRICKY_ROWS_SQL})
    assert not result.is_error, result.content
    for seen in (result.structured_content, json.loads(result.content[0].text)):
        assert seen["rows"] == TRICKY_ROWS
        assert (seen["row_count"], seen["truncated"]) == (2, False)


def test_rows_reach_the_client_the_same_over_stdio_and_http(make_server, pg_database, redis_db):
    from .http import HttpServer

    env = {**redis_db.env(), **pg_env_tenant("envy", pg_database)}

    async def over_stdio(session: Session) -> None:
        await _tricky_rows(session.client)
        assert (await session.call("query", tenant_id="envy", sql="SELECT 1"))["rows"] == [[1]]

    make_server(**env).run(over_stdio)
    server = HttpServer(MODULE, env)
    try:
        server.wait_ready()

        async def over_http() -> None:
            async with server.client(None) as client:
                await _tricky_rows(client)

        asyncio.run(over_http())
    finally:
        server.close()
