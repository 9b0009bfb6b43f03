"""Redis Sentinel: the tenant store, its pub/sub listener and the CLI follow a failover.

Real processes: a master, a replica and a sentinel (``redis-server --sentinel``) with a one-second
down-after, started by the suite. Writes made while the master is being replaced are queued and
must all be on the new master afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mcp_tenants.crypto import SecretCodec
from mcp_tenants.devservices import free_ports
from mcp_tenants.devservices.base import wait_until
from mcp_tenants.devservices.sentinel_service import SentinelService
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.redisconn import make_redis_client
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore
from tests import audit
from tests.conftest import running

from .stdio import ROOT

PREFIX = "mcp:postgres:tenant:"


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelService]:
    """A master, a replica and one sentinel, all with passwords."""
    password, sentinel_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    audit.secret(password, sentinel_password)
    yield from running(SentinelService(password=password, sentinel_password=sentinel_password))  # type: ignore[type-var]


def settings_for(service: SentinelService, *, dead_first: bool = False) -> RedisSettings:
    """Settings as the servers read them; ``dead_first`` lists a sentinel that is not there first."""
    env = service.env()
    if dead_first:
        env["REDIS_SENTINELS"] = f"127.0.0.1:{free_ports(1)[0]},{env['REDIS_SENTINELS']}"
    return RedisSettings.from_env(env, default_db=0)


def tenant(tenant_id: str) -> PostgresTenant:
    return PostgresTenant(tenant_id=tenant_id, host="db.example", database="app", user="app", password="pw-123")


def open_store(service: SentinelService, **kw: object) -> TenantStore[PostgresTenant]:
    store: TenantStore[PostgresTenant] = TenantStore(
        settings_for(service, **kw), "postgres", PostgresTenant, SecretCodec(), max_backoff=0.5
    )
    assert store.connect()
    return store


def write_through(store: TenantStore[PostgresTenant], replace: Callable[[], tuple[str, int]], tag: str) -> list[str]:
    """Register tenants every 20 ms while ``replace()`` swaps the master, then 1 s more; their ids."""
    written: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            tenant_id = f"{tag}-{len(written)}"
            store.put(tenant(tenant_id))  # False means queued: it must still land
            written.append(tenant_id)
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        replace()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    return written


def assert_all_on_master(service: SentinelService, store: TenantStore[PostgresTenant], ids: list[str]) -> None:
    wait_until(lambda: not store.pending_ids(), 20, "queued writes flushed to the new master", "")
    client = service.master_client(decode_responses=True)
    try:
        assert client.info("replication")["role"] == "master"
        missing = [tid for tid in ids if not client.exists(PREFIX + tid)]
    finally:
        client.close()
    assert missing == [], f"{len(missing)} of {len(ids)} writes lost: {missing[:5]}"


@pytest.mark.parametrize("how", ["sentinel-failover", "kill-master"])
def test_writes_during_a_failover_all_land_on_the_new_master(sentinel: SentinelService, how: str) -> None:
    # A write counts once a replica confirms it (WAIT); a master streaming to no replica can only
    # be as durable as itself, so the replacement starts from a replica in sync.
    wait_until(sentinel.ready, 30, "a replica in sync", "")
    store = open_store(sentinel, dead_first=True)
    seen: list[str | None] = []
    store.watch(seen.append)
    other = open_store(sentinel)  # another process on the same Redis
    try:
        old = sentinel.master_address()

        def replace() -> tuple[str, int]:
            sentinel.failover() if how == "sentinel-failover" else sentinel.kill_master()
            return sentinel.wait_for_new_master(old)

        ids = write_through(store, replace, how)
        assert sentinel.master_address() != old
        assert len(ids) > 20
        assert_all_on_master(sentinel, store, ids)
        # The pub/sub listener followed too: a change made by the other process after the
        # failover reaches this one.
        other.put(tenant(f"{how}-late"))
        wait_until(lambda: f"{how}-late" in seen, 15, "announcement after the failover", "")
    finally:
        store.close()
        other.close()
        sentinel.settle()


def test_a_write_no_replica_confirms_is_kept_until_one_does(sentinel: SentinelService) -> None:
    # Replication is asynchronous: a write only the master holds is lost if a replica that lacks
    # it is promoted. A replica that cannot answer (stopped, not gone) leaves the write queued,
    # reported as not persisted, and it is written again once the replica confirms it.
    wait_until(sentinel.ready, 30, "a replica in sync", "")
    store = open_store(sentinel)
    master = sentinel.master_address()
    replica = next(node for node in sentinel.nodes if (node.host, node.port) != master)
    pid = replica._pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        assert store.put(tenant("unconfirmed")) is False
        assert "unconfirmed" in store.pending_ids()
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        wait_until(lambda: not store.pending_ids(), 20, "the queued write confirmed by the replica", "")
        client = replica.client(decode_responses=True)
        try:
            assert client.exists(PREFIX + "unconfirmed")  # on the replica itself
        finally:
            client.close()
    finally:
        store.close()
        sentinel.settle()


def test_cli_follows_the_master(sentinel: SentinelService) -> None:
    old = sentinel.master_address()
    sentinel.failover()
    new = sentinel.wait_for_new_master(old)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **sentinel.env()}
    entry = [{"tenant_id": "via-cli", "host": "db.example", "database": "d", "user": "u", "password": "p-cli-123"}]

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mcp_tenants.cli", "--json", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
        audit.record(f"mcp-tenants {args[0]}", done.stdout + done.stderr)
        return done

    done = cli("import", "-", stdin=json.dumps(entry))
    assert done.returncode == 0, done.stderr
    client = sentinel.node(new).client(decode_responses=True)
    try:
        assert client.exists(PREFIX + "via-cli")
    finally:
        client.close()
    done = cli("list")
    assert "via-cli" in [t["tenant_id"] for t in json.loads(done.stdout)["tenants"]]
    sentinel.settle()


def test_a_client_without_sentinels_that_answer_reports_unavailable() -> None:
    settings = RedisSettings.from_env(
        {"REDIS_SENTINELS": f"127.0.0.1:{free_ports(1)[0]}", "REDIS_SENTINEL_MASTER": "m"}, default_db=0
    )
    store: TenantStore[PostgresTenant] = TenantStore(settings, "postgres", PostgresTenant, SecretCodec())
    try:
        assert store.connect() is False
        assert store.put(tenant("queued")) is False
        assert store.pending_ids() == {"queued"}
    finally:
        store.close()
    client = make_redis_client(settings)
    client.close()  # closing never needs a sentinel
