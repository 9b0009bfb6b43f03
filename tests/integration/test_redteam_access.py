"""Red team, access layer: what one low-privilege credential can do against a real server process.

One PostgreSQL server on streamable HTTP, shared by the tests of this module (start-up costs
seconds). Two teams' tenants live on the same PostgreSQL cluster, as they would in practice:

- ``team_a_rw``, ``team_a_two``: read-write, the attacker's team; the attacker holds a *reader* key
  for ``team_a_*``;
- ``team_b_payroll``: another team's tenant, used through an admin key for ``team_b_*``.

Each test is one finding. Those whose fix lies outside the access layer's files are marked
``xfail(strict=True)`` with the fix in the reason (see REDTEAM-ACCESS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import psycopg
import pytest
from psycopg import sql

from mcp_tenants.access.keys import ApiKeyStore

from .http import HttpServer
from .stdio import Session, ToolFailed

MODULE = "mcp_tenants.postgres"
REDIS_DB = 62  # this module's own database number on the session Redis, flushed before and after


@pytest.fixture(scope="module")
def world(postgres_service, redis_service):
    from tests import audit

    suffix = secrets.token_hex(5)
    user, database, password = f"redteam_{suffix}", f"redteam_{suffix}", secrets.token_urlsafe(16)
    audit.secret(password)
    postgres_service.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
    )
    postgres_service.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user))
    )
    pg = {"host": postgres_service.host, "port": postgres_service.port, "dbname": database, "user": user}
    with psycopg.connect(**pg, password=password, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE invoice_no START 1000")
    client = redis_service.client(db=REDIS_DB, decode_responses=True)
    client.flushdb()
    keys = ApiKeyStore(client, "postgres")
    reader = keys.create("team-a-reader", "team_a_*", "reader")[1]
    team_b = keys.create("team-b-admin", "team_b_*", "admin")[1]
    audit.secret(reader, team_b)
    env = {
        "REDIS_HOST": redis_service.host,
        "REDIS_PORT": str(redis_service.port),
        "REDIS_DB": str(REDIS_DB),
        "REDIS_PASSWORD": redis_service.password,
        "MCP_ALLOWED_HOSTS": "127.0.0.1",
        # Small pools, so that saturating the workers takes a few calls (availability isolation).
        "MCP_WORKER_THREADS": "4",
        "MCP_POOL_MAX_SIZE": "2",
    }
    tenants = (("team_a_rw", "read-write"), ("team_a_two", "read-write"), ("team_b_payroll", "read-only"))
    for tenant_id, access in tenants:
        prefix = f"POSTGRES_TENANT_{tenant_id.upper()}_"
        env.update(
            {
                prefix + "HOST": pg["host"],
                prefix + "PORT": str(pg["port"]),
                prefix + "DATABASE": database,
                prefix + "USER": user,
                prefix + "PASSWORD": password,
                prefix + "ACCESS": access,
            }
        )
    server = HttpServer(MODULE, env)
    try:
        server.wait_ready()
        yield {
            "server": server,
            "reader": reader,
            "team_b": team_b,
            "pg": {**pg, "password": password},
            "redis": redis_service,
        }
    finally:
        server.close()
        client.flushdb()
        client.close()
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        postgres_service.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))


async def _as(server: HttpServer, key: str, scenario):
    async with server.client(key) as client:
        return await scenario(Session(client))


def run_as(world, key_name: str, scenario):
    return asyncio.run(_as(world["server"], world[key_name], scenario))


async def _error_text(session: Session, tool: str, **arguments) -> str:
    """A tool's error text, without handing it to the suite's secret audit (it may hold a value
    the caller computed itself)."""
    result = await session.client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} succeeded"
    return " ".join(getattr(c, "text", "") for c in result.content)


def test_a_reader_cannot_change_a_read_write_tenant_through_explain_analyze(world):
    async def scenario(session: Session):
        denied = await session.fail("execute", tenant_id="team_a_rw", sql="SELECT setval('invoice_no', 1)")
        with contextlib.suppress(ToolFailed):  # refused: what the fix does
            await session.call(
                "explain_query", tenant_id="team_a_rw", sql="SELECT setval('invoice_no', 424242)", analyze=True
            )
        return denied

    denied = run_as(world, "reader", scenario)
    assert "role reader" in denied  # the role check itself holds for execute
    with psycopg.connect(**world["pg"], autocommit=True) as conn:
        value = conn.execute("SELECT last_value FROM invoice_no").fetchone()[0]
    assert value != 424242, "a reader key changed the tenant's data (the sequence) through explain_query"


def test_other_teams_tenant_ids_do_not_show_in_pg_stat_activity(world):
    async def team_b(session: Session):
        await session.call("query", tenant_id="team_b_payroll", sql="SELECT 1")  # its pool keeps the connection

    async def reader(session: Session):
        result = await session.call(
            "query", tenant_id="team_a_rw", sql="SELECT application_name FROM pg_stat_activity ORDER BY 1"
        )
        return [row[0] for row in result["rows"]]

    run_as(world, "team_b", team_b)
    names = run_as(world, "reader", reader)
    assert not any("team_b" in (name or "") for name in names), names


def test_the_redis_password_cannot_be_tested_with_computed_guesses(world):
    redis_password = world["redis"].password
    wrong = "x" * len(redis_password)

    async def scenario(session: Session):
        answers = []
        for guess in (redis_password, wrong):
            statement = f"SELECT reverse($${guess[::-1]}$$)::int"
            answers.append(await _error_text(session, "query", tenant_id="team_a_rw", sql=statement))
        return answers

    right, wrong_answer = run_as(world, "reader", scenario)
    # Oracle-free: the two answers differ only by the guess itself.
    assert right.replace(redis_password, wrong) == wrong_answer, "the right guess came back masked"


def test_another_teams_tenant_reads_exactly_like_a_missing_one_for_every_tool(world):
    """Regression: every tool of the server, including the admin tools, on a hidden tenant."""
    calls = {
        "list_schemas": {},
        "list_tables": {},
        "describe_table": {"table": "t"},
        "query": {"sql": "SELECT 1"},
        "execute": {"sql": "SELECT 1"},
        "explain_query": {"sql": "SELECT 1", "analyze": True},
        "remove_tenant": {},
        "register_tenant": {"host": "127.0.0.1", "database": "d", "user": "u", "password": "p"},
    }

    async def scenario(session: Session):
        listed = await session.call("list_tenants", limit=1)
        pairs = []
        for tool, extra in calls.items():
            hidden = await session.fail(tool, tenant_id="team_b_payroll", **extra)
            missing = await session.fail(tool, tenant_id="team_b_payrolx", **extra)
            pairs.append((tool, hidden, missing))
        return listed, pairs

    listed, pairs = run_as(world, "reader", scenario)
    assert [t["tenant_id"] for t in listed["tenants"]] == ["team_a_rw"] and listed["next_cursor"] == "team_a_rw"
    assert listed["unreadable"] == {}
    for tool, hidden, missing in pairs:
        assert hidden.replace("team_b_payroll", "<id>").replace("TEAM_B_PAYROLL", "<ID>") == missing.replace(
            "team_b_payrolx", "<id>"
        ).replace("TEAM_B_PAYROLX", "<ID>"), tool


def test_one_principal_cannot_starve_another_teams_calls(world):
    import time

    async def hog(session: Session):
        statements = [("team_a_rw", "SELECT pg_sleep(3)"), ("team_a_two", "SELECT pg_sleep(3)")] * 2
        return await asyncio.gather(
            *(session.client.call_tool("query", {"tenant_id": t, "sql": q}) for t, q in statements)
        )

    async def other_team(session: Session):
        await asyncio.sleep(0.7)  # the hog's calls hold every worker by now
        started = time.monotonic()
        await session.call("query", tenant_id="team_b_payroll", sql="SELECT 1")
        return time.monotonic() - started

    async def both():
        _, waited = await asyncio.gather(
            _as(world["server"], world["reader"], hog), _as(world["server"], world["team_b"], other_team)
        )
        return waited

    waited = asyncio.run(both())
    assert waited < 1.5, f"team B's SELECT 1 waited {waited:.1f} s behind team A's reader"
