"""Tenants defined by environment variables: read them all, keep the valid ones, report the rest.

One invalid definition (a missing ``_HOST``, ``_PORT=abc``, an empty ``_SSLMODE``, an endpoint with
``http://``) must never stop a server: the servers and the CLI read the environment through
``read_env_tenants``, which never raises, serve the valid tenants, and show each invalid one with
a message that names the variable to fix. An id the environment defines stays the environment's,
valid or not: a tool call can neither register nor remove it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mcp_tenants.config import TenantConfig, shown, validate_tenant_id
from mcp_tenants.errors import InvalidInput

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TenantConfig)


@dataclass(frozen=True)
class EnvTenants(Generic[C]):
    """What the environment defines: valid configs, and a message for each invalid tenant."""

    valid: dict[str, C] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        """Every id the environment defines, valid or not."""
        return set(self.valid) | set(self.invalid)

    def log_invalid(self, server: str) -> None:
        """One error line per invalid tenant, saying it is skipped."""
        for _tenant_id, message in sorted(self.invalid.items()):
            logger.error("%s server: skipping %s; fix it and restart", server, message)


def read_env_tenants(config_type: type[C], environ: Mapping[str, str]) -> EnvTenants[C]:
    """Every tenant of ``config_type`` in ``environ``; never raises for a bad definition."""
    result: EnvTenants[C] = EnvTenants()
    for tenant_id in sorted(config_type.env_ids(environ)):
        try:
            validate_tenant_id(tenant_id)
        except InvalidInput:
            result.invalid[tenant_id] = (
                f"environment tenant {shown(tenant_id)}: {config_type.ENV_PREFIX}{tenant_id.upper()}_* does not "
                "name a valid tenant id (1-64 of a-z, 0-9, '_', '-', starting with a letter or digit)"
            )
            continue
        try:
            config = config_type.from_env(tenant_id, environ)
        except InvalidInput as exc:
            result.invalid[tenant_id] = str(exc)
            continue
        if config is not None:
            result.valid[tenant_id] = config
    return result
