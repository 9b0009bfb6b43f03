"""A MinIO (S3-compatible) tenant: the client opened for it on first use (its config: config.py)."""

from __future__ import annotations

from minio import Minio

from mcp_tenants.config import Settings
from mcp_tenants.minio.client import make_client
from mcp_tenants.minio.config import MinioTenant
from mcp_tenants.minio.tools import check_credentials


class MinioBackend:
    """Opens, checks and closes S3 clients for the TenantManager."""

    server = "minio"
    config_type = MinioTenant

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def open(self, config: MinioTenant) -> Minio:
        """One client per tenant, shared by all worker threads (it is thread-safe)."""
        return make_client(
            config.endpoint, config.access_key, config.secret_key, secure=config.secure, region=config.region
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
