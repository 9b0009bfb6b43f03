"""The tenant-management tools both servers share: argument types, list_tenants, remove_tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field
from typing_extensions import TypedDict

from mcp_tenants.config import TENANT_ID_PATTERN
from mcp_tenants.server import DELETES, READS, TenantServer

if TYPE_CHECKING:
    from mcp_tenants.registry import TenantManager

TenantId = Annotated[str, Field(description=f"Tenant id, {TENANT_ID_PATTERN}")]
PageSize = Annotated[int, Field(description="Tenants per page", ge=1, le=1000)]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page")]


class RemoveResult(TypedDict):
    tenant_id: str
    removed: bool
    persisted: bool


def add_tenant_tools(app: TenantServer, manager: TenantManager[Any, Any], list_result: type) -> None:
    """Register list_tenants and remove_tenant; ``list_result`` is the server's result TypedDict."""

    def list_tenants(limit: PageSize = 100, cursor: Cursor = None) -> dict[str, Any]:
        """Tenants sorted by id, with their source (env, redis, or memory when not yet persisted); no
        secrets. When next_cursor is set, call again with cursor=next_cursor for the next page."""
        tenants, next_cursor, unreadable = manager.list(limit=limit, after=cursor, visible=app.visible())
        return {"tenants": tenants, "next_cursor": next_cursor, "unreadable": unreadable}

    # The output schema names each server's own tenant fields, so the annotation is set per server
    # before the tool is registered (registration reads it).
    list_tenants.__annotations__["return"] = list_result
    app.tool(READS, title="List tenants")(list_tenants)

    @app.tool(DELETES, title="Remove a tenant")
    def remove_tenant(tenant_id: TenantId) -> RemoveResult:
        """Remove a registered tenant: close its pool or client and delete it from Redis.
        Tenants defined in the environment are refused."""
        persisted = manager.remove(tenant_id)
        return {"tenant_id": tenant_id, "removed": True, "persisted": persisted}
