"""What authorization and the audit trail cost per call: the server as shipped against the same
server with the open policy and no observers (``bench/open_server.py``), interleaved.

Both run ``query SELECT 1`` over stdio on an environment tenant, the client's validation off, so
the figure is the server's own path; the shipped one also writes an audit record per call to
Redis (one writer thread, pipelined) and counts metrics callbacks.
"""

from __future__ import annotations

import contextlib

from bench import contenders as c
from bench.harness import Report, Services, StdioServer, latencies, median, ms

OPEN_MODULE = "bench.open_server"
CALLS, REPS = 200, 7
#: "No measurable cost": within the noise of interleaved runs on this machine.
TARGET = 1.05


async def access(services: Services, report: Report) -> None:
    """p50 of query SELECT 1, shipped server vs open server, interleaved repetitions."""
    env = {**services.redis_env(9), **services.pg_tenant_env("bench")}
    async with contextlib.AsyncExitStack() as stack:
        shipped = await stack.enter_async_context(StdioServer(c.PG_MODULE, env, name="shipped"))
        bare = await stack.enter_async_context(StdioServer(OPEN_MODULE, env, name="no access layer"))
        servers = {"shipped": shipped, "open": bare}
        for server in servers.values():
            server.validate = False
            for _ in range(CALLS):  # warm-up: pools, caches, the function policy's prepared check
                await server.call_raw("query", {"tenant_id": "bench", "sql": "SELECT 1"})
        p50: dict[str, list[float]] = {name: [] for name in servers}
        ratios: list[float] = []
        for rep in range(REPS):
            order = list(servers) if rep % 2 == 0 else list(reversed(servers))
            this: dict[str, float] = {}
            for name in order:
                server = servers[name]

                async def call(server: StdioServer = server) -> None:
                    await server.call_raw("query", {"tenant_id": "bench", "sql": "SELECT 1"})

                this[name] = median(await latencies(call, CALLS))
                p50[name].append(this[name])
            ratios.append(this["shipped"] / this["open"])
        records = services.redis.client(db=9).xlen("mcp:postgres:audit")
    ratio = median(ratios)
    report.note(f"audit records written by the shipped server: {records}")
    report.row(
        "access: query SELECT 1, authorization + audit + metrics vs none (p50, stdio)",
        f"<= {TARGET}x",
        f"{ms(median(p50['shipped']))} vs {ms(median(p50['open']))}",
        f"{ratio:.3f}x ({(median(p50['shipped']) - median(p50['open'])) * 1e6:+.0f} us)",
        ratio <= TARGET,
    )
