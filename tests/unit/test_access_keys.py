"""API keys on fakeredis: hashes only, unique names, expiry, the ≤ 1 s cache and its invalidation."""

import json
import time

import fakeredis
import pytest

from mcp_tenants.access.keys import (
    ApiKeyStore,
    KeyCache,
    KeyExists,
    KeyNotFound,
    hash_key,
    looks_like_key,
    parse_duration,
)
from mcp_tenants.errors import InvalidInput, StoreUnavailable


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def store(server, name="postgres"):
    return ApiKeyStore(fakeredis.FakeRedis(server=server, decode_responses=True), name)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_only_the_hash_is_stored_and_the_key_is_returned_once(server):
    keys = store(server)
    record, key = keys.create("team-a", "sales_*,ops", "reader", expires_in=3600)
    assert looks_like_key(key) and record.tenants == ("sales_*", "ops") and record.role == "reader"
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    everything = json.dumps({k: client.hgetall(k) for k in client.keys("*")})
    assert key not in everything and key[5:] not in everything and hash_key(key) in everything
    assert keys.lookup(hash_key(key)).principal().sees("sales_eu")
    assert keys.lookup(hash_key("mcpk_" + "x" * 43)) is None


def test_names_are_unique_and_validated(server):
    keys = store(server)
    keys.create("team-a", "*", "admin")
    with pytest.raises(KeyExists, match="team-a"):
        keys.create("team-a", "*", "reader")
    for bad_name in ("", "-x", "a b", "x" * 65, "a/b"):
        with pytest.raises(InvalidInput, match="key name"):
            keys.create(bad_name, "*", "reader")
    with pytest.raises(InvalidInput, match="role"):
        keys.create("team-b", "*", "root")
    with pytest.raises(InvalidInput, match="pattern"):
        keys.create("team-b", "sales.*", "reader")
    with pytest.raises(InvalidInput, match="empty"):
        keys.create("team-b", " , ", "reader")


def test_revoke_deletes_by_name_and_list_never_shows_keys(server):
    keys = store(server)
    _, key_a = keys.create("team-a", "sales_*", "reader")
    keys.create("team-b", "hr", "writer", expires_in=60)
    listed = keys.list()
    assert [(k.name, k.role) for k, _used in listed] == [("team-a", "reader"), ("team-b", "writer")]
    assert key_a not in repr(listed)
    keys.revoke("team-a")
    assert keys.lookup(hash_key(key_a)) is None and [k.name for k, _ in keys.list()] == ["team-b"]
    with pytest.raises(KeyNotFound, match="team-a"):
        keys.revoke("team-a")


def test_keys_belong_to_one_server(server):
    _, key = store(server, "postgres").create("team-a", "*", "reader")
    assert store(server, "minio").lookup(hash_key(key)) is None


def test_expiry():
    assert parse_duration("90d") == 90 * 86400 and parse_duration("1w2d") == 9 * 86400
    assert parse_duration("12h") == 43200 and parse_duration("30m") == 1800 and parse_duration("45s") == 45
    for bad in ("", "0d", "12", "d", "1x", "1d 2h", "-1d"):
        with pytest.raises(InvalidInput, match="--expires"):
            parse_duration(bad)


def test_expired_keys_are_expired(server):
    record, _ = store(server).create("old", "*", "reader", expires_in=1)
    assert not record.expired() and record.expired(time.time() + 2)


def test_cache_answers_for_at_most_a_second_then_rereads(server):
    keys, clock = store(server), Clock()
    cache = KeyCache(keys, clock=clock)
    _, key = keys.create("team-a", "*", "reader")
    digest = hash_key(key)
    assert cache.cached(digest) == (False, None)
    assert cache.fetch(digest).name == "team-a"
    assert cache.cached(digest)[0] is True
    keys.revoke("team-a")  # no announcement reaches this cache (not started)
    clock.now += 0.99
    assert cache.cached(digest)[1].name == "team-a"
    clock.now += 0.02
    assert cache.cached(digest) == (False, None) and cache.fetch(digest) is None
    assert KeyCache(keys, ttl=60)._ttl == 1.0  # never longer than a second


def test_announcements_drop_the_cache_at_once(server):
    keys = store(server)
    cache = KeyCache(keys, clock=lambda: 0.0).start()  # a frozen clock: only announcements expire entries
    try:
        _, key = keys.create("team-a", "*", "reader")
        digest = hash_key(key)
        deadline = time.monotonic() + 5
        while cache.fetch(digest) is None or not cache.cached(digest)[0]:
            assert time.monotonic() < deadline
        store(server).revoke("team-a")  # another process
        while cache.cached(digest)[0]:
            assert time.monotonic() < deadline, "revocation announcement not received"
            time.sleep(0.01)
        assert cache.fetch(digest) is None
    finally:
        cache.close()


def test_whether_keys_exist_is_cached_and_unknown_counts_as_yes(server):
    keys, clock = store(server), Clock()
    cache = KeyCache(keys, clock=clock)
    assert cache.any_keys_cached() is None and cache.fetch_any_keys() is False
    assert cache.any_keys_cached() is False
    keys.create("k", "*", "reader")
    clock.now += 1.5
    assert cache.any_keys_cached() is None and cache.fetch_any_keys() is True

    unreachable = fakeredis.FakeServer()
    unreachable.connected = False
    down = KeyCache(store(unreachable))
    assert down.fetch_any_keys() is True  # Redis never answered: fail closed
    with pytest.raises(StoreUnavailable):
        down.store.count()


def test_last_known_answer_is_used_while_redis_is_down(server):
    keys = store(server)
    _, key = keys.create("team-a", "*", "reader")
    cache = KeyCache(keys)
    assert cache.fetch(hash_key(key)).name == "team-a"
    server.connected = False
    assert cache.fetch(hash_key(key)).name == "team-a"
    assert cache.fetch(hash_key("mcpk_" + "y" * 43)) is None


def test_use_is_recorded_at_most_once_a_minute(server):
    keys = store(server)
    _, key = keys.create("team-a", "*", "reader")
    cache = KeyCache(keys)
    cache.fetch(hash_key(key))
    [(_record, first_use)] = keys.list()
    assert first_use is not None
    keys.client.hdel(keys.used, "team-a")
    cache.fetch(hash_key(key))
    [(_record, second_use)] = keys.list()
    assert second_use is None  # not rewritten within the minute
