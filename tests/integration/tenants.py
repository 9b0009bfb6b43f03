"""What the integration tests need to know about tenants and tools, written once."""

from __future__ import annotations

from typing import Any

#: The tools each server must list (SPEC).
POSTGRES_TOOLS = {
    "register_tenant",
    "list_tenants",
    "remove_tenant",
    "list_schemas",
    "list_tables",
    "describe_table",
    "query",
    "execute",
    "explain_query",
}
MINIO_TOOLS = {
    "register_tenant",
    "list_tenants",
    "remove_tenant",
    "list_buckets",
    "create_bucket",
    "delete_bucket",
    "list_objects",
    "stat_object",
    "get_object",
    "put_object",
    "delete_object",
    "copy_object",
    "presigned_url",
}


def pg_register_args(pg: dict[str, Any], tenant_id: str = "acme", **overrides: Any) -> dict[str, Any]:
    """register_tenant arguments for the ``pg_database`` fixture's database."""
    return {
        "tenant_id": tenant_id,
        "host": pg["host"],
        "port": pg["port"],
        "database": pg["database"],
        "user": pg["user"],
        "password": pg["password"],
        **overrides,
    }


def pg_env_tenant(tenant_id: str, pg: dict[str, Any]) -> dict[str, str]:
    """POSTGRES_TENANT_<ID>_* variables for the ``pg_database`` fixture's database."""
    prefix = f"POSTGRES_TENANT_{tenant_id.upper()}_"
    return {
        prefix + "HOST": pg["host"],
        prefix + "PORT": str(pg["port"]),
        prefix + "DATABASE": pg["database"],
        prefix + "USER": pg["user"],
        prefix + "PASSWORD": pg["password"],
    }
