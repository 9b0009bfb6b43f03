"""The error hierarchy.

Every failure a user can act on is a ``TenantsError`` subclass whose message is safe to show:
it names the field or tenant involved and never carries a secret. The MCP layer turns these
into tool errors at one boundary (``mcp_tenants.server``); anything else is reported as an
internal error without details.
"""

import difflib
from collections.abc import Collection


class TenantsError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidInput(TenantsError):
    """An argument, setting or stored field has a bad value."""


class TenantNotFound(TenantsError):
    """No tenant with this id in memory, Redis or the environment."""


class UnknownTenant(TenantNotFound):
    """No tenant with this id exists for the caller (missing, or outside the caller's grant)."""

    def __init__(self, tenant_id: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown tenant {tenant_id!r}")
        self.tenant_id = tenant_id


class TenantProtected(TenantsError):
    """The tenant comes from the environment and cannot be changed by a tool call."""


class TenantUnreachable(TenantsError):
    """The tenant's database or object store cannot be reached with its credentials."""


class TenantBusy(TenantsError):
    """Every connection of the tenant's pool stayed in use for the whole wait."""


class AccessDenied(TenantsError):
    """A write was asked of a read-only tenant, or the guard refused a statement."""


class StoreUnavailable(TenantsError):
    """Redis cannot be reached or refused the command."""


class StoreRefused(StoreUnavailable):
    """Redis refuses the command for a reason that retrying cannot fix (ACL, credentials, type)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # Redis's error code, e.g. NOPERM


class CorruptEntry(TenantsError):
    """A stored tenant entry cannot be parsed or decrypted."""


class QueryError(TenantsError):
    """PostgreSQL rejected or failed a statement."""


class StorageError(TenantsError):
    """The object store rejected or failed a request."""


def unknown_tenant(tenant_id: str, env_prefix: str, candidates: Collection[str] = ()) -> str:
    """The one message for a tenant that does not exist for the caller, with a "did you mean"
    drawn only from ``candidates`` (the tenants the caller may see)."""
    close = difflib.get_close_matches(tenant_id, sorted(candidates), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    define = f", or define {env_prefix}{tenant_id.upper()}_* environment variables" if env_prefix else ""
    return (
        f"unknown tenant {tenant_id!r}{hint}: register it with register_tenant{define}; "
        "list_tenants shows the known ones"
    )
