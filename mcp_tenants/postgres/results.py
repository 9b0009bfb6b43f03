"""Result types of the PostgreSQL tools: they become the tools' output schemas."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import WithJsonSchema
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


Rows = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "description": "One JSON array of values per row, in column order (bigint beyond 2^53 and "
            "inexact numeric as strings, bytea base64, timestamps and intervals ISO 8601)",
        }
    ),
]
Cut = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "description": "[row, column] (0-based) of each value that was too wide for the byte cap "
            "and was replaced by a string of its first characters",
        }
    ),
]


class QueryResult(TypedDict):
    columns: list[Column]
    # The schema of rows says "an array" and nothing per cell: a client that validates results
    # (the MCP Python SDK does, on every call) must not walk every value of every row.
    rows: Rows
    row_count: int
    truncated: bool
    cut: NotRequired[Cut]


class ExecuteResult(TypedDict):
    status: str
    rowcount: int | None
    columns: NotRequired[list[Column]]
    rows: NotRequired[Rows]
    truncated: NotRequired[bool]


class SchemasResult(TypedDict):
    schemas: list[str]


class TablesResult(TypedDict):
    schema: str
    tables: list[dict[str, Any]]


class PlanResult(TypedDict):
    plan: Any
    truncated: NotRequired[bool]
    note: NotRequired[str]
    plan_start: NotRequired[str]
