"""Result types of the MinIO tools: they become the tools' output schemas."""

from __future__ import annotations

from typing_extensions import TypedDict


class TenantInfo(TypedDict, total=False):
    tenant_id: str
    endpoint: str
    access_key: str
    secure: bool
    region: str | None
    access: str
    source: str


class RegisterResult(TypedDict):
    tenant: TenantInfo
    persisted: bool


class ListTenantsResult(TypedDict):
    tenants: list[TenantInfo]
    next_cursor: str | None
    unreadable: dict[str, str]


class BucketInfo(TypedDict):
    name: str
    created: str | None


class BucketsResult(TypedDict):
    buckets: list[BucketInfo]


class BucketCreated(TypedDict):
    bucket: str
    created: bool


class BucketDeleted(TypedDict):
    bucket: str
    deleted: bool


class ObjectInfo(TypedDict):
    key: str
    size: int | None
    last_modified: str | None
    etag: str | None


class ObjectsPage(TypedDict):
    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_start_after: str | None


class ObjectStat(TypedDict):
    bucket: str
    key: str
    size: int | None
    etag: str | None
    content_type: str | None
    last_modified: str | None
    metadata: dict[str, str]
    version_id: str | None


class ObjectContent(TypedDict):
    content: str
    encoding: str
    size: int
    offset: int
    length: int
    truncated: bool
    next_offset: int | None
    hint: str | None


class ObjectWritten(TypedDict):
    bucket: str
    key: str
    etag: str | None
    version_id: str | None
    size: int


class ObjectDeleted(TypedDict):
    bucket: str
    key: str
    deleted: bool


class ObjectCopied(TypedDict):
    bucket: str
    key: str
    etag: str | None
    version_id: str | None


class PresignedUrl(TypedDict):
    url: str
    method: str
    expires_at: str | None
