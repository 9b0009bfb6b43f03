"""The registration policy and the audit trail on a real stdio server (the operator's transport)."""

from __future__ import annotations

import time

from .stdio import ServerProcess, Session
from .tenants import pg_register_args

MODULE = "mcp_tenants.postgres"


def test_tenant_tools_off_removes_registration(redis_db):
    server = ServerProcess(MODULE, {**redis_db.env(), "MCP_TENANT_TOOLS": "off"})
    try:

        async def scenario(session: Session):
            names = {tool.name for tool in (await session.client.list_tools()).tools}
            refused = await session.fail(
                "register_tenant", tenant_id="x", host="h", database="d", user="u", password="p"
            )
            return names, refused

        names, refused = server.run(scenario)
        assert "register_tenant" not in names and "remove_tenant" not in names and "query" in names
        assert "unknown tool 'register_tenant'" in refused
    finally:
        server.close()


def test_max_access_caps_registration_and_every_call_is_audited(redis_db, pg_database):
    server = ServerProcess(MODULE, {**redis_db.env(), "MCP_MAX_ACCESS": "read-only"})
    try:

        async def scenario(session: Session):
            refused = await session.fail("register_tenant", **pg_register_args(pg_database, access="read-write"))
            await session.call("register_tenant", **pg_register_args(pg_database, access="read-only"))
            await session.call("query", tenant_id="acme", sql="SELECT 1")
            return refused

        refused = server.run(scenario)
        assert "MCP_MAX_ACCESS=read-only" in refused
        stored = redis_db.client.get("mcp:postgres:tenant:acme")
        assert '"origin": "tool"' in stored  # checked again on every connect
        deadline = time.monotonic() + 10  # the records are written by a background thread
        while redis_db.client.xlen("mcp:postgres:audit") < 3:
            assert time.monotonic() < deadline, "audit records missing"
            time.sleep(0.05)
        records = [fields for _id, fields in redis_db.client.xrange("mcp:postgres:audit")]
        assert [(r["principal"], r["kind"], r["tool"], r["outcome"]) for r in records] == [
            ("operator", "operator", "register_tenant", "error"),
            ("operator", "operator", "register_tenant", "ok"),
            ("operator", "operator", "query", "ok"),
        ]
        assert records[0]["error"] == "AccessDenied" and records[2]["subject"] == "SELECT 1"
        assert pg_database["password"] not in str(records)
        assert '"tool": "query"' in server.logs()  # the JSON line on the mcp_tenants.audit logger
    finally:
        server.close()
