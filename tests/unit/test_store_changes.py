"""The tenant change log on fakeredis: what a write appends, and what the watcher makes of it."""

import json
import logging
import threading
import time

import fakeredis
import pytest
import redis

from mcp_tenants.changelog import ChangeLog
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import StoreUnavailable
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.redisfaults import is_outage, reason, without_pipeline_note
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore
from mcp_tenants.storewatch import ChangeWatcher

from .fakes import HalfOpenSubscription

LOG = "mcp:postgres:tenant-changes"


def tenant(tid="acme", host="db"):
    return PostgresTenant(tenant_id=tid, host=host, database="d", user="u", password="pw-acme-secret")


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def make_store(server, client_type=fakeredis.FakeRedis):
    client = client_type(server=server, decode_responses=True)
    return TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)


class Recorder:
    """A watcher's receiver: what it was told, in order; ``fail_resyncs`` resyncs fail first."""

    def __init__(self, fail_resyncs: int = 0) -> None:
        self.seen: list[str | None] = []
        self.fail_resyncs = fail_resyncs
        self.lock = threading.Lock()

    def __call__(self, tenant_id):
        with self.lock:
            self.seen.append(tenant_id)
            if tenant_id is None and self.fail_resyncs:
                self.fail_resyncs -= 1
                raise StoreUnavailable("Redis at test is unavailable")

    def wait_for(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.seen)):
                    return list(self.seen)
            time.sleep(0.01)
        with self.lock:
            return list(self.seen)


def watch(server, receiver, client_type=HalfOpenSubscription):
    """A watcher reading the log every 50 ms, as another process with its own origin."""
    client = client_type(server=server, decode_responses=True)
    watcher = ChangeWatcher(
        client,
        "mcp:postgres:tenant-events",
        "the-watching-process",
        receiver,
        log=ChangeLog(client, LOG),
        max_backoff=0.1,
        poll_seconds=0.05,
    )
    watcher.thread.start()
    assert watcher.positioned.wait(5)
    return watcher


def wait_for_subscription(client):
    """The watcher subscribes just after it found its place in the log: wait for that."""
    deadline = time.monotonic() + 5
    while not client.pubsub_numsub("mcp:postgres:tenant-events")[0][1] and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_write_appends_its_tenant_and_origin_to_the_log(server):
    store = make_store(server)
    store.put(tenant())
    store.delete("acme")
    entries = fakeredis.FakeRedis(server=server, decode_responses=True).xrange(LOG)
    assert [fields["tenant_id"] for _id, fields in entries] == ["acme", "acme"]
    assert len({fields["origin"] for _id, fields in entries}) == 1
    assert "pw-acme-secret" not in json.dumps(entries)


def test_the_log_delivers_other_processes_changes_once_and_never_its_own(server):
    receiver = Recorder()
    watcher = watch(server, receiver, client_type=fakeredis.FakeRedis)  # pub/sub works too
    other = make_store(server)
    try:
        wait_for_subscription(other._client)
        for name in ("a", "b", "c"):
            other.put(tenant(name))
        fakeredis.FakeRedis(server=server).xadd(LOG, {"tenant_id": "own", "origin": "the-watching-process"})
        assert receiver.wait_for(lambda seen: len(seen) >= 3) == ["a", "b", "c"]
        time.sleep(0.2)  # several more log reads: nothing is delivered twice, nor the own change
        assert receiver.seen == ["a", "b", "c"]
    finally:
        watcher.close()
        other.close()


def test_with_a_subscription_that_delivers_nothing_the_log_still_brings_every_change(server):
    receiver = Recorder()
    watcher = watch(server, receiver)
    other = make_store(server)
    try:
        other.put(tenant("moved", host="db-new"))
        other.delete("gone")
        assert receiver.wait_for(lambda seen: len(seen) >= 2) == ["moved", "gone"]
    finally:
        watcher.close()
        other.close()


def test_a_log_trimmed_past_the_last_entry_read_asks_for_a_full_resync(server, caplog):
    receiver = Recorder()
    watcher = watch(server, receiver)
    try:
        raw = fakeredis.FakeRedis(server=server, decode_responses=True)
        with raw.pipeline(transaction=True) as pipe:  # changes whose entries are trimmed unread, but one
            pipe.delete("mcp:postgres:tenant:acme")
            for name in ("acme", "other", "newest"):
                pipe.xadd(LOG, {"tenant_id": name, "origin": "elsewhere"})
            pipe.xtrim(LOG, maxlen=1, approximate=False)
            pipe.execute()
        assert receiver.wait_for(lambda seen: None in seen) == [None]  # the resync covers all three
        assert "no longer holds entry" in caplog.text
        raw.xadd(LOG, {"tenant_id": "later", "origin": "elsewhere"})  # reading goes on from there
        assert receiver.wait_for(lambda seen: "later" in seen) == [None, "later"]
    finally:
        watcher.close()


def test_a_resync_that_redis_fails_is_asked_for_again(server):
    receiver = Recorder(fail_resyncs=2)
    watcher = watch(server, receiver)
    try:
        fakeredis.FakeRedis(server=server).xtrim(LOG, maxlen=0, approximate=False)
        assert receiver.wait_for(lambda seen: len(seen) >= 3) == [None, None, None]
        time.sleep(0.2)
        assert receiver.seen == [None, None, None]  # once it succeeded, no more
    finally:
        watcher.close()


def test_malformed_log_entries_are_skipped_and_reading_goes_on(server, caplog):
    receiver = Recorder()
    watcher = watch(server, receiver)
    try:
        raw = fakeredis.FakeRedis(server=server)
        raw.xadd(LOG, {"tenant_id": b"\xff\xfe", "origin": "x"})
        raw.xadd(LOG, {"tenant_id": "../etc", "origin": "x"})
        raw.xadd(LOG, {"origin": "x"})  # no tenant at all: an anchor, skipped quietly
        raw.xadd(LOG, {"tenant_id": "fine", "origin": "x"})
        assert receiver.wait_for(lambda seen: "fine" in seen) == ["fine"]
        assert caplog.text.count("ignoring a malformed entry") == 2
    finally:
        watcher.close()


def test_a_log_key_that_is_no_stream_leaves_writes_working_and_says_which_key(server, caplog):
    fakeredis.FakeRedis(server=server).set(LOG, "not a stream")
    store = make_store(server)
    caplog.set_level(logging.ERROR)
    assert store.put(tenant()) is True
    assert store.get("acme") == tenant()
    assert LOG in caplog.text and "pub/sub only" in caplog.text
    assert "pw-acme-secret" not in caplog.text


def test_a_failed_pipeline_command_is_reported_by_its_reply_without_the_value():
    exc = redis.exceptions.ResponseError(
        'Command # 1 (SET mcp:postgres:tenant:acme {"password": "pw-acme-secret"}) of pipeline caused error: '
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."
    )
    plain = without_pipeline_note(exc)
    assert "pw-acme-secret" not in reason(plain) and reason(plain).startswith("MISCONF")
    assert is_outage(plain)  # queued and retried, as any other write Redis cannot take for now


def test_announcements_with_any_entry_id_are_still_delivered(server):
    receiver = Recorder()
    watcher = watch(server, receiver, client_type=fakeredis.FakeRedis)
    try:
        raw = fakeredis.FakeRedis(server=server)
        wait_for_subscription(raw)
        for entry_id in ("9" * 5000 + "-0", "²-1", "x", 7, None):
            raw.publish("mcp:postgres:tenant-events", json.dumps({"tenant_id": "acme", "origin": "o", "id": entry_id}))
        assert receiver.wait_for(lambda seen: len(seen) >= 5) == ["acme"] * 5
    finally:
        watcher.close()
