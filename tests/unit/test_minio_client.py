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
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from mcp_tenants.errors import InvalidInput, StorageError, TenantUnreachable
from mcp_tenants.minio.client import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    TenantSettingError,
    make_client,
    make_http_client,
    storage_error,
)

SIGNED = "X-Amz-Signature=deadbeef"


def s3_error(code, bucket="photos", key=None, message="server says no"):
    if code == "AuthorizationHeaderMalformed":
        message = "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'"
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
        (
            "InvalidAccessKeyId",
            None,
            TenantSettingError,
            "(InvalidAccessKeyId); check the tenant's access_key",
        ),
        ("SignatureDoesNotMatch", None, TenantSettingError, "secret key does not match the access key"),
        ("AuthorizationHeaderMalformed", None, TenantSettingError, "region 'us-east-1' is wrong"),
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
    ("reason", "text", "setting"),
    [
        (
            NewConnectionError(HTTPConnection("h"), "Failed: [Errno 111] Connection refused"),
            "Connection refused (nothing listens there: the object store is down, or the endpoint is wrong)",
            "endpoint",
        ),
        (NameResolutionError("nowhere.invalid", HTTPConnection("h"), OSError("x")), "does not resolve", "endpoint"),
        (ConnectTimeoutError("timed out"), f"no connection within {CONNECT_TIMEOUT_SECONDS:g} s", "endpoint"),
        (SSLError("[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS handshake failed", "secure"),
        (ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")), "connection was broken", "secure"),
    ],
)
def test_connection_failures_name_the_endpoint_and_the_setting_to_check(reason, text, setting):
    error = storage_error(MaxRetryError(_pool(), f"/photos?{SIGNED}", reason))
    assert isinstance(error, TenantSettingError) and setting in error.settings
    assert "cannot reach the object store at 10.1.2.3:9000" in str(error)
    assert text in str(error)
    assert f"check the tenant's {' and '.join(error.settings)}" in str(error)
    assert SIGNED not in str(error)


def test_slow_answers_and_untrusted_certificates_are_not_blamed_on_a_setting():
    slow = storage_error(MaxRetryError(_pool(), "/", ReadTimeoutError(None, "/", "read timed out")))
    assert type(slow) is TenantUnreachable and f"no answer within {READ_TIMEOUT_SECONDS:g} s" in str(slow)
    cert = storage_error(MaxRetryError(_pool(), "/", SSLError("certificate verify failed: self-signed certificate")))
    assert type(cert) is TenantUnreachable and "SSL_CERT_FILE" in str(cert)


def test_a_setting_error_takes_the_fix_its_caller_knows():
    error = storage_error(s3_error("SignatureDoesNotMatch"))
    fixed = error.with_fix("check MINIO_TENANT_X_SECRET_KEY", prefix="tenant 'x': ")
    assert str(fixed) == (
        "tenant 'x': the object store refused the tenant's credentials: the secret key does not match "
        "the access key (SignatureDoesNotMatch); check MINIO_TENANT_X_SECRET_KEY"
    )
    assert fixed.settings == ("secret_key",)


def test_repeated_server_errors_are_a_storage_error():
    error = storage_error(MaxRetryError(_pool(), "/", ResponseError("too many 503 error responses")))
    assert isinstance(error, StorageError) and "HTTP 503 twice" in str(error) and "retry later" in str(error)


def test_non_s3_answers_and_server_errors():
    error = storage_error(InvalidResponseError(404, "text/html", "<html>" + "x" * 10_000))
    assert isinstance(error, TenantSettingError) and "not an S3 response" in str(error)
    assert error.settings == ("endpoint",) and len(str(error)) < 300
    http_to_https = storage_error(
        InvalidResponseError(400, "text/plain", "Client sent an HTTP request to an HTTPS server.\n")
    )
    assert http_to_https.settings == ("secure",) and "speaks https" in str(http_to_https)
    error = storage_error(ServerError("server failed with HTTP status code 502", 502), bucket="b1")
    assert isinstance(error, StorageError) and "HTTP 502 on bucket 'b1'" in str(error)


def test_make_client_bounds_timeouts_and_retries():
    http = make_http_client(connect_timeout=2)
    timeout = http.connection_pool_kw["timeout"]
    assert (timeout.connect_timeout, timeout.read_timeout) == (2, READ_TIMEOUT_SECONDS)
    retries = http.connection_pool_kw["retries"]
    # A failed connect is reported at once; a Retry-After of hours is never waited for.
    assert retries.total <= 3 and retries.connect == 0 and not retries.respect_retry_after_header
    assert http.connection_pool_kw["maxsize"] >= 16


def test_make_http_client_takes_other_connection_classes():
    class CheckedHTTPConnection(HTTPConnection):
        pass

    http = make_http_client(connection_classes={"http": CheckedHTTPConnection})
    pool = http.connection_from_url("http://10.1.2.3:9000/")
    assert pool.ConnectionCls is CheckedHTTPConnection
    client = make_client("10.1.2.3:9000", "key", "secret", http_client=http)
    assert client._http is http


def test_make_client_rejects_an_endpoint_with_a_path():
    with pytest.raises(InvalidInput, match="endpoint 'host:9000/path' is invalid"):
        make_client("host:9000/path", "key", "secret")
