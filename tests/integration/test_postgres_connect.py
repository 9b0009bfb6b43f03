"""Connection failures of a PostgreSQL tenant: the real cause at once, and recovery at once."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from psycopg import sql

from mcp_tenants.devservices.base import free_ports
from mcp_tenants.errors import TenantUnreachable
from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant, checkout
from mcp_tenants.settings import Settings


class _Manager:
    """The one call of TenantManager that checkout uses, over one pool."""

    def __init__(self, config: PostgresTenant, pool: Any) -> None:
        self.config, self.pool = config, pool

    def resource(self, tenant_id: str) -> tuple[PostgresTenant, Any]:
        return self.config, self.pool


def _call(config: PostgresTenant, backend: PostgresBackend, pool: Any) -> None:
    with checkout(_Manager(config, pool), config.tenant_id) as (_config, conn):  # type: ignore[arg-type]
        conn.execute("SELECT 1")


@pytest.fixture
def backend() -> PostgresBackend:
    # A pool wait of a minute: a failure reported as "busy" would only come after it.
    return PostgresBackend(Settings.from_env("postgres", {}, pool_timeout_ms=60_000, connect_timeout_s=2))


@pytest.mark.parametrize(
    ("change", "cause", "variable"),
    [
        ({"password": "wrong"}, "the password was refused", "PASSWORD"),
        ({"database": "no_such_db"}, "does not exist", "DATABASE"),
        ({"port": None}, "nothing accepts connections there", "PORT"),
    ],
)
@pytest.mark.parametrize("origin", ["env", "tool"])
def test_a_tenant_that_cannot_connect_gets_the_cause_and_what_to_fix(
    pg_database: dict[str, Any],
    backend: PostgresBackend,
    change: dict[str, Any],
    cause: str,
    variable: str,
    origin: str,
) -> None:
    fields = {**pg_database, **change}
    if "port" in change:
        fields["port"] = free_ports(1)[0]
    config = PostgresTenant(tenant_id="broken", origin=origin, **fields)
    fix = (
        f"fix POSTGRES_TENANT_BROKEN_{variable} and restart the server"
        if origin == "env"
        else f"register the tenant again (register_tenant) with the right {variable.lower()}"
    )
    pool = backend.open(config)
    try:
        for _attempt in range(2):  # the first call and the next one, after the pool has failed
            with pytest.raises(TenantUnreachable) as err:
                _call(config, backend, pool)
            assert cause in str(err.value) and fix in str(err.value)
            assert pg_database["password"] not in str(err.value)
    finally:
        backend.close(pool)


def test_the_first_call_after_the_database_comes_back_connects_at_once(
    pg_database: dict[str, Any], postgres_service: Any
) -> None:
    name = f"late_{secrets.token_hex(4)}"
    config = PostgresTenant(tenant_id="late", **{**pg_database, "database": name})
    # A pool wait shorter than psycopg_pool's first reconnect delay (1 s): only a connection made
    # by the call itself can serve it.
    backend = PostgresBackend(Settings.from_env("postgres", {}, pool_timeout_ms=300, connect_timeout_s=2))
    pool = backend.open(config)
    try:
        with pytest.raises(TenantUnreachable, match="does not exist"):
            _call(config, backend, pool)
        postgres_service.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(pg_database["user"]))
        )
        _call(config, backend, pool)
    finally:
        backend.close(pool)
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
