"""Per-call cost and concurrency of the PostgreSQL server."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bench.harness import (
    MINIMAL_MODULE,
    PG_MODULE,
    Report,
    Services,
    StdioServer,
    latencies,
    median,
    ms,
    percentile,
    spread,
    timed,
)
from mcp_tenants.postgres import tools
from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant
from mcp_tenants.settings import Settings

SELECT_1 = {"tenant_id": "bench", "sql": "SELECT 1"}


def pg_env(services: Services, db: int = 1, **extra: str) -> dict[str, str]:
    """A PostgreSQL server with the env tenant ``bench`` and an empty Redis database."""
    return {**services.redis_env(db), **services.pg_tenant_env("bench"), **extra}


# -- 1. per-call overhead -----------------------------------------------------------------------


def select_1_in_process(pool: ConnectionPool, settings: Settings) -> None:
    """The query tool's database work for ``SELECT 1``, without MCP: the server's pool and tools.query."""
    with pool.connection() as conn:
        tools.query(
            conn,
            "SELECT 1",
            [],
            max_rows=settings.query_max_rows,
            max_bytes=settings.result_max_bytes,
            statement_timeout_ms=settings.statement_timeout_ms,
        )


async def overhead(services: Services, report: Report, *, reps: int = 5, calls: int = 150) -> None:
    """p50 of ``query SELECT 1`` vs a constant tool on a bare MCPServer vs a raw psycopg pool."""
    pool = ConnectionPool(kwargs=services.pg.conninfo(), min_size=1, max_size=1, open=True)

    def raw_select_1() -> None:
        with pool.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    async def raw() -> None:
        raw_select_1()  # blocking on purpose: the loop has nothing else to do meanwhile

    # The tool's own database work, in process and without MCP: the server's pool (check on
    # checkout, DISCARD ALL on return) and tools.query, as the query tool runs them.
    settings = Settings.from_env("postgres", {})
    config = PostgresTenant.from_env("bench", services.pg_tenant_env("bench"))
    assert config is not None
    backend = PostgresBackend(settings)
    tenant_pool = backend.open(config)

    rtt_conn = psycopg.connect(**services.pg.conninfo(), autocommit=True)

    async def round_trip() -> None:
        rtt_conn.execute("")  # the cheapest statement: one round trip, as the pool's check sends

    async def in_process() -> None:
        select_1_in_process(tenant_pool, settings)

    async with StdioServer(PG_MODULE, pg_env(services)) as pg, StdioServer(MINIMAL_MODULE, {}) as mini:
        targets: dict[str, Any] = {
            "query": lambda: pg.call("query", **SELECT_1),
            "constant": lambda: mini.call("constant"),
            "constant_async": lambda: mini.call("constant_async"),
            "in_process": in_process,
            "raw": raw,
            "round_trip": round_trip,
        }
        owner = {"query": pg, "constant": mini, "constant_async": mini}
        for call in targets.values():  # warm-up: pools, imports, caches, schema validators
            await latencies(call, 100)
        p50: dict[str, list[float]] = collections.defaultdict(list)
        p99: dict[str, list[float]] = collections.defaultdict(list)
        client_cpu: dict[str, list[float]] = collections.defaultdict(list)
        server_cpu: dict[str, list[float]] = collections.defaultdict(list)
        # Repetitions interleave the targets, so a noisy neighbour hits them alike.
        for _ in range(reps):
            for name, call in targets.items():
                server = owner.get(name)
                cpu0, scpu0 = time.process_time(), server.cpu() if server else 0.0
                samples = await latencies(call, calls)
                client_cpu[name].append((time.process_time() - cpu0) / calls)
                if server:
                    server_cpu[name].append((server.cpu() - scpu0) / calls)
                p50[name].append(median(samples))
                p99[name].append(percentile(samples, 99))
    pool.close()
    backend.close(tenant_pool)
    rtt_conn.close()

    for name in targets:
        extra = f"; client CPU {ms(median(client_cpu[name]))}/call"
        if name in server_cpu:
            extra += f"; server CPU {ms(median(server_cpu[name]))}/call"
        report.note(f"{name:15} p50 {spread(p50[name])}; p99 {ms(median(p99[name]))}{extra}")

    def ratio(a: str, b: str) -> float:
        return median([x / y for x, y in zip(p50[a], p50[b], strict=True)])

    q_min, q_raw, min_raw = ratio("query", "constant"), ratio("query", "raw"), ratio("constant", "raw")
    report.row(
        "1: query SELECT 1 vs MCPServer constant tool (p50, stdio)",
        "<= 1.3x",
        f"{ms(median(p50['query']))} vs {ms(median(p50['constant']))}",
        f"{q_min:.2f}x",
        q_min <= 1.3,
    )
    report.row(
        "1: query SELECT 1 vs raw psycopg pool SELECT 1 (p50)",
        "<= 2.5x",
        f"{ms(median(p50['query']))} vs {ms(median(p50['raw']))}",
        f"{q_raw:.2f}x",
        q_raw <= 2.5,
    )
    report.row(
        "1: floor: MCPServer constant tool vs raw psycopg (no IPC)",
        "(floor)",
        f"{ms(median(p50['constant']))} vs {ms(median(p50['raw']))}",
        f"{min_raw:.2f}x",
        None,
    )
    in_proc = ratio("in_process", "raw")
    report.row(
        "1: query's database work in process (pool + tools.query) vs raw",
        "(info)",
        f"{ms(median(p50['in_process']))} vs {ms(median(p50['raw']))}",
        f"{in_proc:.2f}x",
        None,
    )
    hop = median(p50["constant"]) - median(p50["constant_async"])
    report.row(
        "1: SDK thread hop: constant (sync, thread) - constant_async (event loop)",
        "(info)",
        f"{ms(median(p50['constant']))} - {ms(median(p50['constant_async']))}",
        ms(hop),
        None,
    )
    report.row(
        "1: one PostgreSQL round trip in process (conn.execute(''))",
        "(info)",
        ms(median(p50["round_trip"])),
        f"query's DB work = {ratio('in_process', 'round_trip'):.1f} of them",
        None,
    )
    report.row(
        "1: constant tool: bench client CPU per call",
        "(info)",
        f"{ms(median(client_cpu['constant']))} of {ms(median(p50['constant']))}",
        f"{median(client_cpu['constant']) / median(p50['constant']):.0%} of p50",
        None,
    )
    report.row(
        "1: server CPU per call: query vs constant",
        "(info)",
        f"{ms(median(server_cpu['query']))} vs {ms(median(server_cpu['constant']))}",
        f"{median(server_cpu['query']) / median(server_cpu['constant']):.2f}x",
        None,
    )


# -- 2. concurrency -----------------------------------------------------------------------------


def sleep_call(server: StdioServer, seconds: float, tenant: str = "bench") -> Any:
    return server.call("query", tenant_id=tenant, sql=f"SELECT pg_sleep({seconds})")


async def gather_sleeps(server: StdioServer, count: int, seconds: float) -> float:
    """Seconds for ``count`` concurrent ``pg_sleep(seconds)`` calls on one client session."""
    return await timed(lambda: asyncio.gather(*(sleep_call(server, seconds) for _ in range(count))))


async def concurrency(services: Services, report: Report, *, reps: int = 3) -> None:
    """8 sleeps in flight vs 1; 32 with 16 worker threads; a slow tenant next to a fast one."""
    sleep = 0.5
    async with StdioServer(PG_MODULE, pg_env(services)) as server:
        for _ in range(2):  # warm-up: grow the pool to 8 connections
            await gather_sleeps(server, 8, 0.2)
        one = [await gather_sleeps(server, 1, sleep) for _ in range(reps)]
        eight = [await gather_sleeps(server, 8, sleep) for _ in range(reps)]
    r8 = median(eight) / median(one)
    report.note(f"1 x pg_sleep({sleep}): {spread(one)}; 8 in flight: {spread(eight)}")
    report.row(
        "2: 8 x pg_sleep(0.5) in flight vs 1 (defaults)",
        "<= 1.3x",
        f"{ms(median(eight))} vs {ms(median(one))}",
        f"{r8:.2f}x",
        r8 <= 1.3,
    )

    env = pg_env(services, MCP_WORKER_THREADS="16", MCP_POOL_MAX_SIZE="40")
    async with StdioServer(PG_MODULE, env) as server:
        for _ in range(2):
            await gather_sleeps(server, 32, 0.2)
        one = [await gather_sleeps(server, 1, sleep) for _ in range(reps)]
        many = [await gather_sleeps(server, 32, sleep) for _ in range(reps)]
    r32 = median(many) / median(one)
    report.note(
        f"16 workers, pool 40: 1 call {spread(one)}; 32 in flight: {spread(many)}; "
        f"effective parallelism {32 * sleep / median(many):.1f}"
    )
    report.row(
        "2: 32 x pg_sleep(0.5), 16 workers, pool 40, vs 1",
        "~2x (1.8..2.3)",
        f"{ms(median(many))} vs {ms(median(one))}",
        f"{r32:.2f}x",
        1.8 <= r32 <= 2.3,
    )

    await _slow_tenant(services, report)


async def _slow_tenant(services: Services, report: Report) -> None:
    env = {**pg_env(services), **services.pg_tenant_env("slow")}
    async with StdioServer(PG_MODULE, env) as server:
        for _ in range(2):
            await gather_sleeps(server, 8, 0.1)  # the fast tenant's pool
            await asyncio.gather(*(sleep_call(server, 0.1, "slow") for _ in range(8)))
        idle = await latencies(lambda: server.call("query", **SELECT_1), 40)
        results = {}
        for slow_calls, hold in ((8, 3.0), (16, 2.0)):
            sleeps = [asyncio.ensure_future(sleep_call(server, hold, "slow")) for _ in range(slow_calls)]
            await asyncio.sleep(0.4)  # let them reach the database
            busy = await latencies(lambda: server.call("query", **SELECT_1), 5 if slow_calls > 8 else 30)
            await asyncio.gather(*sleeps)
            results[slow_calls] = busy
    base = median(idle)
    for slow_calls, busy in results.items():
        what = "saturating its pool of 8" if slow_calls == 8 else "8 running + 8 queued for its pool"
        report.note(
            f"{slow_calls} slow calls ({what}): fast tenant SELECT 1 p50 {ms(median(busy))}, "
            f"first {ms(busy[0])}, max {ms(max(busy))}; idle p50 {ms(base)}"
        )
        # With 8 slow calls the p50 is the figure; with 16 every worker thread is taken, so the
        # first fast call (sent while they all are) is the one that shows starvation.
        value, label = (median(busy), "p50") if slow_calls == 8 else (busy[0], "first call")
        report.row(
            f"2: other tenant's SELECT 1 ({label}) while slow tenant has {slow_calls} sleeps in flight",
            "not starved (<= 2x idle p50)",
            f"{ms(value)} vs {ms(base)} idle",
            f"{value / base:.2f}x",
            value / base <= 2,
        )
