"""A MinIO (S3-compatible) tenant: its config, and the client opened for it on first use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import urllib3
from minio import Minio

from mcp_tenants.config import Settings, TenantConfig, parse_bool, shown
from mcp_tenants.errors import InvalidInput
from mcp_tenants.minio.client import TenantSettingError, make_client, make_http_client
from mcp_tenants.minio.tools import check_credentials


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
    def env_variable(cls, tenant_id: str, field: str) -> str:
        """The environment variable that sets ``field`` of tenant ``tenant_id``."""
        suffix = next(suffix for suffix, name in cls.env_fields().items() if name == field)
        return f"{cls.ENV_PREFIX}{tenant_id.upper()}_{suffix}"

    @classmethod
    def coerce_env(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        if "secure" in values:
            values["secure"] = parse_bool("SECURE", values["secure"])
        if not values.get("region"):
            values.pop("region", None)
        return values


def explain_setting(error: TenantSettingError, tenant_id: str, *, from_env: bool) -> TenantSettingError:
    """``error`` with the fix its user can make: an environment variable, or registering again."""
    if from_env:
        names = " and ".join(MinioTenant.env_variable(tenant_id, name) for name in error.settings)
        fix = f"check {names} (environment tenants are read at start: restart the server after the change)"
    else:
        names = " and ".join(error.settings)
        fix = (
            f"check the tenant's {names}: register it again with corrected values (register_tenant, or mcp-tenants add)"
        )
    return error.with_fix(fix, prefix=f"tenant {tenant_id!r}: ")


class MinioBackend:
    """Opens, checks and closes S3 clients for the TenantManager."""

    server = "minio"
    config_type = MinioTenant

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def http_client(self, config: MinioTenant) -> urllib3.PoolManager:
        """The connection pool of ``config``'s client: the one place to change how it connects."""
        return make_http_client(connect_timeout=self.settings.connect_timeout_s)

    def open(self, config: MinioTenant) -> Minio:
        """One client per tenant, shared by all worker threads (it is thread-safe)."""
        return make_client(
            config.endpoint,
            config.access_key,
            config.secret_key,
            secure=config.secure,
            region=config.region,
            http_client=self.http_client(config),
        )

    def interrupt(self, client: Minio) -> None:
        """Nothing to cancel: every S3 request is bounded by the client's timeouts."""

    def close(self, client: Minio) -> None:
        client._http.clear()  # minio has no close(); this drops the pooled connections

    def verify(self, config: MinioTenant) -> None:
        client = self.open(config)
        try:
            check_credentials(client)
        finally:
            self.close(client)
