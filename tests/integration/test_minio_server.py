"""The MinIO server end to end over stdio: a real client, real Redis, a real S3 server (SeaweedFS)."""

from __future__ import annotations

import base64
import uuid

import pytest

from mcp_tenants.devservices import free_ports

from .stdio import ServerProcess, Session
from .tenants import MINIO_TOOLS

MODULE = "mcp_tenants.minio"


@pytest.fixture
def make_server(redis_db):
    made: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        server = ServerProcess(MODULE, {**redis_db.env(), **env})
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


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
        assert "credentials" in error and "wrong-secret-123" not in error
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
