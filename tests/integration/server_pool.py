"""A PostgreSQL pool built exactly as the server builds its tenants' pools, for tool-level tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant, TenantPool
from mcp_tenants.settings import Settings


@contextmanager
def server_pool(info: dict[str, Any], tenant_id: str) -> Iterator[TenantPool]:
    """One connection in a ``PostgresBackend.open`` pool: autocommit, no prepared statements, cheap checks."""
    config = PostgresTenant(
        tenant_id=tenant_id,
        host=info["host"],
        port=info["port"],
        database=info["dbname"],
        user=info["user"],
        password=info["password"],
    )
    backend = PostgresBackend(Settings.from_env("postgres", {}, pool_max_size=1))
    pool = backend.open(config)
    try:
        yield pool
    finally:
        backend.close(pool)
