"""A PostgreSQL tenant's config: fields, validation, environment variables.

Kept apart from ``tenant.py`` (the pool) so that reading and validating configs, as the operator
CLI does, never imports psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mcp_tenants.config import TenantConfig, parse_int, shown
from mcp_tenants.errors import InvalidInput

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, kw_only=True)
class PostgresTenant(TenantConfig):
    """Connection settings of one PostgreSQL tenant."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    ENV_PREFIX: ClassVar[str] = "POSTGRES_TENANT_"

    host: str
    port: int = 5432
    database: str
    user: str
    password: str
    sslmode: str = "prefer"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("host", "database", "user"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 255 or "\x00" in value:
                raise InvalidInput(
                    f"{name} {shown(value)} is invalid: give a non-empty string of at most 255 characters"
                )
        if not isinstance(self.password, str) or "\x00" in self.password or len(self.password) > 1024:
            raise InvalidInput("password is invalid: give a string of at most 1024 characters")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise InvalidInput(f"port {shown(self.port)} is invalid: use 1..65535")
        if self.sslmode not in SSLMODES:
            raise InvalidInput(f"sslmode {shown(self.sslmode)} is invalid: use one of {', '.join(SSLMODES)}")

    def target_host(self) -> str:
        return self.host

    @classmethod
    def env_fields(cls) -> dict[str, str]:
        return {
            **super().env_fields(),
            "HOST": "host",
            "PORT": "port",
            "DATABASE": "database",
            "USER": "user",
            "PASSWORD": "password",
            "SSLMODE": "sslmode",
        }

    @classmethod
    def coerce_env(cls, values: dict[str, Any]) -> dict[str, Any]:
        if "port" in values:
            values = {**values, "port": parse_int("PORT", values["port"], minimum=1, maximum=65535)}
        return values

    def conninfo(self, *, connect_timeout: int) -> dict[str, Any]:
        """psycopg keyword arguments. Keywords, never a concatenated string: a password that
        contains ``host=evil`` stays a password."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "password": self.password,
            "sslmode": self.sslmode,
            "connect_timeout": connect_timeout,
            # Not the tenant id: pg_stat_activity shows application_name to every role of the
            # cluster, and tenant ids are hidden from callers outside the grant.
            "application_name": "mcp-tenants",
            # The guard's parser reads UTF-8; the server must read the same characters.
            "client_encoding": "UTF8",
        }
