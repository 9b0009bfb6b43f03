"""Where one call's time goes, per workload: server CPU by function (py-spy on our server), the
client's CPU by function with its validation on and off (cProfile in this process), bytes on the
stdio wire, and round trips and bytes between our server and its backend (PostgreSQL or S3).

Round trips are counted by a TCP relay in this process between the server and the backend: one
round trip is one turn of the conversation (the server sends after having received). The relay
adds latency, so no time is taken from these runs except CPU.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import cProfile
import os
import pstats
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench import contenders as c
from bench.harness import MINIO_MODULE, Report, Services, StdioServer, WireCounter, ms
from bench.profiling import _area, _function, _parse_collapsed, code_stacks, py_spy
from bench.versus import LIST_BUCKET, LIST_KEYS, S3_OURS, fill_list_bucket, kb

# -- a counting TCP relay -----------------------------------------------------------------------


class Relay:
    """Forwards 127.0.0.1:port to a backend and counts turns and bytes, on its own thread and loop."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self.turns = 0
        self.sent = 0  # server → backend
        self.received = 0  # backend → server
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-relay", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        last = ["down"]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(1 << 16):
                    if upstream:
                        if last[0] == "down":
                            self.turns += 1
                        last[0] = "up"
                        self.sent += len(data)
                    else:
                        last[0] = "down"
                        self.received += len(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def snapshot(self) -> tuple[int, int, int]:
        return self.turns, self.sent, self.received

    def __enter__(self) -> Relay:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# -- profiles -----------------------------------------------------------------------------------


@contextlib.contextmanager
def spy(pid: int, out: str) -> Iterator[subprocess.Popen[bytes] | None]:
    """py-spy recording ``pid`` (500 Hz, GIL-holding samples only) until the block ends."""
    binary = py_spy()
    if binary is None:
        yield None
        return
    args = [binary, "record", "-p", str(pid), "-r", "500", "-f", "raw", "-t", "--gil", "--nonblocking", "-o", out]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attach
    try:
        yield proc
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        proc.wait(30)


#: Frames on every stack of a thread (the chain from ``main`` to the request handler): listing
#: them inclusive says nothing.
_CHAIN = (
    "<module>",
    "main (",
    "serve (",
    "TenantServer.run",
    "JSONRPCDispatcher",
    "ServerRunner._on_request",
    "_serve_legacy_stream",
    "OpenTelemetryMiddleware",
    "RequestStateBoundary",
    "MCPServer.run",
    "Server.run",
    "serve_dual_era_loop",
)


def _worth_listing(frame: str) -> bool:
    """Our functions and the SDK's, but not the chain every request runs through."""
    return frame.partition(" (")[2].startswith(("mcp_tenants/", "mcp/")) and not frame.startswith(_CHAIN)


def server_profile(stacks: list[tuple[list[str], int]], calls: int, cpu_per_call: float, top: int = 8) -> list[str]:
    """py-spy samples as shares of the server's CPU per call: by thread and package, then for the
    two threads that matter (the event loop: the SDK and our wrapper; the worker: the handler)
    our functions inclusive and the top self time."""
    total = sum(n for _, n in stacks) or 1
    threads: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    self_time: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for code, thread, n in code_stacks(stacks):
        threads[thread] += n
        packages[_area(code[-1])] += n
        self_time[thread][_function(code[-1])] += n
        for fn in {_function(f) for f in code if _worth_listing(f)}:
            inclusive[thread][fn] += n

    def share(n: int) -> str:
        return f"{n / total:6.1%} {ms(cpu_per_call * n / total):>9}"

    lines = [
        f"server CPU {ms(cpu_per_call)}/call ({total} samples over {calls} calls); by thread: "
        + ", ".join(f"{k} {v / total:.0%}" for k, v in threads.most_common()),
        "  self time by package: " + ", ".join(f"{k} {v / total:.0%}" for k, v in packages.most_common(10)),
    ]
    for thread, _ in threads.most_common(2):
        lines.append(f"  {thread}: our and the SDK's functions, inclusive (share of server CPU, ms per call):")
        lines += [f"    {share(v)}  {fn}" for fn, v in inclusive[thread].most_common(5)]
        lines.append(f"  {thread}: self time by function:")
        lines += [f"    {share(v)}  {fn}" for fn, v in self_time[thread].most_common(top)]
    return lines


#: Client functions whose inclusive time tells where the client's CPU goes.
CLIENT_STEPS = {
    "validate_tool_result": "validate structuredContent (jsonschema)",
    "_parse_line": "parse the answer (pydantic validate_json)",
    "stdout_reader": "read stdout (decode, split lines, parse)",
    "stdin_writer": "write the request (model_dump_json)",
}


def client_profile(profiler: cProfile.Profile, calls: int, top: int = 5) -> list[str]:
    """cProfile of this process during the calls: the SDK client's main steps per call
    (inclusive), and the top self time."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    steps: collections.Counter[str] = collections.Counter()
    selfs: list[tuple[float, str]] = []
    for (path, line, fn), (_cc, _nc, tottime, cumtime, _callers) in stats.items():
        if fn in CLIENT_STEPS and "/mcp/client/" in path:
            steps[fn] = max(steps[fn], cumtime)
        where = path.split("site-packages/")[-1]
        selfs.append((tottime, f"{fn} ({where}:{line})"))
    lines = ["    " + "; ".join(f"{CLIENT_STEPS[fn]} {ms(t / calls)}" for fn, t in steps.most_common())]
    lines.append(
        "    top self time: " + "; ".join(f"{name} {ms(t / calls)}" for t, name in sorted(selfs, reverse=True)[:top])
    )
    return lines


async def one_workload(
    report: Report,
    server: StdioServer,
    relay: Relay,
    label: str,
    tool: str,
    arguments: dict[str, Any],
    calls: int,
) -> None:
    """``calls`` calls with validation on and off: client CPU (and its profile), wire bytes,
    backend round trips and bytes; then the same calls under py-spy for the server's CPU."""
    for _ in range(min(calls, 5)):  # warm-up
        await server.call_raw(tool, arguments)
    report.note(f"--- {label} ({calls} calls) ---")
    for mode in ("on", "off"):
        server.validate = mode == "on"
        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting in epoll costs nothing
        cpu0, wire0, (t0, s0, r0) = time.process_time(), WireCounter.received, relay.snapshot()
        profiler.enable()
        for _ in range(calls):
            await server.call_raw(tool, arguments)
        profiler.disable()
        cpu, wire = (time.process_time() - cpu0) / calls, (WireCounter.received - wire0) / calls
        t1, s1, r1 = relay.snapshot()
        if mode == "on":
            report.note(
                f"backend per call: {(t1 - t0) / calls:.1f} round trips, {kb((s1 - s0) / calls)} sent, "
                f"{kb((r1 - r0) / calls)} received; stdio: {kb(wire)} received by the client"
            )
        report.note(f"client (validation {mode}): CPU {ms(cpu)}/call under cProfile (inflated by it); CPU per call:")
        for line in client_profile(profiler, calls):
            report.note(line)
    server.validate = True
    out = tempfile.mktemp(prefix="bench-spy-", suffix=".txt")
    cpu0 = server.cpu()
    with spy(server.pid, out) as proc:
        if proc is None:
            report.note("py-spy not installed: no server profile (pip install py-spy)")
            return
        began = time.process_time()
        for _ in range(calls):
            await server.call_raw(tool, arguments)
        client_cpu = (time.process_time() - began) / calls
    cpu = (server.cpu() - cpu0) / calls
    report.note(f"without profilers in this process: client CPU {ms(client_cpu)}/call (validation on)")
    if not os.path.exists(out):
        report.note(
            f"py-spy wrote nothing: {proc.stderr.read().decode(errors='replace')[-300:] if proc.stderr else ''}"
        )
        return
    with open(out, encoding="utf-8") as f:
        stacks = _parse_collapsed(f.read())
    keep = os.environ.get("BENCH_PROFILE_OUT")
    if keep:
        os.replace(out, f"{keep}.{label.replace(' ', '_').replace(',', '')}")
    else:
        os.unlink(out)
    for line in server_profile(stacks, calls, cpu):
        report.note(line)


#: workload → calls profiled
PG_CALLS = {"SELECT 1": 300, "1,000 rows": 40, "100,000 rows": 2}


async def breakdown(services: Services, report: Report) -> None:
    """The per-call profile of ``query`` (SELECT 1, 1,000 rows, 100,000 rows) and of
    ``list_objects`` of 1,000 keys."""
    c.create_table(services)
    pg = services.pg
    with Relay(pg.host, pg.port) as relay:
        async with c.ours_server(services, db=10, pg_port=relay.port) as server:
            for workload, calls in PG_CALLS.items():
                args = c.OURS.args_for(c.WORKLOADS[workload])
                await one_workload(report, server, relay, f"query {workload}", "query", args, calls)
    fill_list_bucket(services)
    s3 = services.s3
    with Relay(s3.host, s3.port) as relay:
        env = {**services.redis_env(11), **services.s3_tenant_env("bench")}
        env["MINIO_TENANT_BENCH_ENDPOINT"] = f"127.0.0.1:{relay.port}"
        async with StdioServer(MINIO_MODULE, env, name="ours") as server:
            label = f"list_objects {LIST_KEYS:,} keys ({LIST_BUCKET})"
            await one_workload(report, server, relay, label, S3_OURS.tool, S3_OURS.arguments, 20)
    report.row("breakdown: per-call profile (notes above)", "(info)", "-", "-", None)
