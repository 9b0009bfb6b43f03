"""Building a ``minio.Minio`` client and turning its failures into our errors.

The client gets its own urllib3 pool with short timeouts and few retries: minio's default (5 min
timeouts, 5 retries) would keep a tool call hanging for minutes on an unreachable endpoint. A
failed connect is not retried (refused, unresolvable and silent hosts are reported at once), a
server's ``Retry-After`` is not obeyed (it could stall a call for hours), and pooled connections
that died while the store was down are replaced on checkout, so the first call after the store
returns is as fast as any other.
Concurrency: a ``Minio`` client and its ``PoolManager`` are thread-safe; one client per tenant is
shared by every worker thread, which is why the pool holds up to 16 connections.

This module is the one place where failures become messages: the cause as the store or the
network gave it, and, for failures that a tenant setting causes (keys, endpoint, secure, region),
a ``TenantSettingError`` naming those settings, so the server can say which variable or argument
to fix. Messages name the bucket and key involved and never carry credentials, signed URLs,
request ids or raw server bodies.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from xml.etree import ElementTree as ET

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
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

# Codes that mean every request with these credentials will fail: (what it means, setting to fix).
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": ("it does not know the access key", ("access_key",)),
    "SignatureDoesNotMatch": ("the secret key does not match the access key", ("secret_key",)),
    "ExpiredToken": ("the session token has expired", ("access_key", "secret_key")),
    "InvalidToken": ("the session token is invalid", ("access_key", "secret_key")),
}
_SHOWN_MAX = 100


class TenantSettingError(TenantUnreachable):
    """The object store cannot be used with one of the tenant's settings, named in ``settings``."""

    def __init__(self, cause: str, settings: tuple[str, ...], *, fix: str | None = None) -> None:
        self.cause = cause
        self.settings = settings
        default = f"check the tenant's {' and '.join(settings)}"
        super().__init__(f"{cause}; {fix or default}")

    def with_fix(self, fix: str, *, prefix: str = "") -> TenantSettingError:
        """The same failure with ``fix`` saying what to change (an argument, a variable)."""
        return TenantSettingError(prefix + self.cause, self.settings, fix=fix)


def make_http_client(
    *,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    connection_classes: Mapping[str, type[HTTPConnection]] | None = None,
) -> urllib3.PoolManager:
    """A urllib3 pool with bounded timeouts and retries, safe to share between threads.

    ``connection_classes`` ({"http": cls, "https": cls}) replaces urllib3's connection classes,
    for instance with ones that check the address they connect to.
    """
    retries = urllib3.Retry(
        total=2,
        connect=0,  # refused, unresolvable or silent: say so now, the user acts on it
        read=1,  # one retry covers a keep-alive connection the server closed under us
        status=1,
        backoff_factor=0.2,
        backoff_max=1.0,
        status_forcelist=(500, 502, 503, 504),
        respect_retry_after_header=False,
    )
    manager = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=READ_TIMEOUT_SECONDS),
        retries=retries,
        maxsize=POOL_MAXSIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )
    if connection_classes:
        bases: dict[str, type[HTTPConnectionPool]] = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}
        manager.pool_classes_by_scheme = {
            scheme: type(f"{cls.__name__}Pool", (bases[scheme],), {"ConnectionCls": cls})
            for scheme, cls in connection_classes.items()
        }
    return manager


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    region: str | None = None,
    http_client: urllib3.PoolManager | None = None,
) -> Minio:
    """Build a client for ``endpoint`` ("host:port"); no network call is made here.

    ``http_client`` defaults to ``make_http_client()``; pass one to change timeouts or connections.
    """
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
        meaning, settings = _CREDENTIAL_CODES[code]
        return TenantSettingError(f"the object store refused the tenant's credentials: {meaning} ({code})", settings)
    region = _region_problem(exc)
    if region is not None:
        return TenantSettingError(f"the object store refused the tenant's region: {region} ({code})", ("region",))
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


def _region_problem(exc: S3Error) -> str | None:
    """What the store said about a wrong region, or None when the error is about something else."""
    message = (exc.message or "").strip()
    if exc.code in ("AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "InvalidRegion") or (
        # minio's own words for a bodyless redirect or 400 that carried x-amz-bucket-region
        exc.code in ("PermanentRedirect", "Redirect", "BadRequest") and "use region" in message
    ):
        return message[:_SHOWN_MAX] or "wrong region"
    return None


def _connection_error(exc: HTTPError) -> TenantsError:
    reason: BaseException = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    pool = getattr(exc, "pool", None)
    target = f" at {pool.host}:{pool.port}" if pool is not None else ""
    if isinstance(reason, ResponseError):
        # "too many 503 error responses"
        status = next((word for word in str(reason).split() if word.isdigit()), "5xx")
        return StorageError(f"the object store{target} answered HTTP {status} twice (server error); retry later")
    cause = f"cannot reach the object store{target}"
    # Order matters: in urllib3 2 NameResolutionError < NewConnectionError < ConnectTimeoutError.
    if isinstance(reason, NameResolutionError):
        host = pool.host if pool is not None else "the endpoint's host"
        return TenantSettingError(f"{cause}: the host name {_shown(host)} does not resolve (DNS)", ("endpoint",))
    if isinstance(reason, NewConnectionError):
        # "... Failed to establish a new connection: [Errno 111] Connection refused"
        why = str(reason).rpartition(": ")[2][:_SHOWN_MAX] or "connection failed"
        if "refused" in why.lower():
            why += " (nothing listens there: the object store is down, or the endpoint is wrong)"
        return TenantSettingError(f"{cause}: {why}", ("endpoint",))
    if isinstance(reason, ConnectTimeoutError):
        timeout = getattr(getattr(pool, "timeout", None), "connect_timeout", None)
        if not isinstance(timeout, int | float):  # urllib3's "default" sentinel
            timeout = CONNECT_TIMEOUT_SECONDS
        return TenantSettingError(
            f"{cause}: no connection within {timeout:g} s (a firewall, a wrong address, or the host is down)",
            ("endpoint",),
        )
    if isinstance(reason, SSLError):
        if "certificate verify failed" in str(reason).lower():
            return TenantUnreachable(
                f"{cause}: its TLS certificate is not trusted; set SSL_CERT_FILE to a CA bundle that holds "
                "the store's CA, or fix the certificate"
            )
        return TenantSettingError(
            f"{cause}: the TLS handshake failed (the tenant connects with https; does the endpoint serve plain http?)",
            ("secure",),
        )
    if isinstance(reason, ReadTimeoutError):
        return TenantUnreachable(f"{cause}: no answer within {READ_TIMEOUT_SECONDS:g} s; the store is hung or busy")
    if isinstance(reason, ProtocolError):
        # After one retry: the store keeps closing connections, which a TLS port does to plain http.
        return TenantSettingError(f"{cause}: the connection was broken twice", ("endpoint", "secure"))
    return TenantSettingError(f"{cause}: {type(reason).__name__}", ("endpoint",))


def _not_s3(exc: InvalidResponseError) -> TenantsError:
    status = getattr(exc, "_code", "?")
    content_type = getattr(exc, "_content_type", None) or "no content type"
    body = str(getattr(exc, "_body", None) or "")[:4096].lower()
    if status == 400 and "https" in body:
        # Go: "Client sent an HTTP request to an HTTPS server."; nginx: "plain HTTP request was sent to HTTPS port"
        return TenantSettingError("the endpoint speaks https, but the tenant connects with http", ("secure",))
    # The body is left out: it may be a whole HTML page.
    return TenantSettingError(
        f"the endpoint answered HTTP {status} ({content_type}) with something that is not an S3 response "
        "(is it the S3 API address? MinIO serves it on port 9000, its console on 9001)",
        ("endpoint",),
    )


def storage_error(exc: BaseException, *, bucket: str | None = None, key: str | None = None) -> TenantsError:
    """Map a minio/urllib3 failure to the ``TenantsError`` a user can act on."""
    if isinstance(exc, TenantsError):
        return exc
    if isinstance(exc, S3Error):
        return _s3_error(exc, bucket, key)
    if isinstance(exc, InvalidResponseError):
        return _not_s3(exc)
    if isinstance(exc, ET.ParseError) or (
        # minio's XML readers raise a bare ValueError("XML element <X> not found").
        isinstance(exc, ValueError) and str(exc).startswith("XML element")
    ):
        return TenantSettingError(
            "the endpoint answered with something that is not an S3 response (is it the S3 API address?)",
            ("endpoint",),
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


@contextlib.contextmanager
def head_errors(client: Minio, *, bucket: str | None = None, key: str | None = None) -> Iterator[None]:
    """``storage_errors`` for HEAD requests (stat_object, bucket_exists).

    A HEAD answer has no body, so minio reads any 403 as AccessDenied: a wrong secret key looks like
    a missing permission. On such a 403 one signed ListBuckets, whose answer has a body, tells bad
    credentials apart; the original error stands when it finds nothing wrong with them.
    """
    try:
        with storage_errors(bucket=bucket, key=key):
            yield
    except StorageError as error:
        cause = error.__cause__
        if not (isinstance(cause, S3Error) and cause.code == "AccessDenied" and not _has_body(cause)):
            raise
        try:
            client.list_buckets()
        except (MinioException, HTTPError, ValueError, ET.ParseError) as probe:
            found = storage_error(probe)
            if isinstance(found, TenantSettingError):
                raise found from probe
        raise


def _has_body(exc: S3Error) -> bool:
    return bool(getattr(exc.response, "data", None))
