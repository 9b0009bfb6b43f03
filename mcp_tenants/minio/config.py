"""An S3 tenant's config: fields, validation, environment variables.

Kept apart from ``tenant.py`` (the client) so that reading and validating configs, as the operator
CLI does, never imports minio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mcp_tenants.config import TenantConfig, parse_bool, shown
from mcp_tenants.errors import InvalidInput


@dataclass(frozen=True, kw_only=True)
class MinioTenant(TenantConfig):
    """Connection settings of one S3-compatible tenant."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret_key",)
    ENV_PREFIX: ClassVar[str] = "MINIO_TENANT_"

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False
    region: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        endpoint = self.endpoint
        if (
            not isinstance(endpoint, str)
            or not endpoint
            or len(endpoint) > 255
            or "/" in endpoint
            or any(c.isspace() for c in endpoint)
        ):
            raise InvalidInput(
                f"endpoint {shown(endpoint)} is invalid: give host[:port] without a scheme or path "
                "(use secure=true for https)"
            )
        if not isinstance(self.access_key, str) or not 1 <= len(self.access_key) <= 256:
            raise InvalidInput("access_key is invalid: give a non-empty string of at most 256 characters")
        if not isinstance(self.secret_key, str) or not 1 <= len(self.secret_key) <= 256:
            raise InvalidInput("secret_key is invalid: give a non-empty string of at most 256 characters")
        if not isinstance(self.secure, bool):
            raise InvalidInput(f"secure {shown(self.secure)} is invalid: use true or false")
        if self.region is not None and (not isinstance(self.region, str) or not 1 <= len(self.region) <= 64):
            raise InvalidInput(f"region {shown(self.region)} is invalid: give a region name such as us-east-1")

    def target_host(self) -> str:
        host = self.endpoint
        if host.startswith("["):  # [ipv6]:port
            return host[1:].split("]", 1)[0]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    @classmethod
    def env_fields(cls) -> dict[str, str]:
        return {
            **super().env_fields(),
            "ENDPOINT": "endpoint",
            "ACCESS_KEY": "access_key",
            "SECRET_KEY": "secret_key",
            "SECURE": "secure",
            "REGION": "region",
        }

    @classmethod
    def coerce_env(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        if "secure" in values:
            values["secure"] = parse_bool("SECURE", values["secure"])
        if not values.get("region"):
            values.pop("region", None)
        return values
