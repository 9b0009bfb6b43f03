"""TenantStore on fakeredis: keys, JSON layout, SCAN, corrupt entries, encryption, outages."""

import json
import logging
import time

import fakeredis
import pytest
import redis

from mcp_tenants.crypto import SecretCodec, generate_key
from mcp_tenants.errors import CorruptEntry, StoreUnavailable
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.redisfaults import is_outage
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore
from mcp_tenants.writeback import WriteBack


def tenant(tid="acme", password="pw-acme-secret", **kw):
    return PostgresTenant(tenant_id=tid, host="db", database="d", user="u", password=password, **kw)


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def make_store(server, keys=(), **kw):
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    return TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(keys), client=client, **kw)


def raw(server, key):
    return fakeredis.FakeRedis(server=server, decode_responses=True).get(key)


def test_entry_is_a_json_object_under_the_spec_key(server):
    store = make_store(server)
    assert store.put(tenant()) is True
    value = json.loads(raw(server, "mcp:postgres:tenant:acme"))
    assert value["host"] == "db" and value["tenant_id"] == "acme"
    assert store.get("acme") == tenant()
    assert store.get("nobody") is None


def test_with_a_key_the_password_is_sealed_and_the_rest_stays_readable(server):
    store = make_store(server, keys=[generate_key()])
    store.put(tenant())
    text = raw(server, "mcp:postgres:tenant:acme")
    assert "pw-acme-secret" not in text
    assert json.loads(text)["user"] == "u"
    assert store.get("acme").password == "pw-acme-secret"


def test_plain_entries_stay_readable_after_a_key_is_configured(server):
    make_store(server).put(tenant())
    assert make_store(server, keys=[generate_key()]).get("acme").password == "pw-acme-secret"


def test_wrong_key_fails_that_tenant_only_and_overwrites_nothing(server):
    make_store(server, keys=[generate_key()]).put(tenant())
    make_store(server).put(tenant("plain", password="pw-plain-1"))
    before = raw(server, "mcp:postgres:tenant:acme")
    other = make_store(server, keys=[generate_key()])
    configs, errors = other.load_all()
    assert list(configs) == ["plain"]
    assert "cannot be decrypted" in str(errors["acme"])
    assert raw(server, "mcp:postgres:tenant:acme") == before


def test_rotation_keys_old_key_still_decrypts(server):
    old, new = generate_key(), generate_key()
    make_store(server, keys=[old]).put(tenant())
    assert make_store(server, keys=[new, old]).get("acme").password == "pw-acme-secret"


@pytest.mark.parametrize(
    "value, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"), ('{"host": "h"}', "missing field")],
)
def test_corrupt_entry_fails_only_that_tenant(server, value, message):
    store = make_store(server)
    store.put(tenant("good"))
    fakeredis.FakeRedis(server=server).set("mcp:postgres:tenant:bad", value)
    configs, errors = store.load_all()
    assert list(configs) == ["good"]
    assert message in str(errors["bad"])
    with pytest.raises(CorruptEntry, match="'bad'"):
        store.get("bad")


def test_load_all_scans_beyond_one_batch(server):
    store = make_store(server)
    for i in range(1203):
        store.put(tenant(f"t{i}"))
    fakeredis.FakeRedis(server=server).set("mcp:minio:tenant:other", "{}")  # another server's key
    configs, errors = store.load_all()
    assert len(configs) == 1203 and not errors


def test_outage_queues_writes_and_flushes_them_when_redis_returns(server):
    store = make_store(server, max_backoff=0.05)
    store.put(tenant("before"))
    server.connected = False
    assert store.put(tenant("during")) is False
    assert store.delete("before") is False
    assert store.pending_ids() == {"during", "before"}
    with pytest.raises(StoreUnavailable):
        store.get("unknown")
    # What this process wrote is still what it reads back during the outage.
    assert store.get("during") == tenant("during")
    assert store.get("before") is None
    server.connected = True
    deadline = time.monotonic() + 5
    while store.pending_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.pending_ids() == set()
    assert json.loads(raw(server, "mcp:postgres:tenant:during"))["tenant_id"] == "during"
    assert raw(server, "mcp:postgres:tenant:before") is None
    assert store.available
    store.close()


def test_connect_reports_an_unreachable_redis_without_raising(server):
    server.connected = False
    store = make_store(server, max_backoff=0.05)
    assert store.connect() is False
    assert store.available is False
    store.close()


@pytest.mark.parametrize(
    "error, outage",
    [
        (redis.exceptions.ConnectionError("Connection refused"), True),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), True),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        (redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"), True),
        (redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"), True),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script"), True),
        (redis.exceptions.NoPermissionError("this user has no permissions to run the 'set' command"), False),
        (redis.exceptions.AuthenticationError("invalid username-password pair"), False),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
        (redis.exceptions.ResponseError("ERR unknown command 'SET'"), False),
    ],
)
def test_outages_are_retried_and_refusals_are_not(error, outage):
    assert is_outage(error) is outage


@pytest.mark.parametrize(
    "value, message",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 50_000, "nested too deeply"),
        (b"{" + b" " * 70_000 + b"}", "bytes long"),
        (json.dumps({"host": "h", "database": "d", "user": "u", "password": 5}).encode(), "password is invalid"),
        (json.dumps({"tenant_id": "other", "host": "h"}).encode(), "not its own"),
    ],
)
def test_any_bad_value_fails_only_its_tenant_and_says_how_to_remove_it(server, value, message):
    store = make_store(server)
    store.put(tenant("good"))
    fakeredis.FakeRedis(server=server).set("mcp:postgres:tenant:bad", value)
    configs, errors = store.load_all()
    assert list(configs) == ["good"] and list(errors) == ["bad"]
    assert message in str(errors["bad"]) and "mcp-tenants remove bad" in str(errors["bad"])
    with pytest.raises(CorruptEntry, match=message):
        store.get("bad")
    assert store.delete("bad") is True and store.load_all() == ({"good": tenant("good")}, {})


def test_a_key_of_another_type_and_a_key_naming_no_tenant_are_reported(server):
    store = make_store(server)
    raw_client = fakeredis.FakeRedis(server=server)
    raw_client.hset("mcp:postgres:tenant:hashed", "host", "h")
    raw_client.set(b"mcp:postgres:tenant:Bad\xffId", b"{}")
    configs, errors = store.load_all()
    assert configs == {}
    assert "is a Redis hash" in str(errors["hashed"])
    assert "Bad\\xffId" in errors and "mcp-tenants remove" in str(errors["Bad\\xffId"])
    assert store.delete_strange_key("Bad\\xffId") is True
    assert store.delete("hashed") is True
    assert store.load_all() == ({}, {})


def test_a_write_failing_just_as_the_retry_thread_retires_is_still_retried():
    """The retry thread releases writes and retires in one step, so no queued write is orphaned."""
    sent: list[str] = []
    down = {"now": True}
    fired: list[logging.LogRecord] = []

    def send(tenant_id, entry):
        if down["now"]:
            raise redis.exceptions.ConnectionError("Connection refused")
        sent.append(tenant_id)

    queue = WriteBack(
        "Redis at test", "mcp:postgres:tenant:", ping=lambda: True, send=send, max_backoff=0.02, background=True
    )

    class FailAWriteAtTheLastMoment(logging.Handler):
        """Runs in the retry thread after its last flush, before it ends: a write fails right then."""

        def emit(self, record):
            if "takes writes again" in record.getMessage() and not fired:
                fired.append(record)
                queue.enqueue("late", {"tenant_id": "late"})
                queue.went_down(redis.exceptions.ConnectionError("Connection refused"), writes_only=True)

    logger = logging.getLogger("mcp_tenants.writeback")
    handler, level = FailAWriteAtTheLastMoment(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        queue.enqueue("first", {"tenant_id": "first"})
        queue.went_down(redis.exceptions.ConnectionError("Connection refused"))
        time.sleep(0.1)
        down["now"] = False
        deadline = time.monotonic() + 5
        while ("late" not in sent or queue.unpersisted()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent == ["first", "late"] and queue.unpersisted() == set()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        queue.close()
