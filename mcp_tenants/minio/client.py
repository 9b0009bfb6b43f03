"""Building a ``minio.Minio`` client and turning its failures into our errors.

The client gets its own urllib3 pool with short timeouts and few retries: minio's default (5 min
timeouts, 5 retries) would keep a tool call hanging for minutes on an unreachable endpoint.
Concurrency: a ``Minio`` client and its ``PoolManager`` are thread-safe; one client per tenant is
shared by every worker thread, which is why the pool holds up to 16 connections.

Error messages name the bucket and key involved and never carry credentials, signed URLs,
request ids or raw server bodies.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from mcp_tenants.errors import InvalidInput, StorageError, TenantsError, TenantUnreachable

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
POOL_MAXSIZE = 16

# Codes that mean every request with these credentials will fail: the tenant is unusable.
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the access key is unknown to the object store",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is invalid",
}
_SHOWN_MAX = 100


def make_http_client() -> urllib3.PoolManager:
    """A urllib3 pool with bounded timeouts and retries, safe to share between threads."""
    retries = urllib3.Retry(
        total=2,
        connect=1,  # a refused connection fails at once; a silent host costs 2 x connect timeout
        read=1,  # one retry covers a keep-alive connection the server closed under us
        status=1,
        backoff_factor=0.2,
        status_forcelist=(500, 502, 503, 504),
    )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        retries=retries,
        maxsize=POOL_MAXSIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str | None = None,
    http_client: urllib3.PoolManager | None = None,
) -> Minio:
    """Build a client for ``endpoint`` ("host:port"); no network call is made here."""
    try:
        return Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region or None,
            http_client=http_client or make_http_client(),
        )
    except ValueError as exc:
        # minio's messages describe the endpoint or region, never the keys.
        raise InvalidInput(f"endpoint {_shown(endpoint)} is invalid: {exc}") from None


def _shown(value: str | None) -> str:
    text = value or ""
    if len(text) > _SHOWN_MAX:
        text = text[:_SHOWN_MAX] + "..."
    return repr(text)


def missing_bucket_error(bucket: str) -> StorageError:
    """The error for a bucket that does not exist."""
    return StorageError(f"bucket {_shown(bucket)} does not exist; call list_buckets to see this tenant's buckets")


def _where(bucket: str | None, key: str | None) -> str:
    if bucket and key:
        return f"object {_shown(key)} in bucket {_shown(bucket)}"
    if bucket:
        return f"bucket {_shown(bucket)}"
    return "the object store"


def _s3_error(exc: S3Error, bucket: str | None, key: str | None) -> TenantsError:
    code = exc.code or "Unknown"
    # The error's own names win: in a copy they tell source from destination.
    bucket = exc.bucket_name or bucket
    key = exc.object_name or key
    where = _where(bucket, key)
    if code in _CREDENTIAL_CODES:
        return TenantUnreachable(
            f"the object store rejected the tenant's credentials ({code}: "
            f"{_CREDENTIAL_CODES[code]}); register the tenant again with valid keys"
        )
    if code == "NoSuchBucket":
        return missing_bucket_error(bucket or "")
    if code == "NoSuchKey":
        return StorageError(f"{where} does not exist; call list_objects to see the keys in the bucket")
    if code == "AccessDenied":
        return StorageError(
            f"access denied to {where} (AccessDenied): the tenant's credentials lack permission for this operation"
        )
    if code == "BucketAlreadyOwnedByYou":
        return StorageError(f"bucket {_shown(bucket)} already exists and belongs to this tenant")
    if code == "BucketAlreadyExists":
        return StorageError(f"bucket name {_shown(bucket)} is already taken by another account; choose another name")
    if code == "BucketNotEmpty":
        return StorageError(f"bucket {_shown(bucket)} is not empty; delete its objects (and object versions) first")
    if code == "InvalidRange":
        return StorageError(f"the requested byte range is outside {where}; check offset and length")
    if code == "PreconditionFailed":
        return StorageError(f"{where} changed while it was being read; call again")
    if code in ("InvalidBucketName", "KeyTooLongError", "InvalidObjectName"):
        return InvalidInput(f"the object store refused the name of {where} ({code})")
    if code == "RequestTimeTooSkewed":
        return TenantUnreachable(
            "the object store refused the request because this machine's clock differs from the "
            "server's by more than 15 minutes (RequestTimeTooSkewed)"
        )
    message = (exc.message or "").strip()[:_SHOWN_MAX]
    return StorageError(f"the object store refused the request on {where} ({code}: {message})")


def _connection_error(exc: HTTPError) -> TenantsError:
    reason: BaseException = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    pool = getattr(exc, "pool", None)
    target = f" at {pool.host}:{pool.port}" if pool is not None else ""
    if isinstance(reason, ResponseError):
        return StorageError(f"the object store{target} kept failing with server errors (HTTP 5xx); retry later")
    # Order matters: in urllib3 2 NameResolutionError < NewConnectionError < ConnectTimeoutError.
    if isinstance(reason, NameResolutionError):
        why = "its host name does not resolve"
    elif isinstance(reason, NewConnectionError):
        # "... Failed to establish a new connection: [Errno 111] Connection refused"
        why = str(reason).rpartition(": ")[2][:_SHOWN_MAX] or "connection failed"
    elif isinstance(reason, ConnectTimeoutError):
        why = f"no connection within {CONNECT_TIMEOUT_SECONDS:g} s"
    elif isinstance(reason, SSLError):
        why = "the TLS handshake failed; check the tenant's 'secure' setting and the certificate"
    elif isinstance(reason, ReadTimeoutError):
        why = f"no answer within {READ_TIMEOUT_SECONDS:g} s"
    elif isinstance(reason, ProtocolError):
        why = "the connection was broken"
    else:
        why = type(reason).__name__
    return TenantUnreachable(
        f"cannot reach the object store{target}: {why}; check the endpoint and that the server is running"
    )


def storage_error(exc: BaseException, *, bucket: str | None = None, key: str | None = None) -> TenantsError:
    """Map a minio/urllib3 failure to the ``TenantsError`` a user can act on."""
    if isinstance(exc, TenantsError):
        return exc
    if isinstance(exc, S3Error):
        return _s3_error(exc, bucket, key)
    if isinstance(exc, InvalidResponseError):
        status = getattr(exc, "_code", "?")
        content_type = getattr(exc, "_content_type", None) or "no content type"
        # The body is left out: it may be a whole HTML page.
        return TenantUnreachable(
            f"the endpoint answered HTTP {status} ({content_type}) with something that is not an "
            "S3 response; check that the endpoint is the S3 API address"
        )
    if isinstance(exc, ET.ParseError) or (
        # minio's XML readers raise a bare ValueError("XML element <X> not found").
        isinstance(exc, ValueError) and str(exc).startswith("XML element")
    ):
        return TenantUnreachable(
            "the endpoint answered with something that is not an S3 response; check that the "
            "endpoint is the S3 API address"
        )
    if isinstance(exc, ServerError):
        return StorageError(
            f"the object store failed with HTTP {exc.status_code} on {_where(bucket, key)}; retry later"
        )
    if isinstance(exc, HTTPError):
        return _connection_error(exc)
    if isinstance(exc, ValueError):
        # minio checks arguments locally (names, regions) and says which one is wrong.
        return InvalidInput(str(exc)[: 2 * _SHOWN_MAX])
    return StorageError(f"the object store request on {_where(bucket, key)} failed unexpectedly")


@contextlib.contextmanager
def storage_errors(*, bucket: str | None = None, key: str | None = None) -> Iterator[None]:
    """Run a block of minio calls, re-raising their failures as ``TenantsError``."""
    try:
        yield
    except TenantsError:
        raise
    except (MinioException, HTTPError, ValueError, ET.ParseError) as exc:
        error = storage_error(exc, bucket=bucket, key=key)
        logger.debug("object store call failed: %s (%s)", type(exc).__name__, error)
        raise error from exc
