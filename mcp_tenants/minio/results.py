"""Result types of the MinIO tools: they become the tools' output schemas.

Lists that can be long (objects, prefixes, buckets, tenants) are published as plain arrays whose
item shape is written in the description, not as an ``items`` schema: the MCP Python SDK's client
re-validates every result against the output schema with jsonschema, and an ``items`` schema makes
it walk every entry (about 100 ms per 1,000 objects; 9 ms with items checked only as objects,
0.07 ms without). The server still checks the items against these TypedDicts before sending.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import WithJsonSchema
from typing_extensions import TypedDict


def shallow_array(items: str) -> WithJsonSchema:
    """The JSON schema of an array whose items are described in words, not validated one by one."""
    schema: dict[str, Any] = {"type": "array", "description": items}
    return WithJsonSchema(schema)


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
    tenants: Annotated[
        list[TenantInfo],
        shallow_array(
            "Tenants sorted by id, each {tenant_id, endpoint, access_key: string, secure: boolean, "
            "region: string|null, access: 'read-only'|'read-write', source: 'env'|'redis'|'memory'}"
        ),
    ]
    next_cursor: str | None
    unreadable: dict[str, str]


class BucketInfo(TypedDict):
    name: str
    created: str | None


class BucketsResult(TypedDict):
    buckets: Annotated[
        list[BucketInfo],
        shallow_array("Buckets, each {name: string, created: string (ISO 8601, UTC) | null}"),
    ]


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
    objects: Annotated[
        list[ObjectInfo],
        shallow_array(
            "Objects in key order, each {key: string, size: integer|null, "
            "last_modified: string (ISO 8601, UTC)|null, etag: string|null}"
        ),
    ]
    prefixes: Annotated[list[str], shallow_array("Common prefixes (strings ending in '/'), in key order")]
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
