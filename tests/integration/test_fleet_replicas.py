"""Three server replicas (streamable HTTP, stateless) behind a real HAProxy, on Redis through Sentinel.

HAProxy checks each replica's ``/readyz``; a tool call goes to any replica. A tenant changed
through one replica must reach the others, also across a Redis failover; a replica that dies may
fail only the calls that were in flight on it; a replica stopped with SIGTERM drains first and
fails none.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mcp_tenants.devservices import ServiceUnavailable
from mcp_tenants.devservices.replica_fleet import ReplicaFleet, ToolCallFailed, ToolClient
from mcp_tenants.devservices.sentinel_service import SentinelService
from tests import audit
from tests.conftest import running, service_unavailable

from .tenants import pg_register_args

REPLICAS = 3


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelService]:
    """Redis as production runs it: a master, a replica and a sentinel, all with passwords."""
    password, sentinel_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    audit.secret(password, sentinel_password)
    yield from running(SentinelService(password=password, sentinel_password=sentinel_password))  # type: ignore[type-var]


@pytest.fixture(scope="module")
def fleet(sentinel: SentinelService) -> Iterator[ReplicaFleet]:
    """Three replicas on Redis through Sentinel, behind HAProxy; a replica drains for 1 s on SIGTERM."""
    env = {**sentinel.env(), "MCP_ALLOWED_HOSTS": "127.0.0.1", "MCP_DRAIN_SECONDS": "2"}
    fleet = ReplicaFleet(env, count=REPLICAS)
    try:
        fleet.start()
    except ServiceUnavailable as exc:  # e.g. no haproxy: fail under CI, else skip
        service_unavailable(f"replica fleet unavailable: {exc}")
    try:
        yield fleet
    finally:
        audit.record("fleet replica logs", fleet.logs())
        fleet.stop()


def eventually(check: Callable[[], bool], seconds: float = 10.0, fleet: ReplicaFleet | None = None) -> float:
    """Poll ``check`` until true (a hang guard; ``bench load`` measures the delay); seconds taken."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > seconds:
            logs = fleet.logs()[-4000:] if fleet is not None else ""
            raise AssertionError(f"not reached within {seconds} s\n{logs}")
        time.sleep(0.02)
    return time.monotonic() - began


def fails(client: ToolClient, name: str, **arguments: Any) -> str:
    try:
        client.call(name, **arguments)
    except ToolCallFailed as exc:
        return str(exc)
    return ""


def test_a_tenant_changed_through_one_replica_reaches_the_others_across_a_failover(
    fleet: ReplicaFleet, sentinel: SentinelService, pg_database: Any
) -> None:
    first, *others = [ToolClient(fleet.replica_url(n)) for n in range(REPLICAS)]
    first.call("register_tenant", **pg_register_args(pg_database, tenant_id="shared"))
    for other in others:  # found on first use, and now cached by each replica
        assert other.call("query", tenant_id="shared", sql="SELECT 1")["rows"] == [[1]]
        assert "read-only" in fails(other, "execute", tenant_id="shared", sql="CREATE TABLE IF NOT EXISTS t (i int)")
    # The master is replaced between the first registration and the change: every replica and
    # its pub/sub listener follow.
    old = sentinel.master_address()
    sentinel.failover()
    sentinel.wait_for_new_master(old)
    first.call("register_tenant", **pg_register_args(pg_database, tenant_id="shared", access="read-write"))
    master = sentinel.master_client(decode_responses=True)
    try:  # written at once, or queued during the switch and written soon after: on the new master
        eventually(lambda: json.loads(master.get("mcp:postgres:tenant:shared"))["access"] == "read-write", fleet=fleet)
    finally:
        master.close()
    for other in others:
        eventually(
            lambda o=other: not fails(o, "execute", tenant_id="shared", sql="CREATE TABLE IF NOT EXISTS t (i int)")
        )
    first.call("remove_tenant", tenant_id="shared")
    for other in others:
        eventually(
            lambda o=other: "unknown tenant" in fails(o, "query", tenant_id="shared", sql="SELECT 1"), fleet=fleet
        )
    # Through the load balancer every call agrees, whichever replica answers it.
    balanced = ToolClient(fleet.url)
    assert all(balanced.call("list_tenants")["tenants"] == [] for _ in range(2 * REPLICAS))
    sentinel.settle()


class Load:
    """``clients`` threads calling ``query`` through the load balancer until stopped."""

    def __init__(self, fleet: ReplicaFleet, tenant_id: str, clients: int = 4) -> None:
        self.ok = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(fleet.url, tenant_id)) for _ in range(clients)]

    def _run(self, url: str, tenant_id: str) -> None:
        client = ToolClient(url, timeout=10)
        while not self._stop.is_set():
            try:
                client.call("query", tenant_id=tenant_id, sql="SELECT 1")
            except ToolCallFailed as exc:
                with self._lock:
                    self.errors.append(str(exc))
            else:
                with self._lock:
                    self.ok += 1
            time.sleep(0.01)
        client.close()

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def count(self) -> int:
        with self._lock:
            return self.ok + len(self.errors)


def test_a_key_and_its_grant_reach_every_replica_and_its_revocation_too(
    fleet: ReplicaFleet, sentinel: SentinelService, pg_database: Any
) -> None:
    """An API key made with the CLI works on every replica, with its grant, within a second of
    its creation, and stops working on every replica within a second of its revocation."""
    for tenant_id in ("fleet_a", "fleet_b", "other"):
        ToolClient(fleet.url).call("register_tenant", **pg_register_args(pg_database, tenant_id=tenant_id))
    env = {**os.environ, **sentinel.env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mcp_tenants.cli", *args], capture_output=True, text=True, env=env, timeout=60
        )
        audit.record(f"mcp-tenants {args[0]}", done.stderr)
        assert done.returncode == 0, done.stderr
        return done

    key = (
        cli("key", "create", "fleet-reader", "--tenants", "fleet_*", "--role", "reader").stdout.strip().splitlines()[-1]
    )
    audit.secret(key)
    replicas = [ToolClient(fleet.replica_url(n), token=key) for n in range(REPLICAS)]

    def listed(client: ToolClient) -> list[str] | None:
        try:
            return [t["tenant_id"] for t in client.call("list_tenants")["tenants"]]
        except ToolCallFailed:
            return None

    for client in replicas:  # every replica takes the new key, with its grant
        eventually(lambda client=client: listed(client) == ["fleet_a", "fleet_b"], 5, fleet)
    cli("key", "revoke", "fleet-reader")
    for client in replicas:  # and every replica refuses it once revoked
        eventually(lambda client=client: listed(client) is None, 5, fleet)
    assert "HTTP 401" in fails(replicas[0], "list_tenants")
    # With no key left, the loopback fleet takes anonymous callers again (the tests below).
    eventually(lambda: listed(ToolClient(fleet.url)) is not None, 5, fleet)


def test_a_replica_stopped_with_sigterm_drains_and_no_call_fails(fleet: ReplicaFleet, pg_database: Any) -> None:
    ToolClient(fleet.url).call("register_tenant", **pg_register_args(pg_database, tenant_id="drain"))
    assert fleet.proxy is not None
    with Load(fleet, "drain") as load:
        eventually(lambda: load.count() > 20, 30)
        code = fleet.terminate(1)
        fleet.proxy.wait_states({"r1": "DOWN"})
        before = load.count()
        eventually(lambda: load.count() > before + 20, 30)
    assert code == 0, fleet.logs()[-6000:]
    assert load.errors == []
    assert "draining" in fleet.logs()


def test_a_killed_replica_fails_only_the_calls_in_flight_on_it(fleet: ReplicaFleet, pg_database: Any) -> None:
    ToolClient(fleet.url).call("register_tenant", **pg_register_args(pg_database, tenant_id="crash"))
    assert fleet.proxy is not None
    clients = 4
    with Load(fleet, "crash", clients) as load:
        eventually(lambda: load.count() > 20, 30)
        fleet.kill(2)
        fleet.proxy.wait_states({"r2": "DOWN"})
        failed_by_now = len(load.errors)
        before = load.count()
        eventually(lambda: load.count() > before + 40, 30)
    # Each client has at most one call in flight, on the replica that died or elsewhere.
    assert len(load.errors) <= clients, load.errors
    assert len(load.errors) == failed_by_now  # nothing failed once HAProxy had taken it out
    assert load.ok > 60
