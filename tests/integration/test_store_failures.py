"""What goes wrong in the environment or in Redis never stops a server, and nothing is lost.

Real servers over stdio on a real Redis (a private one where a test changes Redis's own
configuration: out of memory, read-only replica, ACL users). Issue 12, items 2, 4 and 5.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest
import redis

from mcp_tenants.crypto import SecretCodec
from mcp_tenants.devservices import RedisService, free_ports
from mcp_tenants.errors import StoreRefused
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.registry import TenantManager
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore
from tests.conftest import running
from tests.unit.fakes import FakeBackend

from .stdio import Session
from .tenants import pg_env_tenant, pg_register_args


@pytest.fixture
def make_server(stdio_servers):
    """Servers without Redis unless the test gives it; their logs are checked for secrets."""
    return lambda module="mcp_tenants.postgres", **env: stdio_servers(module, **{"MCP_LOG_LEVEL": "INFO", **env})


@pytest.fixture
def private_redis():
    """A Redis of this test's own, whose configuration the test may change."""
    yield from running(RedisService())


def redis_env(service: RedisService) -> dict[str, str]:
    return {"REDIS_HOST": service.host, "REDIS_PORT": str(service.port), "REDIS_DB": "0"}


async def wait_for(condition, timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


# --- item 2: invalid environment tenants ------------------------------------------------------


def test_invalid_env_tenants_are_reported_skipped_and_still_protected(make_server, pg_database, redis_db):
    env = {
        **pg_env_tenant("good", pg_database),
        **{k: v for k, v in pg_env_tenant("nohost", pg_database).items() if not k.endswith("_HOST")},
        **pg_env_tenant("badport", pg_database),
        "POSTGRES_TENANT_BADPORT_PORT": "abc",
        **pg_env_tenant("nossl", pg_database),
        "POSTGRES_TENANT_NOSSL_SSLMODE": "",
    }
    server = make_server(**redis_db.env(), **env)

    async def scenario(session: Session):
        listed = await session.call("list_tenants")
        assert [t["tenant_id"] for t in listed["tenants"]] == ["good"]
        unreadable = listed["unreadable"]
        assert set(unreadable) == {"nohost", "badport", "nossl"}
        assert "POSTGRES_TENANT_NOHOST_HOST is not set" in unreadable["nohost"]
        assert "POSTGRES_TENANT_BADPORT_PORT" in unreadable["badport"]
        assert "POSTGRES_TENANT_NOSSL_SSLMODE" in unreadable["nossl"]
        assert (await session.call("query", tenant_id="good", sql="SELECT 1 AS one"))["rows"] == [[1]]
        # A call on an invalid one says what to fix, not "unknown tenant".
        error = await session.fail("query", tenant_id="badport", sql="SELECT 1")
        assert "POSTGRES_TENANT_BADPORT_PORT" in error and "restart" in error
        # The environment still owns the id: no tool call may take it over.
        error = await session.fail("register_tenant", **pg_register_args(pg_database, tenant_id="nohost"))
        assert "environment" in error
        assert "environment" in await session.fail("remove_tenant", tenant_id="badport")

    server.run(scenario)
    assert redis_db.client.keys("mcp:postgres:tenant:*") == []  # (the audit stream records the attempts)
    logs = server.logs()
    assert "skipping environment tenant 'badport'" in logs and "Traceback" not in logs
    assert pg_database["password"] not in logs


def test_minio_env_tenant_with_a_url_endpoint_is_reported_not_fatal(make_server, redis_db):
    server = make_server(
        "mcp_tenants.minio",
        **redis_db.env(),
        MINIO_TENANT_WEB_ENDPOINT="http://s3.example.com:9000",
        MINIO_TENANT_WEB_ACCESS_KEY="ak",
        MINIO_TENANT_WEB_SECRET_KEY="sk-" + secrets.token_hex(8),
    )

    async def scenario(session: Session):
        listed = await session.call("list_tenants")
        assert listed["tenants"] == []
        assert "MINIO_TENANT_WEB_ENDPOINT" in listed["unreadable"]["web"]

    server.run(scenario)


# --- item 4: Redis error replies are outages: queued, retried, never lost ---------------------


def test_oom_and_readonly_replies_queue_registrations_until_redis_takes_them(make_server, pg_database, private_redis):
    admin = private_redis.client(decode_responses=True)
    server = make_server(**redis_env(private_redis))
    (nobody,) = free_ports(1)

    async def scenario(session: Session):
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # every write is now "OOM command not allowed"
        full = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="full"))
        assert full["persisted"] is False
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"full": "memory"}
        assert (await session.call("query", tenant_id="full", sql="SELECT 1"))["rows"] == [[1]]
        admin.config_set("maxmemory", "0")
        assert await wait_for(lambda: admin.exists("mcp:postgres:tenant:full")), "never written back"

        admin.replicaof("127.0.0.1", nobody)  # a demoted primary: "READONLY You can't write..."
        demoted = await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="demoted"))
        assert demoted["persisted"] is False
        admin.replicaof("NO", "ONE")
        assert await wait_for(lambda: admin.exists("mcp:postgres:tenant:demoted")), "never written back"
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"full": "redis", "demoted": "redis"}

    async def after_restart(session: Session):
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"full": "redis", "demoted": "redis"}

    server.run(scenario)
    server.run(after_restart)
    logs = server.logs()
    assert "refuses writes for now" in logs and "pending writes flushed" in logs
    assert pg_database["password"] not in logs


def test_an_acl_refusal_fails_the_registration_at_once_and_nothing_is_queued(private_redis):
    admin = private_redis.client(decode_responses=True)
    password = secrets.token_urlsafe(12)
    admin.acl_setuser(
        "limited", enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all", "-set"]
    )
    settings = RedisSettings(host=private_redis.host, port=private_redis.port, username="limited", password=password)
    store = TenantStore(settings, "postgres", PostgresTenant, SecretCodec(), max_backoff=0.05)
    manager = TenantManager(FakeBackend(PostgresTenant), store, {}).open()
    try:
        config = PostgresTenant(tenant_id="acme", host="127.0.0.1", database="d", user="u", password="pw-acl-1")
        with pytest.raises(StoreRefused) as info:
            manager.register(config, verify=False)
        message = str(info.value)
        assert "NOPERM" in message or "no permissions" in message
        assert "mcp:postgres:tenant:*" in message and "ACL" in message
        assert store.pending_ids() == set()
        assert manager.list()[0] == []  # not half-registered in memory either
    finally:
        manager.close()
    assert admin.keys("mcp:postgres:tenant:*") == []


# --- item 5: corrupt values of any kind are isolated, reported and removable ------------------

CORRUPT_VALUES: dict[str, bytes] = {
    "notutf8": b'{"tenant_id": "notutf8", "host": "\xff\xfe"}',
    "deep": b"[" * 50_000,  # 50,000 deep (the parser gives up long before the end)
    "deeper": b'{"a":' * 9_000 + b"1" + b"}" * 9_000,
    "notjson": b"{oops",
    "huge": b'{"host": "' + b"x" * 200_000 + b'"}',
    "wrongid": json.dumps({"tenant_id": "someone-else", "host": "h"}).encode(),
    "badtypes": json.dumps({"host": ["h"], "port": "5432", "password": 5}).encode(),
}


def test_corrupt_values_never_stop_listing_or_removal(make_server, pg_database, redis_db):
    raw = redis.Redis(host=redis_db.host, port=redis_db.port, password=redis_db.password, db=redis_db.db)
    for tenant_id, value in CORRUPT_VALUES.items():
        raw.set(f"mcp:postgres:tenant:{tenant_id}", value)
    raw.hset("mcp:postgres:tenant:hashed", "host", "h")  # a key of another Redis type
    server = make_server(**redis_db.env())
    bad = {*CORRUPT_VALUES, "hashed"}

    async def scenario(session: Session):
        await session.call("register_tenant", **pg_register_args(pg_database, tenant_id="good"))
        listed = await session.call("list_tenants")
        assert [t["tenant_id"] for t in listed["tenants"]] == ["good"]
        assert set(listed["unreadable"]) == bad
        assert "not UTF-8" in listed["unreadable"]["notutf8"]
        assert "nested too deeply" in listed["unreadable"]["deep"]
        assert "hash" in listed["unreadable"]["hashed"]
        for tenant_id in sorted(bad):
            assert "unknown tenant" not in await session.fail("query", tenant_id=tenant_id, sql="SELECT 1")
            assert (await session.call("remove_tenant", tenant_id=tenant_id))["removed"] is True
        listed = await session.call("list_tenants")
        assert [t["tenant_id"] for t in listed["tenants"]] == ["good"] and listed["unreadable"] == {}

    server.run(scenario)
    assert sorted(raw.keys("mcp:postgres:tenant:*")) == [b"mcp:postgres:tenant:good"]
    assert "Traceback" not in server.logs()


def test_preload_survives_a_corrupt_value_and_loads_every_other_tenant(redis_db, caplog):
    raw = redis.Redis(host=redis_db.host, port=redis_db.port, password=redis_db.password, db=redis_db.db)
    settings = RedisSettings(host=redis_db.host, port=redis_db.port, db=redis_db.db, password=redis_db.password)
    writer = TenantStore(settings, "postgres", PostgresTenant, SecretCodec())
    for i in range(1200):  # more than one MGET batch, with bad values in the first and the last
        writer.put(PostgresTenant(tenant_id=f"t{i:04d}", host="db", database="d", user="u", password="pw-x-1"))
    writer.close()
    raw.set("mcp:postgres:tenant:t0000", b"\xff")
    raw.set("mcp:postgres:tenant:t1199", b"[" * 50_000)
    caplog.set_level("INFO", logger="mcp_tenants.registry")
    store = TenantStore(settings, "postgres", PostgresTenant, SecretCodec())
    manager = TenantManager(FakeBackend(PostgresTenant), store, {}).open()
    try:
        deadline = time.monotonic() + 30
        while "loaded from Redis" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "postgres server: 1198 tenant(s) loaded from Redis" in caplog.text
        assert "skipping stored tenant 't0000'" in caplog.text and "skipping stored tenant 't1199'" in caplog.text
        tenants, _cursor, unreadable = manager.list(limit=1000)
        assert set(unreadable) == {"t0000"} and len(tenants) == 999
    finally:
        manager.close()
