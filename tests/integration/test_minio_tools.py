"""The object-store tool functions against a real S3 server (SeaweedFS, via ``s3_service``)."""

import base64
import http.server
import io
import os
import socket
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from minio.deleteobjects import DeleteObject

from mcp_tenants.errors import InvalidInput, StorageError
from mcp_tenants.minio import tools
from mcp_tenants.minio.client import TenantSettingError, make_client

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def admin(s3_service):
    return make_client(
        s3_service.endpoint,
        s3_service.access_key,
        s3_service.secret_key,
        secure=False,
        region=s3_service.region,
    )


@pytest.fixture(scope="module")
def reader(s3_service):
    return make_client(
        s3_service.endpoint,
        s3_service.ro_access_key,
        s3_service.ro_secret_key,
        secure=False,
        region=s3_service.region,
    )


def unique_bucket() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _empty_and_remove(client, bucket):
    if not client.bucket_exists(bucket):
        return
    listing = client.list_objects(bucket, recursive=True)
    errors = list(client.remove_objects(bucket, (DeleteObject(o.object_name) for o in listing)))
    assert not errors
    client.remove_bucket(bucket)


@pytest.fixture
def bucket(admin):
    name = unique_bucket()
    admin.make_bucket(name)
    yield name
    _empty_and_remove(admin, name)


def put_raw(client, bucket, key, data: bytes, **kwargs):
    client.put_object(bucket, key, io.BytesIO(data), len(data), **kwargs)


def read_raw(client, bucket, key) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- buckets -------------------------------------------------------------------------------------


def test_list_buckets_shows_a_created_bucket_with_iso_utc_time(admin, bucket):
    listed = {b["name"]: b["created"] for b in tools.list_buckets(admin)["buckets"]}
    assert bucket in listed
    created = datetime.fromisoformat(listed[bucket].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)


def test_create_bucket_creates_it_and_a_second_create_says_it_exists(admin):
    name = unique_bucket()
    try:
        assert tools.create_bucket(admin, name) == {"bucket": name, "created": True}
        assert admin.bucket_exists(name)
        with pytest.raises(StorageError, match=f"bucket '{name}' already exists"):
            tools.create_bucket(admin, name)
    finally:
        _empty_and_remove(admin, name)


def test_create_bucket_with_an_invalid_name_fails_before_the_network(admin):
    with pytest.raises(InvalidInput, match="bucket 'Bad_Name' is invalid"):
        tools.create_bucket(admin, "Bad_Name")


def test_delete_bucket_removes_an_empty_bucket(admin):
    name = unique_bucket()
    admin.make_bucket(name)
    assert tools.delete_bucket(admin, name) == {"bucket": name, "deleted": True}
    assert not admin.bucket_exists(name)


def test_delete_bucket_refuses_a_non_empty_bucket_and_keeps_its_objects(admin, bucket):
    put_raw(admin, bucket, "keep/me.txt", b"precious")
    with pytest.raises(StorageError, match="is not empty") as err:
        tools.delete_bucket(admin, bucket)
    assert "keep/me.txt" in str(err.value)
    assert read_raw(admin, bucket, "keep/me.txt") == b"precious"


def test_delete_missing_bucket_says_it_does_not_exist(admin):
    name = unique_bucket()
    with pytest.raises(StorageError, match=f"bucket '{name}' does not exist"):
        tools.delete_bucket(admin, name)


# --- listing -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_bucket(admin):
    """A bucket with 1,102 small objects.

    Under ``k/`` even numbers are objects (k/0000) and odd ones sit one level down (k/0001/c),
    so a non-recursive listing of ``k/`` interleaves 550 objects and 550 prefixes. Plus two
    objects at the top level.
    """
    name = unique_bucket()
    admin.make_bucket(name)
    keys = [f"k/{i:04d}" if i % 2 == 0 else f"k/{i:04d}/c" for i in range(1100)]
    keys += ["top-a", "top-b"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: put_raw(admin, name, key, key.encode()), keys))
    yield name, sorted(keys)
    errors = list(admin.remove_objects(name, (DeleteObject(key) for key in keys)))
    assert not errors
    admin.remove_bucket(name)


def test_list_objects_pages_over_1100_keys_without_gaps_or_duplicates(admin, big_bucket):
    name, keys = big_bucket
    seen, pages, start_after = [], 0, None
    while True:
        page = tools.list_objects(admin, name, max_keys=300, start_after=start_after, max_keys_cap=1000)
        pages += 1
        assert page["prefixes"] == []
        seen.extend(obj["key"] for obj in page["objects"])
        if not page["truncated"]:
            assert page["next_start_after"] is None
            assert len(page["objects"]) <= 300
            break
        assert len(page["objects"]) == 300
        assert page["next_start_after"] == page["objects"][-1]["key"]
        start_after = page["next_start_after"]
    assert pages == 4
    assert seen == keys
    first = tools.list_objects(admin, name, max_keys=1, max_keys_cap=1000)["objects"][0]
    assert first["size"] == len(first["key"])
    assert first["etag"] and first["last_modified"].endswith("Z")


@pytest.mark.parametrize(("max_keys", "max_pages"), [(7, 12), (300, 10), (1000, 10)])
def test_list_objects_non_recursive_pages_interleave_prefixes_in_key_order(admin, big_bucket, max_keys, max_pages):
    # minio yields each server page as objects then prefixes; pages must still come out in key
    # order and chain without gaps, also across the server's 1,000-entry page boundary.
    name, _ = big_bucket
    expected = [f"k/{i:04d}" if i % 2 == 0 else f"k/{i:04d}/" for i in range(1100)]
    seen, start_after = [], None
    while True:
        page = tools.list_objects(
            admin,
            name,
            prefix="k/",
            recursive=False,
            max_keys=max_keys,
            start_after=start_after,
            max_keys_cap=1000,
        )
        entries = sorted([obj["key"] for obj in page["objects"]] + page["prefixes"])
        assert len(entries) == max_keys or not page["truncated"]
        seen.extend(entries)
        if not page["truncated"] or len(seen) >= max_keys * max_pages:
            break
        assert page["next_start_after"] == entries[-1]
        start_after = page["next_start_after"]
    assert seen == expected[: len(seen)]
    assert len(seen) == min(len(expected), max_keys * max_pages)


def test_list_objects_page_is_capped_by_max_keys_cap(admin, big_bucket):
    name, keys = big_bucket
    page = tools.list_objects(admin, name, max_keys=5000, max_keys_cap=1000)
    assert len(page["objects"]) == 1000
    assert page["truncated"] is True
    assert page["next_start_after"] == keys[999]


def test_list_objects_with_prefix_lists_only_matching_keys(admin, big_bucket):
    name, keys = big_bucket
    page = tools.list_objects(admin, name, prefix="k/10", max_keys_cap=1000)
    assert [obj["key"] for obj in page["objects"]] == [k for k in keys if k.startswith("k/10")]
    assert len(page["objects"]) == 100
    assert page["truncated"] is False


def test_list_objects_non_recursive_returns_prefixes_and_pages_through_them(admin, bucket):
    for key in ["a/1", "a/2", "b/1", "c", "d/x/y", "e"]:
        put_raw(admin, bucket, key, b"x")
    whole = tools.list_objects(admin, bucket, recursive=False, max_keys_cap=1000)
    assert [obj["key"] for obj in whole["objects"]] == ["c", "e"]
    assert whole["prefixes"] == ["a/", "b/", "d/"]
    # Pages of two entries, objects and prefixes counted together, chained by next_start_after.
    entries, start_after = [], None
    while True:
        page = tools.list_objects(
            admin, bucket, recursive=False, max_keys=2, start_after=start_after, max_keys_cap=1000
        )
        assert len(page["objects"]) + len(page["prefixes"]) <= 2
        entries.extend(page["prefixes"] + [obj["key"] for obj in page["objects"]])
        if not page["truncated"]:
            break
        start_after = page["next_start_after"]
    assert sorted(entries) == ["a/", "b/", "c", "d/", "e"]
    assert len(entries) == 5
    sub = tools.list_objects(admin, bucket, prefix="d/", recursive=False, max_keys_cap=1000)
    assert sub["prefixes"] == ["d/x/"] and sub["objects"] == []


def test_list_objects_in_a_missing_bucket_says_so(admin):
    name = unique_bucket()
    with pytest.raises(StorageError, match=f"bucket '{name}' does not exist"):
        tools.list_objects(admin, name, max_keys_cap=1000)


# --- reading -------------------------------------------------------------------------------------


def test_stat_object_returns_size_type_and_user_metadata(admin, bucket):
    put_raw(admin, bucket, "doc.json", b'{"a": 1}', content_type="application/json", metadata={"owner": "alice"})
    stat = tools.stat_object(admin, bucket, "doc.json")
    assert stat["size"] == 8
    assert stat["content_type"] == "application/json"
    assert stat["metadata"] == {"owner": "alice"}
    assert stat["etag"] and stat["last_modified"].endswith("Z")
    assert (stat["bucket"], stat["key"]) == (bucket, "doc.json")


def test_missing_key_and_missing_bucket_are_named_in_the_error(admin, bucket):
    with pytest.raises(StorageError, match=f"object 'nope.txt' in bucket '{bucket}' does not exist"):
        tools.stat_object(admin, bucket, "nope.txt")
    with pytest.raises(StorageError, match="does not exist; call list_objects"):
        tools.get_object(admin, bucket, "nope.txt", max_bytes=MIB)
    missing = unique_bucket()
    with pytest.raises(StorageError, match=f"bucket '{missing}' does not exist"):
        tools.get_object(admin, missing, "any.txt", max_bytes=MIB)


def test_get_object_returns_small_text_whole(admin, bucket):
    put_raw(admin, bucket, "hello.txt", "héllo wörld\n".encode())
    got = tools.get_object(admin, bucket, "hello.txt", max_bytes=MIB)
    assert got == {
        "content": "héllo wörld\n",
        "encoding": "text",
        "size": 14,
        "offset": 0,
        "length": 14,
        "truncated": False,
        "next_offset": None,
        "hint": None,
    }


def test_get_object_reads_a_3_mib_object_in_capped_chunks_byte_exact(admin, bucket):
    data = os.urandom(3 * MIB + 12345)
    put_raw(admin, bucket, "big.bin", data)
    parts, offset, calls = [], 0, 0
    while offset is not None:
        got = tools.get_object(admin, bucket, "big.bin", offset=offset, max_bytes=MIB)
        calls += 1
        assert got["encoding"] == "base64"
        assert got["length"] <= MIB
        chunk = base64.b64decode(got["content"])
        assert len(chunk) == got["length"]
        parts.append(chunk)
        if got["next_offset"] is not None:
            assert got["truncated"] is True
            assert f"offset={got['next_offset']}" in got["hint"] and "presigned_url" in got["hint"]
        offset = got["next_offset"]
    assert calls == 4
    assert b"".join(parts) == data


def test_get_object_text_chunks_never_split_a_character(admin, bucket):
    text = "aé€😀" * 60 + "end"
    put_raw(admin, bucket, "multi.txt", text.encode())
    pieces, offset = [], 0
    while offset is not None:
        got = tools.get_object(admin, bucket, "multi.txt", offset=offset, max_bytes=7)
        assert got["encoding"] == "text"
        # A window of 7 bytes holds at least 4 whole characters' bytes (the longest is 4),
        # except the last one.
        assert 4 <= got["length"] <= 7 or got["next_offset"] is None
        pieces.append(got["content"])
        offset = got["next_offset"]
    assert "".join(pieces) == text


def test_get_object_offset_and_length_select_a_window(admin, bucket):
    put_raw(admin, bucket, "abc.txt", b"0123456789")
    got = tools.get_object(admin, bucket, "abc.txt", offset=3, length=4, max_bytes=MIB)
    assert (got["content"], got["length"], got["truncated"], got["next_offset"]) == (
        "3456",
        4,
        False,
        7,
    )
    capped = tools.get_object(admin, bucket, "abc.txt", offset=3, length=4, max_bytes=2)
    assert (capped["content"], capped["truncated"], capped["next_offset"]) == ("34", True, 5)
    tail = tools.get_object(admin, bucket, "abc.txt", offset=8, length=100, max_bytes=MIB)
    assert (tail["content"], tail["truncated"], tail["next_offset"]) == ("89", False, None)
    with pytest.raises(InvalidInput, match="offset 11 is past the end"):
        tools.get_object(admin, bucket, "abc.txt", offset=11, max_bytes=MIB)


def test_get_object_of_an_empty_object(admin, bucket):
    put_raw(admin, bucket, "empty", b"")
    got = tools.get_object(admin, bucket, "empty", max_bytes=MIB)
    assert (got["content"], got["size"], got["length"], got["truncated"]) == ("", 0, 0, False)


# --- writing -------------------------------------------------------------------------------------


def test_binary_content_round_trips_through_base64(admin, bucket):
    data = bytes(range(256)) * 40
    written = tools.put_object(
        admin, bucket, "bin/blob", base64.b64encode(data).decode(), encoding="base64", max_bytes=MIB
    )
    assert written["size"] == len(data) and written["etag"]
    assert read_raw(admin, bucket, "bin/blob") == data
    got = tools.get_object(admin, bucket, "bin/blob", max_bytes=MIB)
    assert got["encoding"] == "base64"
    assert base64.b64decode(got["content"]) == data
    assert tools.stat_object(admin, bucket, "bin/blob")["content_type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("key", "encoding", "content_type", "expected"),
    [
        ("notes", "text", None, "text/plain; charset=utf-8"),
        ("page.html", "text", None, "text/html; charset=utf-8"),
        ("data.json", "text", None, "application/json"),
        ("image.png", "base64", None, "image/png"),
        ("custom", "text", "application/x-custom", "application/x-custom"),
    ],
)
def test_put_object_content_type(admin, bucket, key, encoding, content_type, expected):
    content = "aGVsbG8=" if encoding == "base64" else "hello"
    tools.put_object(admin, bucket, key, content, encoding=encoding, content_type=content_type, max_bytes=MIB)
    assert tools.stat_object(admin, bucket, key)["content_type"] == expected


def test_put_object_into_a_missing_bucket_says_so(admin):
    name = unique_bucket()
    with pytest.raises(StorageError, match=f"bucket '{name}' does not exist"):
        tools.put_object(admin, name, "k", "x", max_bytes=MIB)
    assert not admin.bucket_exists(name)


def test_put_object_with_bad_base64_fails_before_the_network(admin, bucket):
    with pytest.raises(InvalidInput, match="content is not valid base64"):
        tools.put_object(admin, bucket, "k", "not base64!", encoding="base64", max_bytes=MIB)


@pytest.mark.parametrize(
    ("content", "encoding", "size"),
    [
        ("x" * (MIB + 1), "text", f"{MIB + 1} bytes"),
        ("é" * (MIB // 2 + 1), "text", f"{MIB + 2} bytes"),
        (base64.b64encode(b"\0" * (MIB + 3)).decode(), "base64", "at least"),
    ],
    ids=["ascii", "utf-8", "base64"],
)
def test_put_object_over_the_cap_is_refused_and_points_at_presigned_url(admin, bucket, content, encoding, size):
    with pytest.raises(InvalidInput, match="MCP_PUT_MAX_BYTES") as err:
        tools.put_object(admin, bucket, "big", content, encoding=encoding, max_bytes=MIB)
    assert size in str(err.value)
    assert "presigned_url with method='PUT'" in str(err.value)
    assert not [o.object_name for o in admin.list_objects(bucket)]


def test_put_object_at_the_cap_is_written_with_base64_line_breaks_ignored(admin, bucket):
    data = os.urandom(MIB)
    wrapped = "\n".join(base64.encodebytes(data).decode().split("\n"))
    assert tools.put_object(admin, bucket, "exact", wrapped, encoding="base64", max_bytes=MIB)["size"] == MIB
    assert read_raw(admin, bucket, "exact") == data


def test_delete_object_removes_it_and_a_missing_key_is_reported(admin, bucket):
    put_raw(admin, bucket, "gone.txt", b"bye")
    assert tools.delete_object(admin, bucket, "gone.txt") == {
        "bucket": bucket,
        "key": "gone.txt",
        "deleted": True,
    }
    with pytest.raises(StorageError, match=r"'gone.txt' .* does not exist"):
        tools.stat_object(admin, bucket, "gone.txt")
    with pytest.raises(StorageError, match=r"'gone.txt' .* does not exist"):
        tools.delete_object(admin, bucket, "gone.txt")


def test_copy_object_duplicates_content_across_buckets(admin, bucket):
    target = unique_bucket()
    admin.make_bucket(target)
    try:
        put_raw(admin, bucket, "src.txt", b"copy me")
        copied = tools.copy_object(admin, bucket, "src.txt", target, "dst/copy.txt")
        assert (copied["bucket"], copied["key"]) == (target, "dst/copy.txt") and copied["etag"]
        assert read_raw(admin, target, "dst/copy.txt") == b"copy me"
    finally:
        _empty_and_remove(admin, target)


def test_copy_object_with_missing_source_names_the_source(admin, bucket):
    with pytest.raises(StorageError, match=f"object 'absent' in bucket '{bucket}' does not exist"):
        tools.copy_object(admin, bucket, "absent", bucket, "dst")


# --- presigned URLs --------------------------------------------------------------------------------


def test_presigned_get_url_downloads_the_content_over_plain_http(admin, bucket):
    put_raw(admin, bucket, "shared.txt", b"shared content")
    before = datetime.now(UTC)
    signed = tools.presigned_url(admin, bucket, "shared.txt", expires_seconds=600)
    assert signed["method"] == "GET"
    expires_at = datetime.fromisoformat(signed["expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=590) < expires_at - before < timedelta(seconds=610)
    with urllib.request.urlopen(signed["url"], timeout=10) as response:
        assert response.read() == b"shared content"


def test_presigned_put_url_uploads_content(admin, bucket):
    signed = tools.presigned_url(admin, bucket, "upload.bin", method="put", expires_seconds=60)
    assert signed["method"] == "PUT"
    request = urllib.request.Request(signed["url"], data=b"\x00uploaded\xff", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert read_raw(admin, bucket, "upload.bin") == b"\x00uploaded\xff"


def test_presigned_get_url_for_a_missing_key_fails_at_once(admin, bucket):
    with pytest.raises(StorageError, match="does not exist"):
        tools.presigned_url(admin, bucket, "missing.txt")
    with pytest.raises(InvalidInput, match="expires_seconds"):
        tools.presigned_url(admin, bucket, "missing.txt", expires_seconds=8 * 24 * 3600)


# --- credentials and reachability ----------------------------------------------------------------


def test_check_credentials_accepts_valid_admin_and_read_only_keys(admin, reader):
    tools.check_credentials(admin)
    tools.check_credentials(reader)


def test_wrong_secret_key_names_the_secret_key_and_never_shows_it(s3_service):
    wrong_secret = "Wr0ng-" + uuid.uuid4().hex
    client = make_client(s3_service.endpoint, s3_service.access_key, wrong_secret, region=s3_service.region)
    with pytest.raises(TenantSettingError, match="secret key does not match the access key") as err:
        tools.check_credentials(client)
    assert err.value.settings == ("secret_key",)
    assert wrong_secret not in str(err.value)
    assert s3_service.secret_key not in str(err.value)


def test_unknown_access_key_names_the_access_key(s3_service):
    client = make_client(
        s3_service.endpoint, "nobody-" + uuid.uuid4().hex[:8], "whatever-secret", region=s3_service.region
    )
    with pytest.raises(TenantSettingError, match=r"does not know the access key \(InvalidAccessKeyId\)") as err:
        tools.check_credentials(client)
    assert err.value.settings == ("access_key",)


def test_wrong_keys_on_head_requests_get_the_real_cause_not_access_denied(s3_service, admin, bucket):
    # stat_object and bucket_exists are HEAD requests: the store's answer has no body, so the
    # cause (SignatureDoesNotMatch, InvalidAccessKeyId) must be found another way.
    put_raw(admin, bucket, "there.txt", b"x")
    wrong_secret = make_client(s3_service.endpoint, s3_service.access_key, "Wr0ng-secret", region=s3_service.region)
    unknown_key = make_client(s3_service.endpoint, "nobody-at-all", "Wr0ng-secret", region=s3_service.region)
    calls = [
        lambda c: tools.stat_object(c, bucket, "there.txt"),
        lambda c: tools.get_object(c, bucket, "there.txt", max_bytes=MIB),
        lambda c: tools.put_object(c, bucket, "new.txt", "x", max_bytes=MIB),
        lambda c: tools.presigned_url(c, bucket, "there.txt"),
        lambda c: tools.create_bucket(c, unique_bucket()),
    ]
    for call in calls:
        with pytest.raises(TenantSettingError, match="SignatureDoesNotMatch") as err:
            call(wrong_secret)
        assert err.value.settings == ("secret_key",)
        with pytest.raises(TenantSettingError, match="InvalidAccessKeyId"):
            call(unknown_key)


def test_https_to_a_plain_http_store_names_the_secure_setting(s3_service):
    client = make_client(s3_service.endpoint, s3_service.access_key, s3_service.secret_key, secure=True)
    with pytest.raises(TenantSettingError, match="TLS handshake failed") as err:
        tools.check_credentials(client)
    assert err.value.settings == ("secure",)


def test_unreachable_endpoint_is_reported_at_once_naming_the_endpoint(bucket):
    client = make_client(f"127.0.0.1:{closed_port()}", "key", "secret", region="us-east-1")
    with pytest.raises(TenantSettingError, match=r"cannot reach the object store at 127\.0\.0\.1") as err:
        tools.check_credentials(client)
    assert err.value.settings == ("endpoint",)
    with pytest.raises(TenantSettingError, match=r"Connection refused \(nothing listens there"):
        tools.get_object(client, bucket, "any", max_bytes=MIB)
    unresolvable = make_client("no-such-host.invalid:9000", "key", "secret", region="us-east-1")
    with pytest.raises(TenantSettingError, match=r"the host name 'no-such-host\.invalid' does not resolve"):
        tools.list_objects(unresolvable, bucket, max_keys_cap=10)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html", b"<html>hello</html>"), ("text/plain", b"hello, this is not XML")],
    ids=["html", "plain"],
)
def test_an_endpoint_that_is_not_s3_is_reported_as_such(content_type, body):
    class NotS3(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        client = make_client(f"127.0.0.1:{server.server_port}", "k", "s", region="us-east-1")
        with pytest.raises(TenantSettingError, match="not an S3 response"):
            tools.check_credentials(client)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- read-only identity ---------------------------------------------------------------------------


def test_read_only_identity_can_list_and_read(admin, reader, bucket):
    put_raw(admin, bucket, "public.txt", b"readable")
    assert tools.get_object(reader, bucket, "public.txt", max_bytes=MIB)["content"] == "readable"
    keys = [obj["key"] for obj in tools.list_objects(reader, bucket, max_keys_cap=1000)["objects"]]
    assert keys == ["public.txt"]


def test_read_only_identity_cannot_put_and_gets_a_clear_access_denied(reader, bucket):
    with pytest.raises(StorageError, match="AccessDenied") as err:
        tools.put_object(reader, bucket, "forbidden.txt", "nope", max_bytes=MIB)
    assert f"'forbidden.txt' in bucket '{bucket}'" in str(err.value)
    assert "lack permission" in str(err.value)
    with pytest.raises(StorageError, match="AccessDenied"):
        tools.create_bucket(reader, unique_bucket())
