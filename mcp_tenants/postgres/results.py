"""Result types of the PostgreSQL tools: they become the tools' output schemas."""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict


class TenantInfo(TypedDict, total=False):
    tenant_id: str
    host: str
    port: int
    database: str
    user: str
    sslmode: str
    access: str
    source: str


class RegisterResult(TypedDict):
    tenant: TenantInfo
    persisted: bool


class ListTenantsResult(TypedDict):
    tenants: list[TenantInfo]
    next_cursor: str | None
    unreadable: dict[str, str]


class Column(TypedDict):
    name: str
    type: str


class QueryResult(TypedDict):
    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


class ExecuteResult(TypedDict):
    status: str
    rowcount: int | None


class SchemasResult(TypedDict):
    schemas: list[str]


class TablesResult(TypedDict):
    schema: str
    tables: list[dict[str, Any]]


class PlanResult(TypedDict):
    plan: Any
