"""Who may do what, over real HTTP: several principals at once against real server processes.

Three tenants from the environment share one database (a tenant is a connection config); three
API keys: ``sales-team`` (writer, ``sales_*``), ``hr-audit`` (reader, ``hr_*``), ``ops`` (admin,
``*``). Each sees only its tenants, a hidden tenant reads exactly like a missing one, roles hold,
a revoked key is refused by another process within a second, every call lands in the audit trail
without a secret, and the redaction oracle of the security review learns nothing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest

from mcp_tenants.access.keys import ApiKeyStore
from tests import audit

from .http import HttpServer
from .stdio import Session
from .tenants import pg_env_tenant, pg_register_args

MODULE = "mcp_tenants.postgres"
TENANTS = {"sales_eu": "read-write", "sales_us": "read-only", "hr_payroll": "read-write"}


def tenants_env(pg) -> dict[str, str]:
    env: dict[str, str] = {}
    for tenant_id, access in TENANTS.items():
        env.update(pg_env_tenant(tenant_id, pg))
        env[f"POSTGRES_TENANT_{tenant_id.upper()}_ACCESS"] = access
    return env


@pytest.fixture
def keys(redis_db) -> dict[str, str]:
    store = ApiKeyStore(redis_db.client, "postgres")
    made = {
        name: store.create(name, patterns, role)[1]
        for name, patterns, role in (
            ("sales-team", "sales_*", "writer"),
            ("hr-audit", "hr_*", "reader"),
            ("ops", "*", "admin"),
        )
    }
    audit.secret(*made.values())
    return made


@pytest.fixture
def servers(redis_db, pg_database, keys):
    env = {**redis_db.env(), **tenants_env(pg_database), "MCP_ALLOWED_HOSTS": "127.0.0.1"}
    started = [HttpServer(MODULE, env), HttpServer(MODULE, env)]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.close()


async def as_principal(server: HttpServer, key: str, scenario):
    async with server.client(key) as client:
        return await scenario(Session(client))


def same_apart_from_id(first: str, first_id: str, second: str, second_id: str) -> bool:
    def neutral(text: str, tenant_id: str) -> str:
        return text.replace(tenant_id, "<id>").replace(tenant_id.upper(), "<ID>")

    return neutral(first, first_id) == neutral(second, second_id)


def test_several_principals_at_once_see_and_do_only_what_their_grant_and_role_allow(
    servers, keys, pg_database, redis_db
):
    server = servers[0]

    async def sales(session: Session):
        listed = [t["tenant_id"] for t in (await session.call("list_tenants"))["tenants"]]
        hidden = await session.fail("query", tenant_id="hr_payroll", sql="SELECT 1")
        missing = await session.fail("query", tenant_id="hr_payrolx", sql="SELECT 1")
        hidden_write = await session.fail("execute", tenant_id="hr_payroll", sql="DELETE FROM nowhere")
        await session.call("execute", tenant_id="sales_eu", sql="CREATE TABLE IF NOT EXISTS orders (n int)")
        rows = (await session.call("query", tenant_id="sales_eu", sql="SELECT count(*) FROM orders"))["rows"]
        not_admin = await session.fail("register_tenant", **pg_register_args(pg_database, tenant_id="sales_new"))
        return listed, hidden, missing, hidden_write, rows, not_admin

    async def hr(session: Session):
        listed = [t["tenant_id"] for t in (await session.call("list_tenants"))["tenants"]]
        rows = (await session.call("query", tenant_id="hr_payroll", sql="SELECT 42 AS answer"))["rows"]
        not_writer = await session.fail("execute", tenant_id="hr_payroll", sql="CREATE TABLE x (n int)")
        hidden = await session.fail("list_schemas", tenant_id="sales_eu")
        return listed, rows, not_writer, hidden

    async def ops(session: Session):
        registered = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="ops_new"))
        listed = [t["tenant_id"] for t in (await session.call("list_tenants"))["tenants"]]
        await session.call("remove_tenant", tenant_id="ops_new")
        return registered, listed

    async def together():
        return await asyncio.gather(
            as_principal(server, keys["sales-team"], sales),
            as_principal(server, keys["hr-audit"], hr),
            as_principal(server, keys["ops"], ops),
        )

    (s_listed, s_hidden, s_missing, s_hidden_write, s_rows, s_not_admin), hr_result, ops_result = asyncio.run(
        together()
    )
    assert s_listed == ["sales_eu", "sales_us"]
    assert "unknown tenant 'hr_payroll'" in s_hidden
    assert same_apart_from_id(s_hidden, "hr_payroll", s_missing, "hr_payrolx")
    assert "unknown tenant 'hr_payroll'" in s_hidden_write and "role" not in s_hidden_write
    assert s_rows == [[0]]
    assert "role writer" in s_not_admin and "register" in s_not_admin

    h_listed, h_rows, h_not_writer, h_hidden = hr_result
    assert h_listed == ["hr_payroll"] and h_rows == [[42]]
    assert "key 'hr-audit' has role reader" in h_not_writer
    assert "unknown tenant 'sales_eu'" in h_hidden

    registered, o_listed = ops_result
    assert registered["tenant"]["tenant_id"] == "ops_new"
    assert o_listed == ["hr_payroll", "ops_new", "sales_eu", "sales_us"]

    # No credentials, or wrong ones: 401 before any tool runs.
    assert server.status_of(None) == 401 and server.status_of("mcpk_" + "x" * 43) == 401

    # The audit trail: one complete record per call, no secret in it (written by a background thread).
    deadline = time.monotonic() + 10
    while redis_db.client.xlen("mcp:postgres:audit") < 14:
        assert time.monotonic() < deadline, "audit records missing"
        time.sleep(0.05)
    entries = [fields for _id, fields in redis_db.client.xrange("mcp:postgres:audit")]
    dump = json.dumps(entries)
    for secret in [*keys.values(), pg_database["password"]]:
        assert secret not in dump
    by_principal = {name: [e for e in entries if e["principal"] == name] for name in keys}
    assert len(by_principal["sales-team"]) == 7 and len(by_principal["hr-audit"]) == 4
    assert len(by_principal["ops"]) == 3
    created = next(e for e in by_principal["sales-team"] if e["tool"] == "execute" and e["outcome"] == "ok")
    assert created["tenant"] == "sales_eu" and created["subject"].startswith("CREATE TABLE")
    assert created["kind"] == "key" and float(created["duration_ms"]) >= 0 and created["time"].endswith("Z")
    refused = [e for e in by_principal["hr-audit"] if e["outcome"] == "error"]
    assert {e["error"] for e in refused} == {"AccessDenied", "UnknownTenant"}
    counted = next(e for e in by_principal["hr-audit"] if e["tool"] == "query")
    assert counted["rows"] == "1" and int(counted["bytes"]) > 0


def test_a_revoked_key_is_refused_by_another_server_process_within_a_second(servers, keys, redis_db):
    first, second = servers
    key = keys["hr-audit"]
    assert first.status_of(key) == 200 and second.status_of(key) == 200  # both have it cached now
    ApiKeyStore(redis_db.client, "postgres").revoke("hr-audit")
    time.sleep(1.05)  # the guarantee: cached answers live at most one second, announcements are faster
    assert second.status_of(key) == 401 and first.status_of(key) == 401
    assert second.status_of(keys["sales-team"]) == 200


def test_the_redaction_oracle_learns_nothing(redis_db, pg_database, keys):
    # Another tenant's password: the server knows it, the caller guesses it.
    vault_password = "vault-" + secrets.token_hex(8)
    env = {
        **redis_db.env(),
        **pg_env_tenant("sales_eu", pg_database),
        "POSTGRES_TENANT_VAULT_HOST": "db.invalid",
        "POSTGRES_TENANT_VAULT_DATABASE": "vault",
        "POSTGRES_TENANT_VAULT_USER": "vault",
        "POSTGRES_TENANT_VAULT_PASSWORD": vault_password,
    }
    server = HttpServer(MODULE, env)
    try:
        server.wait_ready()

        async def guess(session: Session):
            right = f"guess-1 {vault_password} guess-2"
            wrong = f"guess-1 vault-{'0' * 16} guess-2"
            answers = []
            for words in (right, wrong):
                answers.append(await session.fail("query", tenant_id="sales_eu", sql=f"SELECT $${words}$$::int"))
            return answers

        right, wrong = asyncio.run(as_principal(server, keys["sales-team"], guess))
        # Both guesses come back exactly as sent: the right one is not singled out by a mask.
        assert vault_password in right and "***" not in right and "***" not in wrong
        assert right.replace(vault_password, "vault-" + "0" * 16) == wrong
        assert vault_password not in server.logs()  # logs still mask every secret
    finally:
        server.close()
