"""``bench/run load``: clients at a fixed rate through HAProxy to three replicas, one of them lost.

Loopback only, bounded in count and time. Three ``mcp-postgres-server`` processes (streamable
HTTP, stateless, one Redis) run behind HAProxy (``mcp_tenants.devservices.replica_fleet``);
``CLIENTS`` threads, each on its own keep-alive connection, call ``query SELECT 1`` on a tenant
from the environment on a fixed schedule (a late call does not push the next one back), for
``SECONDS`` per phase:

1. steady: all replicas up;
2. drain: replica r1 gets SIGTERM (``MCP_DRAIN_SECONDS=1``: /readyz says 503, HAProxy takes it
   out, then it stops);
3. crash: replica r2 gets SIGKILL; only calls in flight on it may fail, and the client retries
   them once (``query`` is read-only, so a retry is safe; HAProxy itself retries only calls
   that never reached a replica).

A phase passes with zero errors after that one retry; the table also counts first-try failures.

First, the time a tenant change made through one replica takes to reach another (register as
read-write through r0, poll ``execute`` on r1 until it is allowed), 10 times each way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Report, Services, median, percentile
from mcp_tenants.devservices.replica_fleet import ReplicaFleet, ToolCallFailed, ToolClient

CLIENTS = 8
RATE = 100.0  # calls per second, all clients together
SECONDS = 6.0
CHANGES = 10


class Phase:
    """``CLIENTS`` threads calling at ``RATE`` for ``SECONDS``; ``during(t)`` runs once ``t`` s in."""

    def __init__(self, url: str, tenant_id: str) -> None:
        self.url = url
        self.tenant_id = tenant_id
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.retried: list[str] = []  # failed on the first try, then retried once
        self._lock = threading.Lock()

    def _client(self, offset: float, start: float) -> None:
        client = ToolClient(self.url, timeout=10)
        interval = CLIENTS / RATE
        calls = int(SECONDS / interval)  # the bound on the count
        for n in range(calls):
            due = start + offset + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.monotonic()
            for attempt in range(2):
                try:
                    client.call("query", tenant_id=self.tenant_id, sql="SELECT 1")
                except ToolCallFailed as exc:
                    with self._lock:
                        # query is read-only (readOnlyHint): retrying it once is safe.
                        (self.retried if attempt == 0 else self.errors).append(str(exc)[:120])
                else:
                    with self._lock:
                        self.latencies.append(time.monotonic() - began)
                    break
            if time.monotonic() - start > 3 * SECONDS:  # the bound on the time
                break
        client.close()

    def run(self, during: Callable[[], object] | None = None, at: float = 0.0) -> None:
        start = time.monotonic() + 0.1
        threads = [
            threading.Thread(target=self._client, args=(i * (CLIENTS / RATE) / CLIENTS, start)) for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        if during is not None:
            time.sleep(max(0.0, start + at - time.monotonic()))
            during()
        for thread in threads:
            thread.join()

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"0 ok, {len(self.errors)} errors"
        return (
            f"{len(lat)} ok, {len(self.errors)} errors ({len(self.retried)} retried); "
            f"p50 {median(lat) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms"
        )


def propagation(fleet: ReplicaFleet, register: dict[str, Any]) -> list[float]:
    """Seconds a change of access made through r0 takes to be served by r1 (2 x ``CHANGES``)."""
    writer, reader = ToolClient(fleet.replica_url(0)), ToolClient(fleet.replica_url(1))
    writer.call("register_tenant", **register, access="read-only")
    reader.call("query", tenant_id=register["tenant_id"], sql="SELECT 1")  # cached on r1 now
    delays = []

    def allowed() -> bool:
        try:
            reader.call(
                "execute", tenant_id=register["tenant_id"], sql="CREATE TABLE IF NOT EXISTS bench_moving (i int)"
            )
            return True
        except ToolCallFailed:
            return False

    for n in range(2 * CHANGES):
        want_write = n % 2 == 0
        writer.call("register_tenant", **register, access="read-write" if want_write else "read-only")
        began = time.monotonic()
        while allowed() != want_write:
            if time.monotonic() - began > 10:
                raise RuntimeError("a tenant change did not reach the other replica within 10 s")
            time.sleep(0.005)
        delays.append(time.monotonic() - began)
    return delays


async def load(services: Services, report: Report) -> None:
    """Steady, drain and crash phases through HAProxy, then change propagation."""
    await asyncio.to_thread(_load, services, report)


def _load(services: Services, report: Report) -> None:
    env = {
        **services.redis_env(30),
        **services.pg_tenant_env("bench"),
        "MCP_DRAIN_SECONDS": "1",
        "MCP_ALLOWED_HOSTS": services.pg.host,
    }
    services.redis.client(db=30).flushdb()
    pg = services.pg
    register = {"tenant_id": "moving", "host": pg.host, "port": pg.port, "database": pg.dbname}
    register.update(user=pg.user, password=pg.password)
    with ReplicaFleet(env, count=3) as fleet:
        assert fleet.proxy is not None
        delays = propagation(fleet, register)
        report.row(
            "load: tenant change reaches another replica",
            "< 1 s",
            f"p50 {median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms (n={len(delays)})",
            "-",
            max(delays) < 1.0,
        )
        report.note(f"3 replicas behind haproxy; {CLIENTS} clients, {RATE:.0f} calls/s for {SECONDS:.0f} s per phase")
        steady = Phase(fleet.url, "bench")
        steady.run()
        report.row("load: steady, 3 replicas", "0 errors", steady.summary(), "-", not steady.errors)

        drain = Phase(fleet.url, "bench")
        drain.run(lambda: fleet.terminate(1), at=SECONDS / 3)
        report.row("load: replica SIGTERM (drains)", "0 errors", drain.summary(), "-", not drain.errors)

        crash = Phase(fleet.url, "bench")
        crash.run(lambda: fleet.kill(2), at=SECONDS / 3)
        report.row(
            "load: replica SIGKILL",
            f"0 errors; retried <= {CLIENTS} (in flight)",
            crash.summary(),
            "-",
            not crash.errors and len(crash.retried) <= CLIENTS,
        )
        for error in sorted(set(crash.retried))[:3]:
            report.note(f"failed on the first try: {error}")
