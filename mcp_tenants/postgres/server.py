"""The PostgreSQL MCP server: tool signatures and wiring; the logic lives in ``tools``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from mcp_tenants.errors import AccessDenied
from mcp_tenants.launch import serve
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.postgres.results import (
    ExecuteResult,
    ListTenantsResult,
    PlanResult,
    QueryResult,
    RegisterResult,
    SchemasResult,
    TablesResult,
)
from mcp_tenants.server import DESTRUCTIVE_WRITES, READS, WRITES, TenantServer
from mcp_tenants.settings import Settings
from mcp_tenants.tenant_tools import TenantId, add_tenant_tools

if TYPE_CHECKING:
    from mcp_tenants.postgres.tenant import PostgresBackend
    from mcp_tenants.registry import TenantManager

Schema = Annotated[str, Field(description="Schema name", min_length=1, max_length=63)]
Sql = Annotated[
    str, Field(description="One SQL statement; use $1, $2, ... for parameters", min_length=1, max_length=1_000_000)
]
Params = Annotated[list[Any], Field(description="Values for $1, $2, ... in order", max_length=10_000)]

INSTRUCTIONS = (
    "PostgreSQL for many tenants. Call list_tenants to see them; every other tool takes tenant_id "
    "first. query is always read-only; execute changes data on read-write tenants only."
)


def add_tools(app: TenantServer, manager: TenantManager[PostgresTenant, Any]) -> None:
    """Register the PostgreSQL tools on ``app``.

    psycopg and the SQL parser load here, not when the module is imported: over stdio this runs
    after the client's ``initialize`` is answered (``launch.serve``).
    """
    from mcp_tenants.postgres import tools
    from mcp_tenants.postgres.policy import FunctionPolicy
    from mcp_tenants.postgres.tenant import checkout

    settings = app.settings
    policy = FunctionPolicy.from_names(settings.allowed_volatile_functions)

    add_tenant_tools(app, manager, ListTenantsResult)

    @app.tool(WRITES, title="Register a PostgreSQL tenant")
    def register_tenant(
        tenant_id: TenantId,
        host: Annotated[str, Field(description="Database host name or address")],
        database: Annotated[str, Field(description="Database name")],
        user: Annotated[str, Field(description="Login role")],
        password: Annotated[str, Field(description="Password of the login role (never shown again)")],
        port: Annotated[int, Field(description="Port", ge=1, le=65535)] = 5432,
        sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer",
        access: Literal["read-only", "read-write"] = "read-only",
    ) -> RegisterResult:
        """Add or replace a tenant after checking that the database accepts these credentials.

        The tenant is kept in memory and persisted to Redis (persisted=false when Redis is down;
        it is written when Redis returns). Tenants defined in the environment cannot be replaced.
        """
        config = PostgresTenant(
            tenant_id=tenant_id,
            host=host,
            port=port,
            database=database,
            user=user,
            password=password,
            sslmode=sslmode,
            access=access,
        )
        persisted = manager.register(config)
        return {"tenant": config.public(), "persisted": persisted}  # type: ignore[typeddict-item]

    @app.tool(READS, title="List schemas")
    def list_schemas(tenant_id: TenantId) -> SchemasResult:
        """The schemas of the tenant's database."""
        with checkout(manager, tenant_id) as (_config, conn):
            return tools.list_schemas(conn)  # type: ignore[return-value]

    @app.tool(READS, title="List tables")
    def list_tables(tenant_id: TenantId, schema: Schema = "public") -> TablesResult:
        """Tables, views and other relations of a schema, with their kind and estimated row count."""
        with checkout(manager, tenant_id) as (_config, conn):
            return {"schema": schema, **tools.list_tables(conn, schema)}  # type: ignore[typeddict-item]

    @app.tool(READS, title="Describe a table")
    def describe_table(
        tenant_id: TenantId,
        table: Annotated[str, Field(description="Table or view name", min_length=1, max_length=63)],
        schema: Schema = "public",
    ) -> dict[str, Any]:
        """Columns (type, nullable, default, comment), primary key, indexes and foreign keys both ways."""
        with checkout(manager, tenant_id) as (_config, conn):
            return tools.describe_table(conn, schema, table)

    @app.tool(READS, title="Run a read-only query")
    def query(
        tenant_id: TenantId,
        sql: Sql,
        params: Params = [],  # noqa: B006 - pydantic copies defaults
        max_rows: Annotated[int | None, Field(description="Return at most this many rows", ge=1)] = None,
    ) -> QueryResult:
        """Run one read-only statement (SELECT, WITH, VALUES, TABLE) in a READ ONLY transaction.

        Rows and bytes are capped; truncated=true says rows were left out or values cut (cut
        lists the [row, column] cells shortened to fit). Values come back as JSON (bytea as
        base64, timestamps ISO 8601). Only non-volatile functions run (and a short allow list).
        """
        limit = min(max_rows or settings.query_max_rows, settings.query_max_rows)
        with checkout(manager, tenant_id) as (_config, conn):
            return tools.query(  # type: ignore[return-value]
                conn,
                sql,
                list(params),
                max_rows=limit,
                max_bytes=settings.result_max_bytes,
                statement_timeout_ms=settings.statement_timeout_ms,
                policy=policy,  # query is read-only for every tenant and every caller
            )

    @app.tool(DESTRUCTIVE_WRITES, title="Execute a statement (read-write tenants)")
    def execute(tenant_id: TenantId, sql: Sql, params: Params = []) -> ExecuteResult:  # noqa: B006
        """Run one statement that changes data or schema (it can DROP), and commit it. Read-write
        tenants only. With RETURNING, the rows come back capped like query's."""
        if not manager.get(tenant_id).writable:
            raise AccessDenied(
                f'tenant {tenant_id!r} is read-only: register it with access="read-write" '
                f"(or set POSTGRES_TENANT_{tenant_id.upper()}_ACCESS=read-write) to allow execute"
            )
        with checkout(manager, tenant_id) as (_config, conn):
            return tools.execute(  # type: ignore[return-value]
                conn,
                sql,
                list(params),
                statement_timeout_ms=settings.statement_timeout_ms,
                max_rows=settings.query_max_rows,
                max_bytes=settings.result_max_bytes,
            )

    @app.tool(READS, title="Explain a query")
    def explain_query(
        tenant_id: TenantId,
        sql: Sql,
        analyze: Annotated[bool, Field(description="Run the statement to measure it (always rolled back)")] = False,
    ) -> PlanResult:
        """The plan of a statement as JSON (EXPLAIN FORMAT JSON); with analyze, measured and rolled back.

        What query may run can be explained by anyone; INSERT, UPDATE, DELETE and MERGE on
        read-write tenants by callers who may write."""
        with checkout(manager, tenant_id) as (config, conn):
            return tools.explain_query(  # type: ignore[return-value]
                conn,
                sql,
                analyze=analyze,
                # Writes (and volatile functions) only for a caller who may write, on a tenant
                # that allows it: analyze runs the statement, and not everything rolls back.
                read_only=not (config.writable and app.caller_may("write")),
                statement_timeout_ms=settings.statement_timeout_ms,
                policy=policy,
                max_bytes=settings.result_max_bytes,
            )


def make_backend(settings: Settings) -> PostgresBackend:
    """The backend (psycopg pools), imported when the server process is built."""
    from mcp_tenants.postgres.tenant import PostgresBackend

    return PostgresBackend(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``mcp-postgres-server``."""
    return serve(
        "mcp-postgres-server", "postgres", PostgresTenant, make_backend, add_tools, argv, instructions=INSTRUCTIONS
    )
