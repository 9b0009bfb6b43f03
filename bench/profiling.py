"""Where a ``query SELECT 1`` spends its time: the statements it sends, its database work under
cProfile, and the server's CPU under py-spy (optional: the profile is skipped without py-spy)."""

from __future__ import annotations

import asyncio
import collections
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from bench.calls import SELECT_1, pg_env, select_1_in_process
from bench.harness import PG_MODULE, Report, Services, StdioServer, latencies, ms
from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant
from mcp_tenants.settings import Settings

# -- 6. profile ---------------------------------------------------------------------------------


def py_spy() -> str | None:
    """py-spy next to this Python, on PATH, or named by $PY_SPY; None when not installed."""
    return (
        os.environ.get("PY_SPY")
        or shutil.which("py-spy", path=os.path.dirname(sys.executable))
        or shutil.which("py-spy")
    )


async def profile(services: Services, report: Report, *, seconds: int = 10) -> None:
    """Statements each ``query SELECT 1`` sends, its database work under cProfile, and where the
    server's CPU goes (py-spy)."""
    await statement_trace(services, report)
    handler_profile(services, report)
    spy = py_spy()
    if spy is None:
        report.note("py-spy profile skipped: py-spy is not installed (pip install py-spy)")
        return
    out = tempfile.mktemp(prefix="bench-pyspy-", suffix=".txt")
    async with StdioServer(PG_MODULE, pg_env(services)) as server:
        await latencies(lambda: server.call("query", **SELECT_1), 200)
        # --gil: only samples holding the GIL, i.e. Python CPU time; py-spy's idle detection
        # counts threads blocked in epoll or a Condition as busy otherwise.
        proc = subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(server.pid),
                "-r",
                "500",
                "-f",
                "raw",
                "-t",
                "--gil",
                "--nonblocking",
                "-d",
                str(seconds),
                "-o",
                out,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)  # attach
        count = 0
        cpu0 = server.cpu()
        began = time.monotonic()
        while time.monotonic() - began < seconds - 2:
            await server.call("query", **SELECT_1)
            count += 1
        cpu = (server.cpu() - cpu0) / count
        _, err = await asyncio.to_thread(proc.communicate)
    if proc.returncode != 0 or not os.path.exists(out):
        report.note(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
        return
    with open(out, encoding="utf-8") as f:
        stacks = _parse_collapsed(f.read())
    keep = os.environ.get("BENCH_PROFILE_OUT")  # collapsed stacks, for flamegraph.pl or speedscope
    if keep:
        shutil.move(out, keep)
        report.note(f"raw py-spy stacks kept in {keep}")
    else:
        os.unlink(out)
    report.note(
        f"{count} calls under py-spy (500 Hz, --gil, --nonblocking), server CPU {ms(cpu)}/call; "
        f"{sum(n for _, n in stacks)} samples"
    )
    for line in summarize_profile(stacks):
        report.note(line)


async def statement_trace(services: Services, report: Report) -> None:
    """The statements one ``query SELECT 1`` sends to PostgreSQL (log_statement = all)."""
    pg = services.pg
    if not pg.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_traced'"):
        pg.execute("CREATE DATABASE bench_traced")
        pg.execute("ALTER DATABASE bench_traced SET log_statement = 'all'")
    log = os.path.join(pg.tmpdir or "", "postgres.log")
    env = {**pg_env(services), "POSTGRES_TENANT_BENCH_DATABASE": "bench_traced"}
    async with StdioServer(PG_MODULE, env) as server:
        for _ in range(3):
            await server.call("query", **SELECT_1)
        await asyncio.sleep(0.2)
        offset = os.path.getsize(log)
        await server.call("query", **SELECT_1)
        await asyncio.sleep(0.3)  # the log collector writes asynchronously
    with open(log, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        lines = [
            line.split("LOG:", 1)[1].strip() for line in f if " LOG:  statement: " in line or " LOG:  execute " in line
        ]
    report.note(f"statements one query SELECT 1 sends ({len(lines)}; as logged by PostgreSQL):")
    for line in lines:
        report.note(f"    {line[:110]}")
    report.row(
        "6: PostgreSQL statements per query SELECT 1 (raw pool: BEGIN, SELECT, ROLLBACK)",
        "(info)",
        str(len(lines)),
        "-",
        None,
    )


def handler_profile(services: Services, report: Report, calls: int = 400) -> None:
    """cProfile of the query tool's database work in this process: the server's pool (check on
    checkout, reset on return) and ``tools.query``, as in the ``in_process`` figure above."""
    settings = Settings.from_env("postgres", {})
    config = PostgresTenant.from_env("bench", services.pg_tenant_env("bench"))
    assert config is not None
    backend = PostgresBackend(settings)
    pool = backend.open(config)

    def one() -> None:
        select_1_in_process(pool, settings)

    for _ in range(100):
        one()
    began, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        one()
    wall, cpu = (time.perf_counter() - began) / calls, (time.process_time() - cpu0) / calls
    profiler = cProfile.Profile()

    def many() -> None:
        for _ in range(calls):
            one()

    profiler.runcall(many)
    backend.close(pool)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    waits = sum(v[1] for (path, _l, fn), v in stats.items() if fn == "wait" and path.endswith("psycopg/connection.py"))
    report.note(
        f"in process, pool + tools.query: {ms(wall)} wall, {ms(cpu)} CPU per call; "
        f"{waits / calls:.0f} psycopg waits (server round trips) per call; under cProfile, "
        "share of the call (inclusive):"
    )
    wanted = [
        (path, line, fn, v[3])
        for (path, line, fn), v in stats.items()
        if ("mcp_tenants/" in path and fn not in ("<lambda>", "<listcomp>"))
        or (path.endswith("psycopg_pool/pool.py") and fn in ("_check_connection", "putconn", "getconn"))
        or (path.endswith("psycopg/_server_cursor.py") and fn in ("execute", "close", "fetchmany"))
    ]
    for path, line, fn, cum in sorted(wanted, key=lambda w: -w[3])[:14]:
        where = path.split("site-packages/")[-1].split("/work/main/")[-1]
        report.note(f"    {cum / total:6.1%}  {fn} ({where}:{line})")


def _parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _function(frame: str) -> str:
    """``name (path:line)`` → ``name (path)``: aggregate a function over its lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _area(frame: str) -> str:
    where = frame.partition(" (")[2]
    return where.split("/", 1)[0].split(":", 1)[0].removesuffix(".py") or "?"


def _thread(code: list[str]) -> str:
    """The thread a stack ran on; a partial stack (py-spy --nonblocking) by the code it shows."""
    if any("run_forever" in f for f in code):
        return "event loop"
    if any("_worker (concurrent" in f for f in code):
        return "mcp-tool workers (handlers)"
    if any("WorkerThread.run (anyio" in f for f in code):
        return "anyio threads (SDK stdin/stdout file I/O)"
    if any("psycopg_pool" in f for f in code):
        return "psycopg_pool threads"
    if any(f.partition(" (")[2].startswith(("psycopg/", "mcp_tenants/")) for f in code):
        return "mcp-tool workers (handlers)"
    if any(f.partition(" (")[2].startswith(("mcp/", "anyio/", "asyncio/", "pydantic/")) for f in code):
        return "event loop"
    return "other"


def _children(stacks: list[tuple[list[str], int]], parent: str, total: int, top: int = 8) -> list[str]:
    """Inclusive shares of what ``parent`` (a function prefix) calls directly."""
    below: collections.Counter[str] = collections.Counter()
    for frames, n in stacks:
        for i, frame in enumerate(frames):
            if frame.startswith(parent):
                below[_function(frames[i + 1]) if i + 1 < len(frames) else "(self)"] += n
                break
    return [f"      {n / total:6.1%}  {fn}" for fn, n in below.most_common(top)]


def code_stacks(stacks: list[tuple[list[str], int]]) -> Iterator[tuple[list[str], str, int]]:
    """Each py-spy stack without its thread and process frames, with the thread it ran on and
    its sample count (stacks with no code left are skipped)."""
    for frames, n in stacks:
        code = [f for f in frames if not f.startswith(("thread", "process"))]
        if code:
            yield code, _thread(code), n


def summarize_profile(stacks: list[tuple[list[str], int]], top: int = 12) -> list[str]:
    """Shares by thread and package, breakdowns of the event loop and the handler, top self time."""
    total = sum(n for _, n in stacks) or 1
    threads: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    loop: collections.Counter[str] = collections.Counter()
    for code, thread, n in code_stacks(stacks):
        threads[thread] += n
        self_time[_function(code[-1])] += n
        areas[_area(code[-1])] += n
        if thread == "event loop":
            # What the loop was running: the first frame below the task/callback machinery.
            inner = [
                f
                for f in code
                if not f.startswith(
                    (
                        "<module>",
                        "_run_module",
                        "_run_code",
                        "main (",
                        "serve (",
                        "TenantServer.run",
                        "run (",
                        "Runner.",
                        "BaseEventLoop.",
                        "Handle._run",
                        "TaskHandle._run_coro",
                        "MCPServer.run_stdio",
                        "Server.run (",
                        "Context.run",
                    )
                )
            ]
            loop[_function(inner[0]) if inner else "(loop machinery)"] += n
    lines = [
        "CPU (GIL-holding samples) by thread: " + ", ".join(f"{k} {v / total:.0%}" for k, v in threads.most_common())
    ]
    lines.append("self time by package: " + ", ".join(f"{k} {v / total:.0%}" for k, v in areas.most_common(9)))
    lines.append("event loop, by what it runs (inclusive):")
    lines += [f"      {n / total:6.1%}  {fn}" for fn, n in loop.most_common(8)]
    lines.append("the query handler (worker thread), inclusive: add_tools.<locals>.query calls")
    lines += _children(stacks, "add_tools.<locals>.query", total)
    lines.append("  and tools.query calls")
    lines += _children(stacks, "query (mcp_tenants/postgres/tools.py", total)
    lines.append("top self time (function, % of CPU samples):")
    lines += [f"      {n / total:6.1%}  {fn}" for fn, n in self_time.most_common(top)]
    return lines
