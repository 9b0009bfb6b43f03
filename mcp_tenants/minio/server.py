"""The MinIO MCP server: tool signatures and wiring; the logic lives in ``tools``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from mcp_tenants.errors import AccessDenied
from mcp_tenants.launch import serve
from mcp_tenants.minio.config import MinioTenant
from mcp_tenants.minio.results import (
    BucketCreated,
    BucketDeleted,
    BucketsResult,
    ListTenantsResult,
    ObjectContent,
    ObjectCopied,
    ObjectDeleted,
    ObjectsPage,
    ObjectStat,
    ObjectWritten,
    PresignedUrl,
    RegisterResult,
)
from mcp_tenants.server import DELETES, DESTRUCTIVE_WRITES, READS, WRITES, TenantServer
from mcp_tenants.settings import Settings
from mcp_tenants.tenant_tools import TenantId, add_tenant_tools
from mcp_tenants.toolspec import Action

if TYPE_CHECKING:
    from minio import Minio

    from mcp_tenants.minio.tenant import MinioBackend
    from mcp_tenants.registry import TenantManager

Bucket = Annotated[str, Field(description="Bucket name (S3 rules: 3-63 of a-z, 0-9, '.', '-')")]
Key = Annotated[str, Field(description="Object key (1-1024 bytes of UTF-8)")]

#: Writes that can replace what is there (DESTRUCTIVE_WRITES): put_object and copy_object
#: overwrite an existing key; presigned_url can mint a PUT URL that lets anyone holding it do the
#: same (the annotation describes the tool, whatever method one call asks for). Not idempotent:
#: on a versioned bucket every write adds a version, and every call mints another live URL.
OVERWRITES = DESTRUCTIVE_WRITES


def _presign_action(arguments: Mapping[str, Any]) -> Action:
    """A download URL is a read; an upload URL needs a role that may write."""
    return "write" if arguments.get("method") == "PUT" else "read"


INSTRUCTIONS = (
    "S3-compatible object storage for many tenants. Call list_tenants to see them; every other "
    "tool takes tenant_id first. Write tools need a read-write tenant."
)


def add_tools(app: TenantServer, manager: TenantManager[MinioTenant, Minio]) -> None:
    """Register the MinIO tools on ``app``.

    The minio SDK loads here, not when the module is imported: over stdio this runs after the
    client's ``initialize`` is answered (``launch.serve``).
    """
    from mcp_tenants.minio import tools
    from mcp_tenants.minio.client import TenantSettingError
    from mcp_tenants.minio.tenant import explain_setting

    settings = app.settings

    add_tenant_tools(app, manager, ListTenantsResult)

    @contextlib.contextmanager
    def client(tenant_id: str, *, write: bool = False) -> Iterator[Minio]:
        """The tenant's client; a failure caused by one of its settings names where to fix it."""
        config, minio_client = manager.resource(tenant_id)
        if write and not config.writable:
            raise AccessDenied(
                f'tenant {tenant_id!r} is read-only: register it with access="read-write" '
                f"(or set MINIO_TENANT_{tenant_id.upper()}_ACCESS=read-write) to allow writes"
            )
        try:
            yield minio_client
        except TenantSettingError as exc:
            raise explain_setting(exc, tenant_id, from_env=manager.is_env_tenant(tenant_id)) from exc

    @app.tool(WRITES, title="Register an S3 tenant")
    def register_tenant(
        tenant_id: TenantId,
        endpoint: Annotated[str, Field(description="host:port of the S3 API, without scheme")],
        access_key: Annotated[str, Field(description="Access key id")],
        secret_key: Annotated[str, Field(description="Secret key (never shown again)")],
        secure: Annotated[bool, Field(description="Use HTTPS")] = False,
        region: Annotated[str | None, Field(description="Region, e.g. us-east-1")] = None,
        access: Literal["read-only", "read-write"] = "read-only",
    ) -> RegisterResult:
        """Add or replace a tenant after checking that the endpoint accepts these credentials.

        The tenant is kept in memory and persisted to Redis (persisted=false when Redis is down;
        it is written when Redis returns). Tenants defined in the environment cannot be replaced.
        """
        config = MinioTenant(
            tenant_id=tenant_id,
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            access=access,
        )
        try:
            persisted = manager.register(config)
        except TenantSettingError as exc:
            names = " and ".join(exc.settings)
            raise exc.with_fix(f"check the {names} argument{'s' if len(exc.settings) > 1 else ''}") from exc
        return {"tenant": config.public(), "persisted": persisted}  # type: ignore[typeddict-item]

    @app.tool(READS, title="List buckets")
    def list_buckets(tenant_id: TenantId) -> BucketsResult:
        """The tenant's buckets with their creation time."""
        with client(tenant_id) as minio_client:
            return tools.list_buckets(minio_client)

    @app.tool(WRITES, title="Create a bucket")
    def create_bucket(tenant_id: TenantId, bucket: Bucket) -> BucketCreated:
        """Create a bucket (read-write tenants only)."""
        config = manager.get(tenant_id)
        with client(tenant_id, write=True) as minio_client:
            return tools.create_bucket(minio_client, bucket, region=config.region)

    @app.tool(DELETES, title="Delete an empty bucket")
    def delete_bucket(tenant_id: TenantId, bucket: Bucket) -> BucketDeleted:
        """Delete a bucket; refuses a bucket that still holds objects (read-write tenants only)."""
        with client(tenant_id, write=True) as minio_client:
            return tools.delete_bucket(minio_client, bucket)

    @app.tool(READS, title="List objects")
    def list_objects(
        tenant_id: TenantId,
        bucket: Bucket,
        prefix: Annotated[str, Field(description="Only keys starting with this")] = "",
        recursive: Annotated[bool, Field(description="false: stop at '/' and return common prefixes")] = True,
        max_keys: Annotated[int, Field(description="Page size", ge=1)] = 1000,
        start_after: Annotated[str | None, Field(description="Continue after this key (next_start_after)")] = None,
    ) -> ObjectsPage:
        """One page of objects (key, size, last_modified, etag) and common prefixes; truncated=true
        means call again with start_after=next_start_after."""
        with client(tenant_id) as minio_client:
            return tools.list_objects(
                minio_client,
                bucket,
                prefix=prefix,
                recursive=recursive,
                max_keys=max_keys,
                start_after=start_after,
                max_keys_cap=settings.list_max_keys,
            )

    @app.tool(READS, title="Object metadata")
    def stat_object(tenant_id: TenantId, bucket: Bucket, key: Key) -> ObjectStat:
        """Size, etag, content type, last modified and user metadata of an object."""
        with client(tenant_id) as minio_client:
            return tools.stat_object(minio_client, bucket, key)

    @app.tool(READS, title="Read an object")
    def get_object(
        tenant_id: TenantId,
        bucket: Bucket,
        key: Key,
        offset: Annotated[int, Field(description="First byte to read", ge=0)] = 0,
        length: Annotated[int | None, Field(description="Bytes to read (capped)", ge=1)] = None,
    ) -> ObjectContent:
        """Object content: text when it is UTF-8, else base64. At most MCP_OBJECT_MAX_BYTES per call;
        truncated=true tells how to read the rest (offset=next_offset, or presigned_url)."""
        with client(tenant_id) as minio_client:
            return tools.get_object(
                minio_client, bucket, key, offset=offset, length=length, max_bytes=settings.object_max_bytes
            )

    @app.tool(OVERWRITES, title="Write an object")
    def put_object(
        tenant_id: TenantId,
        bucket: Bucket,
        key: Key,
        content: Annotated[
            str, Field(description="The content, as text or base64; at most MCP_PUT_MAX_BYTES (default 1 MiB)")
        ],
        encoding: Literal["text", "base64"] = "text",
        content_type: Annotated[str | None, Field(description="MIME type; guessed from the key when omitted")] = None,
    ) -> ObjectWritten:
        """Create or replace an object (read-write tenants only). For content over
        MCP_PUT_MAX_BYTES, upload to a presigned_url with method="PUT" instead."""
        with client(tenant_id, write=True) as minio_client:
            return tools.put_object(
                minio_client,
                bucket,
                key,
                content,
                encoding=encoding,
                content_type=content_type,
                max_bytes=settings.put_max_bytes,
            )

    @app.tool(DELETES, title="Delete an object")
    def delete_object(tenant_id: TenantId, bucket: Bucket, key: Key) -> ObjectDeleted:
        """Delete an object (read-write tenants only)."""
        with client(tenant_id, write=True) as minio_client:
            return tools.delete_object(minio_client, bucket, key)

    @app.tool(OVERWRITES, title="Copy an object")
    def copy_object(
        tenant_id: TenantId, source_bucket: Bucket, source_key: Key, bucket: Bucket, key: Key
    ) -> ObjectCopied:
        """Copy an object server-side, within the tenant, replacing bucket/key if it exists
        (read-write tenants only)."""
        with client(tenant_id, write=True) as minio_client:
            return tools.copy_object(minio_client, source_bucket, source_key, bucket, key)

    @app.tool(OVERWRITES, title="Presigned URL", action=_presign_action)
    def presigned_url(
        tenant_id: TenantId,
        bucket: Bucket,
        key: Key,
        method: Literal["GET", "PUT"] = "GET",
        expires_seconds: Annotated[int, Field(description="1 s to 7 days", ge=1, le=7 * 24 * 3600)] = 3600,
    ) -> PresignedUrl:
        """A time-limited URL to download (GET) or upload (PUT) an object without credentials; anyone
        holding a PUT URL can overwrite the object until it expires. PUT needs a read-write tenant."""
        with client(tenant_id, write=method == "PUT") as minio_client:
            return tools.presigned_url(minio_client, bucket, key, method=method, expires_seconds=expires_seconds)


def make_backend(settings: Settings) -> MinioBackend:
    """The backend (S3 clients), imported when the server process is built."""
    from mcp_tenants.minio.tenant import MinioBackend

    return MinioBackend(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``mcp-minio-server``."""
    return serve("mcp-minio-server", "minio", MinioTenant, make_backend, add_tools, argv, instructions=INSTRUCTIONS)
