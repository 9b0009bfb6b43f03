"""Object-store tool logic: plain synchronous functions over a ``minio.Minio`` client.

No MCP here. The caller looks the tenant up, checks read-only/read-write access and passes caps
from the settings. Every function validates its arguments before the first network call and
raises ``TenantsError`` subclasses only (``storage_errors`` maps minio and urllib3 failures).
Results are JSON-ready dicts; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import io
import logging
import mimetypes
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Object
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError

from mcp_tenants.errors import InvalidInput, StorageError, TenantUnreachable
from mcp_tenants.minio import listing, names
from mcp_tenants.minio.client import (
    TenantSettingError,
    head_errors,
    missing_bucket_error,
    storage_error,
    storage_errors,
)
from mcp_tenants.minio.results import (
    BucketCreated,
    BucketDeleted,
    BucketsResult,
    ObjectContent,
    ObjectCopied,
    ObjectDeleted,
    ObjectsPage,
    ObjectStat,
    ObjectWritten,
    PresignedUrl,
)

logger = logging.getLogger(__name__)

_USER_META_PREFIX = "x-amz-meta-"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # S3 timestamps are UTC even when the parser drops the zone
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _require_bucket(client: Minio, bucket: str) -> None:
    """Fail with NoSuchBucket before a write that some servers would let auto-create it."""
    with head_errors(client, bucket=bucket):
        exists = client.bucket_exists(bucket)
    if not exists:
        raise missing_bucket_error(bucket)


def _stat(client: Minio, bucket: str, key: str) -> Object:
    """stat_object whose NoSuchKey is refined: a HEAD cannot tell a missing bucket from a key."""
    try:
        with head_errors(client, bucket=bucket, key=key):
            return client.stat_object(bucket, key)
    except StorageError as exc:
        if not isinstance(exc.__cause__, S3Error) or exc.__cause__.code != "NoSuchKey":
            raise
        with head_errors(client, bucket=bucket):
            exists = client.bucket_exists(bucket)
        if not exists:
            raise missing_bucket_error(bucket) from None
        raise


def list_buckets(client: Minio) -> BucketsResult:
    """The tenant's buckets with their creation time."""
    with storage_errors():
        buckets = client.list_buckets()
    return {"buckets": [{"name": b.name, "created": _iso(b.creation_date)} for b in buckets]}


def create_bucket(client: Minio, bucket: str, *, region: str | None = None) -> BucketCreated:
    """Create ``bucket``; an existing bucket is an error, never silently reused."""
    names.validate_bucket_name(bucket)
    # AWS us-east-1 answers 200 to re-creating one's own bucket; checking first gives every
    # server the same "already exists" answer.
    with head_errors(client, bucket=bucket):
        exists = client.bucket_exists(bucket)
    if exists:
        raise StorageError(f"bucket {bucket!r} already exists")
    with storage_errors(bucket=bucket):
        client.make_bucket(bucket, location=region or None)
    logger.info("created bucket %s", bucket)
    return {"bucket": bucket, "created": True}


def delete_bucket(client: Minio, bucket: str) -> BucketDeleted:
    """Delete an empty bucket; a bucket holding objects is refused."""
    names.validate_bucket_name(bucket)
    with storage_errors(bucket=bucket):
        # Some servers (SeaweedFS by default) delete a non-empty bucket with everything in it;
        # a one-key listing makes the refusal ours instead of the server's.
        first = listing.list_page(listing.bucket_fetch(client, bucket), count=1).objects
        if first:
            raise StorageError(
                f"bucket {bucket!r} is not empty (it holds {first[0]['key']!r} and maybe more); "
                "delete its objects first"
            )
        client.remove_bucket(bucket)
    logger.info("deleted bucket %s", bucket)
    return {"bucket": bucket, "deleted": True}


def list_objects(
    client: Minio,
    bucket: str,
    *,
    prefix: str = "",
    recursive: bool = True,
    max_keys: int = 1000,
    start_after: str | None = None,
    max_keys_cap: int,
) -> ObjectsPage:
    """One page of keys (and, when not recursive, common prefixes) in lexicographic order.

    The page holds at most ``min(max_keys, max_keys_cap)`` entries, objects and prefixes together.
    When ``truncated``, call again with ``start_after=next_start_after`` to continue.
    """
    names.validate_bucket_name(bucket)
    prefix = names.validate_prefix(prefix)
    start_after = names.validate_start_after(start_after)
    page_size = names.validate_max_keys(max_keys, max_keys_cap)
    with storage_errors(bucket=bucket):
        page = listing.list_page(
            listing.bucket_fetch(client, bucket),
            prefix=prefix,
            delimited=not recursive,
            start_after=start_after,
            count=page_size,
        )
    return {
        "objects": page.objects,
        "prefixes": page.prefixes,
        "truncated": page.truncated,
        "next_start_after": page.next_start_after,
    }


def stat_object(client: Minio, bucket: str, key: str) -> ObjectStat:
    """Size, type, timestamps and user metadata of one object, without its content."""
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    stat = _stat(client, bucket, key)
    # minio's metadata holds every response header; the user's own are the x-amz-meta-* ones.
    metadata = {
        name.lower()[len(_USER_META_PREFIX) :]: value
        for name, value in (stat.metadata or {}).items()
        if name.lower().startswith(_USER_META_PREFIX)
    }
    return {
        "bucket": bucket,
        "key": key,
        "size": stat.size,
        "etag": stat.etag,
        "content_type": stat.content_type,
        "last_modified": _iso(stat.last_modified),
        "metadata": metadata,
        "version_id": stat.version_id,
    }


def get_object(
    client: Minio,
    bucket: str,
    key: str,
    *,
    offset: int = 0,
    length: int | None = None,
    max_bytes: int,
) -> ObjectContent:
    """Read at most ``max_bytes`` of an object from ``offset``, as text or base64.

    ``truncated`` is true when fewer bytes than asked for (``length``, or up to the end) came
    back; ``next_offset`` is where the rest of the object starts, None at the end.
    """
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    offset, length = names.validate_range(offset, length)
    stat = _stat(client, bucket, key)
    size = stat.size or 0
    if offset > size:
        raise InvalidInput(f"offset {offset} is past the end of object {key!r} ({size} bytes)")
    wanted = size - offset if length is None else min(length, size - offset)
    count = min(wanted, max_bytes)
    data = _read_range(client, bucket, key, offset, count, stat.etag) if count else b""
    cut = offset + len(data) < size
    content, encoding, used = names.encode_content(data, cut=cut)
    end = offset + used
    truncated = used < wanted
    next_offset = end if end < size else None
    hint = None
    if truncated:
        hint = (
            f"returned bytes {offset}..{end - 1} of {size}; call get_object again with "
            f"offset={end} for the next part, or use presigned_url to download the whole object"
        )
    return {
        "content": content,
        "encoding": encoding,
        "size": size,
        "offset": offset,
        "length": used,
        "truncated": truncated,
        "next_offset": next_offset,
        "hint": hint,
    }


def _read_range(client: Minio, bucket: str, key: str, offset: int, count: int, etag: str | None) -> bytes:
    # If-Match pins the read to the version we sized with stat; a concurrent overwrite
    # becomes a clear PreconditionFailed instead of a mix of two objects across calls.
    headers: dict[str, str | list[str] | tuple[str]] | None = {"If-Match": f'"{etag}"'} if etag else None
    with storage_errors(bucket=bucket, key=key):
        response = client.get_object(bucket, key, offset=offset, length=count, request_headers=headers)
        try:
            chunks: list[bytes] = []
            remaining = count
            # Never read past ``count``, even from a server that ignored the Range header.
            while remaining > 0:
                chunk = response.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        finally:
            response.close()
            response.release_conn()
    return b"".join(chunks)


def _default_content_type(key: str, encoding: str) -> str:
    guessed, _ = mimetypes.guess_type(key, strict=False)
    if guessed is None:
        return "text/plain; charset=utf-8" if encoding == "text" else "application/octet-stream"
    if encoding == "text" and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed


def put_object(
    client: Minio,
    bucket: str,
    key: str,
    content: str,
    *,
    encoding: str = "text",
    content_type: str | None = None,
    max_bytes: int,
) -> ObjectWritten:
    """Write ``content`` (text, or base64 for binary) to ``key``, replacing any existing object.

    At most ``max_bytes`` (decoded). The size is checked before the content is decoded or copied,
    so an oversized argument costs no memory beyond its own.
    """
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    encoding = names.validate_encoding(encoding)
    content = names.require_content(content)
    floor = names.content_size_floor(content, encoding)
    if floor > max_bytes:
        exact = encoding == "text" and content.isascii()
        raise _too_big(f"{floor}" if exact else f"at least {floor}", max_bytes)
    data = names.decode_content(content, encoding)
    if len(data) > max_bytes:
        raise _too_big(str(len(data)), max_bytes)
    content_type = names.validate_content_type(content_type) or _default_content_type(key, encoding)
    _require_bucket(client, bucket)
    with storage_errors(bucket=bucket, key=key):
        result = client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
    logger.info("put object bucket=%s size=%d", bucket, len(data))
    return {
        "bucket": bucket,
        "key": key,
        "etag": result.etag,
        "version_id": result.version_id,
        "size": len(data),
    }


def _too_big(size: str, max_bytes: int) -> InvalidInput:
    return InvalidInput(
        f"content is {size} bytes, more than put_object takes in one call ({max_bytes} bytes, "
        "MCP_PUT_MAX_BYTES); for a larger upload call presigned_url with method='PUT' and send "
        "the file to that URL (for example: curl -T FILE URL)"
    )


def delete_object(client: Minio, bucket: str, key: str) -> ObjectDeleted:
    """Delete one object; a missing key is reported (S3 itself would succeed silently)."""
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    # The stat turns a typo into NoSuchKey instead of a "deleted" that deleted nothing.
    _stat(client, bucket, key)
    with storage_errors(bucket=bucket, key=key):
        client.remove_object(bucket, key)
    logger.info("deleted object in bucket %s", bucket)
    return {"bucket": bucket, "key": key, "deleted": True}


def copy_object(client: Minio, source_bucket: str, source_key: str, bucket: str, key: str) -> ObjectCopied:
    """Server-side copy of ``source_bucket/source_key`` to ``bucket/key``."""
    names.validate_bucket_name(source_bucket)
    names.validate_object_key(source_key, "source_key")
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    _stat(client, source_bucket, source_key)
    _require_bucket(client, bucket)
    with storage_errors(bucket=bucket, key=key):
        # minio switches to a multipart server-side copy for sources over 5 GiB.
        result = client.copy_object(bucket, key, CopySource(source_bucket, source_key))
    logger.info("copied object from bucket %s to bucket %s", source_bucket, bucket)
    return {"bucket": bucket, "key": key, "etag": result.etag, "version_id": result.version_id}


def presigned_url(
    client: Minio,
    bucket: str,
    key: str,
    *,
    method: str = "GET",
    expires_seconds: int = 3600,
) -> PresignedUrl:
    """A URL that lets anyone holding it GET or PUT one object until ``expires_at``.

    The URL is a bearer credential: it is returned to the caller and never logged.
    """
    names.validate_bucket_name(bucket)
    names.validate_object_key(key)
    method = names.validate_method(method)
    expires_seconds = names.validate_expiry(expires_seconds)
    # Checked now so a typo fails here, not later in someone's browser.
    if method == "GET":
        _stat(client, bucket, key)
    else:
        _require_bucket(client, bucket)
    now = datetime.now(UTC).replace(microsecond=0)
    expires = timedelta(seconds=expires_seconds)
    with storage_errors(bucket=bucket, key=key):
        url = client.get_presigned_url(method, bucket, key, expires=expires, request_date=now)
    logger.info("presigned a %s URL in bucket %s for %ds", method, bucket, expires_seconds)
    return {"url": url, "method": method, "expires_at": _iso(now + expires)}


def check_credentials(client: Minio) -> None:
    """Prove the endpoint answers and accepts the credentials (one ListBuckets call).

    Raises ``TenantUnreachable`` saying whether the endpoint could not be reached or refused
    the credentials (a ``TenantSettingError`` when a setting of the tenant is the cause).
    """
    try:
        client.list_buckets()
    except S3Error as exc:
        if exc.code == "AccessDenied":
            raise TenantSettingError(
                "the object store refused ListBuckets (AccessDenied): the keys are wrong or lack the "
                "s3:ListAllMyBuckets permission",
                ("access_key", "secret_key"),
            ) from exc
        error = storage_error(exc)
        if isinstance(error, TenantUnreachable):
            raise error from exc
        raise TenantUnreachable(f"the object store refused the credentials check: {error}") from exc
    except (MinioException, HTTPError, ValueError, ET.ParseError) as exc:
        error = storage_error(exc)
        if isinstance(error, TenantUnreachable):
            raise error from exc
        raise TenantUnreachable(f"the object store cannot be used: {error}") from exc
