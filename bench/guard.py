"""The read-only guard's own cost per call, in process: parse (libpg_query) and references; and
``tools.query`` with the check and without it, on a pool built as the server builds it.

The check runs in PostgreSQL, in the round trip that sends BEGIN: a temporary view of the
statement and one catalog query (``resolve``). What it adds per call is measured here as the
difference between ``query`` with the function policy and ``query`` without it (still READ
ONLY), with the transaction ids and the WAL a call costs the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from bench.harness import Report, Services, median, ms
from mcp_tenants.postgres import guard as pg_guard
from mcp_tenants.postgres import tools
from mcp_tenants.postgres.policy import FunctionPolicy
from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant
from mcp_tenants.settings import Settings

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


#: query workloads of the check: SELECT 1 is not checked (nothing to resolve), the others are.
QUERIES = {
    "SELECT 1": "SELECT 1",
    "1,000 rows of a table": "SELECT * FROM guard_rows ORDER BY id LIMIT 1000",
    "1,000-row query": STATEMENTS["1,000-row query"],
}
TABLE_SQL = """CREATE TABLE IF NOT EXISTS guard_rows AS
SELECT g AS id, 'name-' || g AS name, md5(g::text) AS hash, g * 1.5::float8 AS amount
FROM generate_series(1, 10000) g"""


async def guard(services: Services, report: Report) -> None:
    """Parse + statement rules + the check's parameters, per call, for five statements; then
    ``query`` with and without the check."""
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

    _query_check(services, report)


def _query_check(services: Services, report: Report) -> None:
    pg = services.pg
    pg.execute("DROP DATABASE IF EXISTS bench_guard")
    pg.execute("CREATE DATABASE bench_guard")
    info = pg.conninfo(dbname="bench_guard")
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(TABLE_SQL)
    config = PostgresTenant(
        tenant_id="bench", host=pg.host, port=pg.port, database="bench_guard", user=pg.user, password=pg.password
    )
    backend = PostgresBackend(Settings.from_env("postgres", {}, pool_max_size=1))
    pool = backend.open(config)
    watcher = psycopg.connect(**info, autocommit=True)

    def counters() -> tuple[int, str]:
        row = watcher.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_current_wal_lsn()")
        xid, lsn = row.fetchone()  # type: ignore[misc]
        return int(xid), str(lsn)

    try:
        for name, text in QUERIES.items():
            costs = {}
            for label, checked in (("unchecked", None), ("checked", tools.DEFAULT_POLICY)):

                def call(text: str = text, checked: FunctionPolicy | None = checked) -> None:
                    with pool.connection() as conn:
                        options = {"max_rows": 1000, "max_bytes": 1 << 20, "statement_timeout_ms": 30_000}
                        tools.query(conn, text, [], policy=checked, **options)

                call()
                xid, lsn = counters()
                calls = 0

                def counted(call: Callable[[], None] = call) -> None:
                    nonlocal calls
                    calls += 1
                    call()

                costs[label] = _per_call_ms(counted)
                xid_after, lsn_after = counters()
                wal = watcher.execute("SELECT %s::pg_lsn - %s::pg_lsn", [lsn_after, lsn]).fetchone()[0]  # type: ignore[index]
                if label == "checked":
                    extra = costs["checked"] - costs["unchecked"]
                    spent = f"{(xid_after - xid) / calls:.2f} xid, {float(wal) / calls:.0f} B WAL"
                    report.row(
                        f"guard: query of {name}, the check's cost per call",
                        "SELECT 1: none; else one transaction id",
                        f"+{extra:.2f} ms ({costs['checked']:.2f} vs {costs['unchecked']:.2f} ms), {spent}",
                        "-",
                        (xid_after - xid) == 0 if name == "SELECT 1" else None,
                    )
    finally:
        watcher.close()
        backend.close(pool)
        pg.execute("DROP DATABASE IF EXISTS bench_guard WITH (FORCE)")
