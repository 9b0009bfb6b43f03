"""Client construction and the mapping of minio/urllib3 failures: no network involved."""

import pytest
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)

from mcp_tenants.errors import InvalidInput, StorageError, TenantUnreachable
from mcp_tenants.minio.client import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    make_client,
    make_http_client,
    storage_error,
)

SIGNED = "X-Amz-Signature=deadbeef"


def s3_error(code, bucket="photos", key=None, message="server says no"):
    return S3Error(None, code, message, f"/photos?{SIGNED}", "REQ123", "HOST456", bucket, key)


@pytest.mark.parametrize(
    ("code", "key", "kind", "text"),
    [
        ("NoSuchBucket", None, StorageError, "bucket 'photos' does not exist; call list_buckets"),
        ("NoSuchKey", "a.jpg", StorageError, "object 'a.jpg' in bucket 'photos' does not exist"),
        ("AccessDenied", "a.jpg", StorageError, "access denied to object 'a.jpg' in bucket 'photos'"),
        ("BucketAlreadyOwnedByYou", None, StorageError, "already exists and belongs to this tenant"),
        ("BucketAlreadyExists", None, StorageError, "already taken by another account"),
        ("BucketNotEmpty", None, StorageError, "bucket 'photos' is not empty"),
        ("InvalidRange", "a.jpg", StorageError, "check offset and length"),
        ("PreconditionFailed", "a.jpg", StorageError, "changed while it was being read"),
        ("InvalidAccessKeyId", None, TenantUnreachable, "access key is unknown"),
        ("SignatureDoesNotMatch", None, TenantUnreachable, "secret key does not match"),
        ("InvalidBucketName", None, InvalidInput, "refused the name of bucket 'photos'"),
        ("SlowDown", "a.jpg", StorageError, "(SlowDown: server says no)"),
    ],
)
def test_s3_error_codes_map_to_actionable_errors(code, key, kind, text):
    error = storage_error(s3_error(code, key=key))
    assert type(error) is kind
    assert text in str(error)
    for leak in ("REQ123", "HOST456", SIGNED):
        assert leak not in str(error)


def test_names_from_the_call_are_used_when_the_error_has_none():
    error = storage_error(s3_error("NoSuchKey", bucket=None), bucket="docs", key="x.txt")
    assert "object 'x.txt' in bucket 'docs'" in str(error)


def test_long_keys_are_shortened_in_messages():
    error = storage_error(s3_error("NoSuchKey", key="k" * 1000))
    assert len(str(error)) < 300


def _pool():
    return HTTPConnectionPool("10.1.2.3", 9000)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        (NewConnectionError(HTTPConnection("h"), "Failed: [Errno 111] Connection refused"), "Connection refused"),
        (NameResolutionError("nowhere.invalid", HTTPConnection("h"), OSError("x")), "does not resolve"),
        (ConnectTimeoutError("timed out"), f"no connection within {CONNECT_TIMEOUT_SECONDS:g} s"),
        (ReadTimeoutError(None, "/", "read timed out"), f"no answer within {READ_TIMEOUT_SECONDS:g} s"),
    ],
)
def test_connection_failures_are_unreachable_and_name_the_endpoint(reason, text):
    error = storage_error(MaxRetryError(_pool(), f"/photos?{SIGNED}", reason))
    assert isinstance(error, TenantUnreachable)
    assert "cannot reach the object store at 10.1.2.3:9000" in str(error)
    assert text in str(error)
    assert SIGNED not in str(error)


def test_repeated_server_errors_are_a_storage_error():
    error = storage_error(MaxRetryError(_pool(), "/", ResponseError("too many 503 error responses")))
    assert isinstance(error, StorageError) and "retry later" in str(error)


def test_non_s3_answers_and_server_errors():
    error = storage_error(InvalidResponseError(404, "text/html", "<html>" + "x" * 10_000))
    assert isinstance(error, TenantUnreachable) and "not an S3 response" in str(error)
    assert len(str(error)) < 300
    error = storage_error(ServerError("server failed with HTTP status code 502", 502), bucket="b1")
    assert isinstance(error, StorageError) and "HTTP 502 on bucket 'b1'" in str(error)


def test_make_client_bounds_timeouts_and_retries():
    http = make_http_client()
    timeout = http.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
    retries = http.connection_pool_kw["retries"]
    assert retries.total <= 3 and retries.connect <= 1
    assert http.connection_pool_kw["maxsize"] >= 16


def test_make_client_rejects_an_endpoint_with_a_path():
    with pytest.raises(InvalidInput, match="endpoint 'host:9000/path' is invalid"):
        make_client("host:9000/path", "key", "secret")
