"""The operator's registration policy: what a ``register_tenant`` tool call may create.

``MCP_TENANT_TOOLS=off`` removes ``register_tenant`` and ``remove_tenant`` (the core asks
``tools_enabled``); ``MCP_MAX_ACCESS`` caps the access a tool may give a tenant; the target policy
checks where it points (again on every connect, in the backends' connect hooks). A tool may not
put control characters (line breaks above all) in a tenant's non-secret fields: libpq sends the
user and database names in clear to whatever listens at the target, and a line-based service there
would read ``\r\n``-separated parts as its own commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_tenants.access.targets import TargetPolicy, control_characters
from mcp_tenants.errors import AccessDenied, InvalidInput


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
        for name, value in config.public().items():
            if isinstance(value, str) and control_characters(value):
                raise InvalidInput(
                    f"{name} of tenant {config.tenant_id!r} contains control characters (such as a line break); "
                    "remove them"
                )
        self.targets.check(config.target_host())
