"""Sentinel settings and the failover watch, without a Redis."""

from __future__ import annotations

import pytest
import redis

from mcp_tenants.devservices import free_ports
from mcp_tenants.errors import InvalidInput
from mcp_tenants.redisconn import FailoverWatch, FollowingPool, MasterChanging, SentinelRedis, make_redis_client
from mcp_tenants.settings import RedisSettings, parse_sentinels


def sentinel_env(**extra: str) -> dict[str, str]:
    """Sentinels that nobody listens on, on loopback: clients built here never reach anything."""
    ports = free_ports(2)
    return {"REDIS_SENTINELS": f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", "REDIS_SENTINEL_MASTER": "m", **extra}


def test_sentinels_are_parsed_with_default_port_and_ipv6() -> None:
    assert parse_sentinels("a:1, b ,[::1]:3,") == (("a", 1), ("b", 26379), ("::1", 3))
    env = {
        "REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b:26380,[::1]:26381",
        "REDIS_SENTINEL_MASTER": "m",
        "REDIS_SENTINEL_PASSWORD": "s3cret-sentinel",
    }
    settings = RedisSettings.from_env(env, default_db=1)
    assert settings.sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert settings.sentinel_master == "m" and settings.db == 1
    assert settings.describe() == "sentinel master 'm' via 10.0.0.1:26379,sentinel-b:26380,::1:26381"
    assert "s3cret" not in settings.describe()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "a:99999", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "u@a:1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({**sentinel_env(), "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_SENTINELS"),
    ],
)
def test_bad_sentinel_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        RedisSettings.from_env(env, default_db=0)


def test_a_sentinel_client_takes_db_credentials_and_tls_from_the_url() -> None:
    settings = RedisSettings.from_env(
        sentinel_env(REDIS_URL="rediss://app:pw-url-123@ignored:1/5", REDIS_SENTINEL_PASSWORD="spw-1234"), default_db=0
    )
    client = make_redis_client(settings)
    try:
        assert isinstance(client, SentinelRedis)
        pool = client.connection_pool
        assert isinstance(pool, FollowingPool)
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (5, "app", "pw-url-123")
        assert "SSL" in pool.connection_class.__name__
        assert client._sentinel is not None
        sentinel_kwargs = client._sentinel.sentinels[0].connection_pool.connection_kwargs
        assert sentinel_kwargs["password"] == "spw-1234"
    finally:
        client.close()


def test_the_watch_fences_on_selected_replica_and_lifts_on_switch_or_abort() -> None:
    watch = FailoverWatch(("k",), "mymaster", (), {})
    other = "slave 127.0.0.1:2 127.0.0.1 2 @ othermaster 127.0.0.1 1"
    watch.on_event("+selected-slave", other)
    assert not watch.fenced()
    watch.on_event("+selected-slave", "slave 127.0.0.1:2 127.0.0.1 2 @ mymaster 127.0.0.1 1")
    assert watch.fenced()
    watch.on_event("+switch-master", "mymaster 127.0.0.1 1 127.0.0.1 2")
    assert not watch.fenced()
    watch.on_event("+selected-slave", "slave 127.0.0.1:2 127.0.0.1 2 @ mymaster 127.0.0.1 1")
    watch.on_event("-failover-abort-no-good-slave", "master mymaster 127.0.0.1 1")
    assert not watch.fenced()


def test_a_fenced_pool_refuses_commands_as_a_connection_error() -> None:
    settings = RedisSettings.from_env(sentinel_env(), default_db=0)
    client = make_redis_client(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, FollowingPool)
        pool.watch.on_event("+selected-slave", "slave h:2 h 2 @ m h 1")
        with pytest.raises(redis.ConnectionError) as info:
            client.ping()
        assert isinstance(info.value, MasterChanging)
        pool.watch.on_event("+switch-master", "m h 1 h 2")
        assert not pool.watch.fenced()
    finally:
        client.close()
