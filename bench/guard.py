"""The read-only guard's own cost per call, in process: parse (libpg_query) and references.

The function policy's catalog check runs in PostgreSQL, in the round trip that sends BEGIN; its
server time is part of the query figures of ``bench.calls``, not of these.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.harness import Report, Services, median, ms
from mcp_tenants.postgres import guard as pg_guard
from mcp_tenants.postgres.policy import FunctionPolicy

STATEMENTS = {
    "SELECT 1": "SELECT 1",
    "1,000-row query": "SELECT g, 'row ' || g AS name, g * 1.5 AS score FROM generate_series(1, 1000) AS g",
    "1 MB statement": "SELECT count(*) FROM t WHERE i IN (" + ",".join(str(i) for i in range(150_000)) + ")",
    # The worst shapes per byte: a tree 100,000 levels deep, and 120,000 distinct names.
    "100,000-deep chain": "SELECT " + "+".join(["1"] * 100_000),
    "1 MB of names": "SELECT " + ",".join(f"f{i}(c{i})" for i in range(60_000)) + " FROM t",
}
#: What a check may cost at most, per statement (the guard must not make query slower).
TARGETS_MS = {
    "SELECT 1": 0.2,
    "1,000-row query": 0.5,
    "1 MB statement": 150.0,
    "100,000-deep chain": 500.0,
    "1 MB of names": 1000.0,
}


def _per_call_ms(fn: Callable[[], object], *, seconds: float = 1.0) -> float:
    """Median wall time of ``fn`` over batches that take about ``seconds`` in all."""
    fn()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return median(samples)


async def guard(services: Services, report: Report) -> None:
    """Parse + statement rules + the check's parameters, per call, for three statements."""
    del services  # in process: no service needed
    policy = FunctionPolicy.from_names()
    for name, text in STATEMENTS.items():

        def check(text: str = text) -> None:
            statement = pg_guard.check_query(text)
            if statement.refs:
                policy.params(statement.refs)

        cost = _per_call_ms(check)
        report.row(
            f"guard: check of {name} ({len(text):,} chars)",
            f"<= {TARGETS_MS[name]} ms",
            ms(cost / 1000) if cost >= 1 else f"{cost * 1000:.0f} us",
            "-",
            cost <= TARGETS_MS[name],
        )
