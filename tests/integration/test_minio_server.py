"""The MinIO server end to end over stdio: a real client, real Redis, a real S3 server (SeaweedFS)."""

from __future__ import annotations

import base64
import uuid

import pytest

from mcp_tenants.devservices import S3Service, free_ports
from tests import audit
from tests.conftest import running

from .stdio import Session
from .tenants import MINIO_TOOLS

MODULE = "mcp_tenants.minio"


@pytest.fixture
def make_server(stdio_servers, redis_db):
    return lambda **env: stdio_servers(MODULE, **{**redis_db.env(), **env})


def register_args(s3, tenant_id="media", *, read_only_identity=False, **overrides):
    keys = (s3.ro_access_key, s3.ro_secret_key) if read_only_identity else (s3.access_key, s3.secret_key)
    return {
        "tenant_id": tenant_id,
        "endpoint": s3.endpoint,
        "access_key": keys[0],
        "secret_key": keys[1],
        "region": s3.region,
        **overrides,
    }


def test_seed_scenario_register_restart_and_list_buckets(make_server, s3_service, redis_db):
    server = make_server()
    bucket = f"seed-{uuid.uuid4().hex[:12]}"

    async def register(session: Session):
        result = await session.call("register_tenant", **register_args(s3_service, access="read-write"))
        assert result["persisted"] is True and "secret_key" not in result["tenant"]
        await session.call("create_bucket", tenant_id="media", bucket=bucket)
        await session.call("put_object", tenant_id="media", bucket=bucket, key="hello.txt", content="hi there")
        return session.transcript

    async def after_restart(session: Session):
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"media": "redis"}
        names = [b["name"] for b in (await session.call("list_buckets", tenant_id="media"))["buckets"]]
        assert bucket in names
        got = await session.call("get_object", tenant_id="media", bucket=bucket, key="hello.txt")
        assert (got["content"], got["encoding"], got["truncated"]) == ("hi there", "text", False)
        await session.call("delete_object", tenant_id="media", bucket=bucket, key="hello.txt")
        await session.call("delete_bucket", tenant_id="media", bucket=bucket)
        return session.transcript

    transcript = server.run(register) + server.run(after_restart)
    assert redis_db.client.get("mcp:minio:tenant:media") is not None
    for text in [*transcript, server.logs()]:
        assert s3_service.secret_key not in text


def test_wrong_secret_is_refused_and_nothing_is_stored(make_server, s3_service, redis_db):
    server = make_server()

    async def scenario(session: Session):
        error = await session.fail("register_tenant", **register_args(s3_service, secret_key="wrong-secret-123"))
        assert "SignatureDoesNotMatch" in error and "check the secret_key argument" in error
        assert "wrong-secret-123" not in error
        assert (await session.call("list_tenants"))["tenants"] == []

    server.run(scenario)
    assert redis_db.client.keys("mcp:*:tenant:*") == []  # tenants only: the audit stream records the attempt
    assert "wrong-secret-123" not in server.logs()


def test_read_only_tenant_refuses_writes_and_says_how_to_allow_them(make_server, s3_service):
    server = make_server()

    async def scenario(session: Session):
        await session.call("register_tenant", **register_args(s3_service))
        for tool, args in [
            ("create_bucket", {"bucket": "never-made"}),
            ("put_object", {"bucket": "never-made", "key": "k", "content": "x"}),
            ("delete_object", {"bucket": "never-made", "key": "k"}),
            ("delete_bucket", {"bucket": "never-made"}),
            ("copy_object", {"source_bucket": "a-b-c", "source_key": "k", "bucket": "never-made", "key": "k"}),
            ("presigned_url", {"bucket": "never-made", "key": "k", "method": "PUT"}),
        ]:
            assert 'access="read-write"' in await session.fail(tool, tenant_id="media", **args)
        names = [b["name"] for b in (await session.call("list_buckets", tenant_id="media"))["buckets"]]
        assert "never-made" not in names

    server.run(scenario)


def test_binary_round_trip_and_env_tenant(make_server, s3_service):
    prefix = "MINIO_TENANT_STORE_"
    server = make_server(
        **{
            prefix + "ENDPOINT": s3_service.endpoint,
            prefix + "ACCESS_KEY": s3_service.access_key,
            prefix + "SECRET_KEY": s3_service.secret_key,
            prefix + "REGION": s3_service.region,
            prefix + "ACCESS": "read-write",
        }
    )
    bucket = f"bin-{uuid.uuid4().hex[:12]}"
    payload = bytes(range(256)) * 10

    async def scenario(session: Session):
        await session.call("create_bucket", tenant_id="store", bucket=bucket)
        encoded = base64.b64encode(payload).decode()
        await session.call(
            "put_object", tenant_id="store", bucket=bucket, key="blob.bin", content=encoded, encoding="base64"
        )
        got = await session.call("get_object", tenant_id="store", bucket=bucket, key="blob.bin")
        assert got["encoding"] == "base64" and base64.b64decode(got["content"]) == payload
        assert "environment" in await session.fail("remove_tenant", tenant_id="store")
        await session.call("delete_object", tenant_id="store", bucket=bucket, key="blob.bin")
        await session.call("delete_bucket", tenant_id="store", bucket=bucket)

    server.run(scenario)


def test_redis_down_registers_in_memory_and_still_serves(make_server, s3_service):
    (closed_port,) = free_ports(1)
    server = make_server(REDIS_HOST="127.0.0.1", REDIS_PORT=str(closed_port))

    async def scenario(session: Session):
        result = await session.call("register_tenant", **register_args(s3_service))
        assert result["persisted"] is False
        sources = {t["tenant_id"]: t["source"] for t in (await session.call("list_tenants"))["tenants"]}
        assert sources == {"media": "memory"}
        assert "buckets" in await session.call("list_buckets", tenant_id="media")

    server.run(scenario)
    assert "unavailable" in server.logs()


def test_every_tool_answers_through_mcp_with_its_output_schema(make_server, s3_service):
    server = make_server(MCP_OBJECT_MAX_BYTES="1000", MCP_LIST_MAX_KEYS="2")
    bucket = f"all-{uuid.uuid4().hex[:12]}"

    async def scenario(session: Session):
        listed = {t.name: t for t in (await session.client.list_tools()).tools}
        assert set(listed) == MINIO_TOOLS and all(t.output_schema and t.annotations for t in listed.values())
        assert listed["get_object"].annotations.read_only_hint
        assert listed["delete_bucket"].annotations.destructive_hint
        await session.call("register_tenant", **register_args(s3_service, access="read-write"))
        assert (await session.call("create_bucket", tenant_id="media", bucket=bucket))["created"] is True
        for key in ("a.txt", "dir/b.txt", "dir/c.txt"):
            await session.call("put_object", tenant_id="media", bucket=bucket, key=key, content="x" * 1500)
        first = await session.call("list_objects", tenant_id="media", bucket=bucket, max_keys=10)
        assert len(first["objects"]) == 2 and first["truncated"] is True  # capped by MCP_LIST_MAX_KEYS
        rest = await session.call(
            "list_objects", tenant_id="media", bucket=bucket, start_after=first["next_start_after"]
        )
        assert [o["key"] for o in first["objects"] + rest["objects"]] == ["a.txt", "dir/b.txt", "dir/c.txt"]
        shallow = await session.call("list_objects", tenant_id="media", bucket=bucket, recursive=False)
        assert shallow["prefixes"] == ["dir/"]
        stat = await session.call("stat_object", tenant_id="media", bucket=bucket, key="a.txt")
        assert stat["size"] == 1500 and stat["content_type"].startswith("text/plain")
        part = await session.call("get_object", tenant_id="media", bucket=bucket, key="a.txt")
        assert (part["length"], part["truncated"], part["next_offset"]) == (1000, True, 1000)
        assert "offset" in part["hint"]
        tail = await session.call("get_object", tenant_id="media", bucket=bucket, key="a.txt", offset=1000)
        assert (tail["length"], tail["truncated"]) == (500, False)
        copied = await session.call(
            "copy_object", tenant_id="media", source_bucket=bucket, source_key="a.txt", bucket=bucket, key="copy.txt"
        )
        assert copied["key"] == "copy.txt"
        url = await session.call("presigned_url", tenant_id="media", bucket=bucket, key="copy.txt", expires_seconds=60)
        assert url["url"].startswith("http://") and url["method"] == "GET"
        assert "expires" in await session.fail(
            "presigned_url", tenant_id="media", bucket=bucket, key="copy.txt", expires_seconds=8 * 24 * 3600
        )
        assert "not empty" in await session.fail("delete_bucket", tenant_id="media", bucket=bucket)
        for key in ("a.txt", "dir/b.txt", "dir/c.txt", "copy.txt"):
            await session.call("delete_object", tenant_id="media", bucket=bucket, key=key)
        assert (await session.call("delete_bucket", tenant_id="media", bucket=bucket))["deleted"] is True
        assert "bucket" in await session.fail("create_bucket", tenant_id="media", bucket="Bad_Name")
        return session.transcript

    transcript = server.run(scenario)
    assert not any("X-Amz-Signature" in text for text in server.logs().splitlines())
    assert all(s3_service.secret_key not in text for text in transcript)


def test_annotations_say_which_tools_can_overwrite_or_mint_upload_urls(make_server):
    server = make_server()

    async def scenario(session: Session):
        return {t.name: t.annotations for t in (await session.client.list_tools()).tools}

    annotations = server.run(scenario)
    for tool in ("put_object", "copy_object", "presigned_url"):
        assert annotations[tool].read_only_hint is False, tool
        assert annotations[tool].destructive_hint is True, tool
    for tool in ("list_objects", "get_object", "stat_object", "list_buckets"):
        assert annotations[tool].read_only_hint is True, tool


def test_output_schemas_never_make_a_validating_client_walk_every_entry(make_server):
    server = make_server()

    async def scenario(session: Session):
        return {t.name: t.output_schema for t in (await session.client.list_tools()).tools}

    def walks_items(schema) -> bool:
        if isinstance(schema, dict):
            return "items" in schema or any(map(walks_items, schema.values()))
        if isinstance(schema, list):
            return any(walks_items(v) for v in schema)
        return False

    schemas = server.run(scenario)
    assert not [name for name, schema in schemas.items() if walks_items(schema)]
    objects = schemas["list_objects"]["properties"]["objects"]
    assert objects["type"] == "array" and "last_modified" in objects["description"]


def test_put_object_over_mcp_put_max_bytes_is_refused_before_it_is_written(make_server, s3_service):
    server = make_server(MCP_PUT_MAX_BYTES="1000")
    bucket = f"cap-{uuid.uuid4().hex[:12]}"

    async def scenario(session: Session):
        await session.call("register_tenant", **register_args(s3_service, access="read-write"))
        await session.call("create_bucket", tenant_id="media", bucket=bucket)
        error = await session.fail("put_object", tenant_id="media", bucket=bucket, key="big", content="x" * 1001)
        assert "1001 bytes" in error and "MCP_PUT_MAX_BYTES" in error and "presigned_url" in error
        written = await session.call("put_object", tenant_id="media", bucket=bucket, key="ok", content="x" * 1000)
        assert written["size"] == 1000
        listed = await session.call("list_objects", tenant_id="media", bucket=bucket)
        assert [o["key"] for o in listed["objects"]] == ["ok"]
        await session.call("delete_object", tenant_id="media", bucket=bucket, key="ok")
        await session.call("delete_bucket", tenant_id="media", bucket=bucket)

    server.run(scenario)


def env_tenant(tenant_id: str, endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    prefix = f"MINIO_TENANT_{tenant_id.upper()}_"
    return {
        prefix + "ENDPOINT": endpoint,
        prefix + "ACCESS_KEY": access_key,
        prefix + "SECRET_KEY": secret_key,
        prefix + "REGION": "us-east-1",
    }


def test_environment_tenants_with_a_wrong_setting_get_the_cause_and_the_variable_to_fix(make_server, s3_service):
    (closed_port,) = free_ports(1)
    server = make_server(
        **env_tenant("badsecret", s3_service.endpoint, s3_service.access_key, "Wr0ng-secret-1"),
        **env_tenant("badkey", s3_service.endpoint, "nobody-at-all", "Wr0ng-secret-1"),
        **env_tenant("nohost", "no-such-host.invalid:9000", s3_service.access_key, "Wr0ng-secret-1"),
        **env_tenant("noserver", f"127.0.0.1:{closed_port}", s3_service.access_key, "Wr0ng-secret-1"),
    )
    expected = {
        "badsecret": ("SignatureDoesNotMatch", "MINIO_TENANT_BADSECRET_SECRET_KEY"),
        "badkey": ("InvalidAccessKeyId", "MINIO_TENANT_BADKEY_ACCESS_KEY"),
        "nohost": ("'no-such-host.invalid' does not resolve", "MINIO_TENANT_NOHOST_ENDPOINT"),
        "noserver": ("Connection refused", "MINIO_TENANT_NOSERVER_ENDPOINT"),
    }

    async def scenario(session: Session):
        for tenant_id, (cause, variable) in expected.items():
            # list_buckets is a GET (an error body); stat_object a HEAD (none): same answer.
            for tool, args in [("list_buckets", {}), ("stat_object", {"bucket": "some-bucket", "key": "k"})]:
                error = await session.fail(tool, tenant_id=tenant_id, **args)
                assert f"tenant {tenant_id!r}" in error and cause in error and f"check {variable}" in error, error
                assert "busy" not in error and "AccessDenied" not in error

    server.run(scenario)
    # A refused or unresolvable connect is reported, not retried.
    assert "Retrying" not in server.logs()


@pytest.fixture
def own_s3():
    """An S3 server of this test's own, to stop and start again (same port, same keys)."""
    service = S3Service()
    audit.secret(service.secret_key, service.ro_secret_key)
    yield from running(service)


def test_a_store_that_goes_down_is_named_and_the_next_call_after_it_returns_works(make_server, own_s3):
    server = make_server()

    async def scenario(session: Session):
        await session.call("register_tenant", **register_args(own_s3))
        assert "buckets" in await session.call("list_buckets", tenant_id="media")
        own_s3.stop()
        error = await session.fail("list_buckets", tenant_id="media")
        assert "Connection refused (nothing listens there: the object store is down, or the endpoint is wrong)" in error
        assert "check the tenant's endpoint: register it again" in error
        own_s3.start()
        assert (await session.call("list_buckets", tenant_id="media"))["buckets"] == []

    server.run(scenario)
    assert "Retrying" not in server.logs()
