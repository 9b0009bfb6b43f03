"""A MinIO (S3-compatible) tenant: the client opened for it on first use (its config: config.py)."""

from __future__ import annotations

import urllib3
from minio import Minio

from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.minio import targets
from mcp_tenants.minio.client import TenantSettingError, make_client, make_http_client
from mcp_tenants.minio.config import MinioTenant
from mcp_tenants.minio.tools import check_credentials
from mcp_tenants.settings import Settings


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
        self.targets = TargetPolicy.from_settings(settings)

    def http_client(self, config: MinioTenant) -> urllib3.PoolManager:
        """The connection pool of ``config``'s client: the one place to change how it connects.

        A tool-registered tenant's pool connects only to checked addresses, on every connect."""
        manager = make_http_client(connect_timeout=self.settings.connect_timeout_s)
        return manager if config.trusted else targets.pin(manager, self.targets)

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
