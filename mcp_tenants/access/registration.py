"""The operator's registration policy: what a ``register_tenant`` tool call may create.

``MCP_TENANT_TOOLS=off`` removes ``register_tenant`` and ``remove_tenant`` (the core asks
``tools_enabled``); ``MCP_MAX_ACCESS`` caps the access a tool may give a tenant; the target policy
checks where it points (again on every connect, in the backends' connect hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.errors import AccessDenied


@dataclass(frozen=True)
class RegistrationPolicy:
    """Checks a tenant config submitted by a tool call before anything connects or is stored."""

    targets: TargetPolicy
    max_access: str = "read-write"
    tools_enabled: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> RegistrationPolicy:
        """The policy of a server process."""
        return cls(TargetPolicy.from_settings(settings), settings.max_access, settings.tenant_tools)

    def admit(self, config: Any) -> None:
        """Raise ``AccessDenied`` (or ``InvalidInput``) unless a tool may register ``config``."""
        if config.access == "read-write" and self.max_access == "read-only":
            raise AccessDenied(
                f"tenant {config.tenant_id!r}: this server allows tools to register read-only tenants only "
                '(MCP_MAX_ACCESS=read-only); register it with access="read-only", or ask the operator to '
                "add it with mcp-tenants add"
            )
        self.targets.check(config.target_host())
