"""Ours against the servers a user would pick instead, and against the SDK's floors, in one run.

Every server runs as its own process, driven by the same SDK ``Client`` over stdio in this
process, on the same database (the bench's PostgreSQL, table ``bench_rows``) or S3 server, with
the same SQL. Repetitions interleave servers, workloads and the client's validation on/off (the
order of servers rotates each repetition), so a noisy neighbour hits all of them alike; ratios
are medians of per-repetition ratios.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3

from bench import contenders as c
from bench.harness import (
    MINIMAL_MODULE,
    MINIO_MODULE,
    Report,
    Services,
    StdioServer,
    WireCounter,
    mb,
    median,
    ms,
    spread,
)

#: workload → (calls per batch, repetitions)
PLAN = {"SELECT 1": (100, 5), "1,000 rows": (20, 5), "100,000 rows": (1, 3)}
#: workload → ours' target against the fastest peer
PEER_TARGET = {"SELECT 1": 1.25, "1,000 rows": 1.25, "100,000 rows": 1.5}
MODES = ("on", "off")


@dataclass
class Figures:
    """Per (server, workload, mode): one value per repetition."""

    p50: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    client_cpu: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    server_cpu: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    wire: dict[tuple[str, str, str], list[float]] = field(default_factory=lambda: collections.defaultdict(list))

    def ratio(self, a: tuple[str, str, str], b: tuple[str, str, str]) -> float:
        """Median of per-repetition ratios of p50s."""
        return median([x / y for x, y in zip(self.p50[a], self.p50[b], strict=False)])

    def mid(self, key: tuple[str, str, str]) -> float:
        return median(self.p50[key])


async def batch(
    figures: Figures,
    key: tuple[str, str, str],
    server: StdioServer | None,
    call: Callable[[], Awaitable[Any]],
    calls: int,
) -> None:
    """``calls`` sequential calls: their p50, and client CPU, server CPU and bytes per call."""
    samples = []
    cpu0, wire0 = time.process_time(), WireCounter.received
    scpu0 = server.cpu() if server else 0.0
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - began)
    figures.client_cpu[key].append((time.process_time() - cpu0) / calls)
    figures.wire[key].append((WireCounter.received - wire0) / calls)
    if server:
        figures.server_cpu[key].append((server.cpu() - scpu0) / calls)
    figures.p50[key].append(median(samples))


def rotate(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def kb(n: float) -> str:
    return f"{n / 1e3:.1f} kB" if n < 1e6 else mb(n)


# -- PostgreSQL ---------------------------------------------------------------------------------


async def peers(services: Services, report: Report) -> None:
    """SELECT 1, 1,000 rows and 100,000 rows: ours, the npm peers, a bare MCPServer and a bare
    low-level Server, client validation on and off; then peak RSS after the 100,000-row calls."""
    c.create_table(services)
    why_not = c.install_node_peers()
    if why_not:
        report.note(f"npm peers unavailable: {why_not}")
    results_file = os.path.join(tempfile.mkdtemp(prefix="bench-results-"), "results.json")
    async with contextlib.AsyncExitStack() as stack:
        ours = await stack.enter_async_context(c.ours_server(services))
        saved = {}
        for workload, sql in c.WORKLOADS.items():
            result = await ours.call("query", **c.OURS.args_for(sql))
            assert result["row_count"] == c.ROW_COUNTS[workload] and not result["truncated"], workload
            saved[sql] = result
        with open(results_file, "w", encoding="utf-8") as f:
            json.dump(saved, f)
        del saved
        servers: dict[c.Contender, StdioServer] = {c.OURS: ours}
        servers[c.BARE] = await stack.enter_async_context(c.bare_server(MINIMAL_MODULE, results_file))
        servers[c.LOWLEVEL] = await stack.enter_async_context(c.bare_server(c.LOWLEVEL_MODULE, results_file))
        if not why_not:
            servers[c.REFERENCE] = await stack.enter_async_context(c.reference_server(services))
            servers[c.DBHUB] = await stack.enter_async_context(c.dbhub_server(services))
        await check_answers(servers, report)
        figures = await measure_pg(servers)
        peak = {who.name: server.status()["VmHWM"] for who, server in servers.items()}
    os.unlink(results_file)
    os.rmdir(os.path.dirname(results_file))
    report_pg(figures, peak, [who.name for who in servers if who.kind == "peer"], report)


async def check_answers(servers: dict[c.Contender, StdioServer], report: Report) -> None:
    """Every server returns every row of every workload (no peer applies a row cap here)."""
    for workload, sql in c.WORKLOADS.items():
        counts = []
        for who, server in servers.items():
            result = await server.call_raw(who.tool, who.args_for(sql))
            n = result.structured_content["row_count"] if result.structured_content is not None else c.text_rows(result)
            counts.append(f"{who.name} {n}")
            assert n == c.ROW_COUNTS[workload], f"{who.name} returned {n} rows for {workload}"
    report.note("every server returned every row (" + ", ".join(counts) + " at 100,000)")


async def measure_pg(servers: dict[c.Contender, StdioServer]) -> Figures:
    figures = Figures()
    order = list(servers)
    # Warm-up: pools, caches, compiled validators, the JIT of the node servers.
    for who, server in servers.items():
        for mode in MODES:
            server.validate = mode == "on"
            for workload, (calls, _) in PLAN.items():
                if calls > 1:
                    for _ in range(calls):
                        await server.call_raw(who.tool, who.args_for(c.WORKLOADS[workload]))
    rounds = max(reps for _, reps in PLAN.values())
    for rep in range(rounds):
        for workload, (calls, reps) in PLAN.items():
            if rep >= reps:
                continue
            sql = c.WORKLOADS[workload]
            for mode in rotate(list(MODES), rep):
                for who in rotate(order, rep):
                    server = servers[who]
                    server.validate = mode == "on"
                    args = who.args_for(sql)

                    async def call(server: StdioServer = server, tool: str = who.tool, args: Any = args) -> None:
                        await server.call_raw(tool, args)

                    await batch(figures, (who.name, workload, mode), server, call, calls)
        print(f"  [repetition {rep + 1} of {rounds} done]", flush=True)
    for server in servers.values():
        server.validate = True
    return figures


def report_pg(figures: Figures, peak: dict[str, int], peer_names: list[str], report: Report) -> None:
    names = list(dict.fromkeys(name for name, _, _ in figures.p50))
    for workload in PLAN:
        report.note(f"{workload}: p50 validation on / off; client CPU on / off per call; server CPU; bytes received")
        for name in names:
            on, off = (name, workload, "on"), (name, workload, "off")
            report.note(
                f"    {name:22} {ms(figures.mid(on)):>9} / {ms(figures.mid(off)):>9}   "
                f"client {ms(median(figures.client_cpu[on])):>9} / {ms(median(figures.client_cpu[off])):>9}   "
                f"server {ms(median(figures.server_cpu[on])):>9}   {kb(median(figures.wire[on])):>9}"
            )
        report.note(f"    ours on: {spread(figures.p50[('ours', workload, 'on')])}")
    for workload in PLAN:
        fastest = min(peer_names, key=lambda n: figures.mid((n, workload, "on"))) if peer_names else None
        ours_on, ours_off = ("ours", workload, "on"), ("ours", workload, "off")
        bare_off = ("bare MCPServer", workload, "off")
        if fastest:
            peer = (fastest, workload, "on")
            r = figures.ratio(ours_on, peer)
            report.row(
                f"peers: {workload} p50, ours (client validating) vs fastest peer",
                f"<= {PEER_TARGET[workload]}x",
                f"{ms(figures.mid(ours_on))} vs {ms(figures.mid(peer))} ({fastest})",
                f"{r:.2f}x",
                r <= PEER_TARGET[workload],
            )
        r = figures.ratio(ours_off, bare_off)
        beside = f"; {figures.ratio(ours_off, (fastest, workload, 'on')):.2f}x fastest peer" if fastest else ""
        report.row(
            f"peers: {workload}, server alone (validation off): ours vs bare MCPServer",
            "<= 1.1x",
            f"{ms(figures.mid(ours_off))} vs {ms(figures.mid(bare_off))}",
            f"{r:.2f}x{beside}",
            r <= 1.1,
        )
        r = figures.ratio(ours_on, ours_off)
        report.row(
            f"peers: {workload}, ours: client validation on vs off",
            "<= 1.15x",
            f"{ms(figures.mid(ours_on))} vs {ms(figures.mid(ours_off))}",
            f"{r:.2f}x",
            r <= 1.15,
        )
        low_off = ("bare lowlevel Server", workload, "off")
        beside = (
            f"; bare MCPServer {figures.ratio(bare_off, (fastest, workload, 'on')):.2f}x fastest peer"
            if fastest
            else ""
        )
        report.row(
            f"peers: {workload}, floor: bare lowlevel Server vs bare MCPServer (off)",
            "(info)",
            f"{ms(figures.mid(low_off))} vs {ms(figures.mid(bare_off))}",
            f"{figures.ratio(low_off, bare_off):.2f}x{beside}",
            None,
        )
    report.note(
        "peak RSS (VmHWM) after every workload, 100,000 rows the largest: "
        + ", ".join(f"{n} {mb(v)}" for n, v in peak.items())
    )
    r = peak["ours"] / peak["bare MCPServer"]
    ref = c.REFERENCE.name
    beside = f"; {peak['ours'] / peak[ref]:.2f}x {ref}" if ref in peak else ""
    report.row(
        "peers: peak RSS at 100,000 rows, ours vs bare MCPServer",
        "<= 1.1x",
        f"{mb(peak['ours'])} vs {mb(peak['bare MCPServer'])}",
        f"{r:.2f}x{beside}",
        r <= 1.1,
    )


# -- S3 -----------------------------------------------------------------------------------------

LIST_BUCKET = "bench-list1k"
LIST_KEYS = 1000
S3_PLAN = (5, 5)  # calls per batch, repetitions


def fill_list_bucket(services: Services) -> None:
    http = urllib3.PoolManager(maxsize=32, timeout=60, retries=False)
    client = services.s3.client(http_client=http)
    if client.bucket_exists(LIST_BUCKET):
        return
    client.make_bucket(LIST_BUCKET)

    def put(i: int) -> None:
        client.put_object(LIST_BUCKET, f"k/{i:07d}", io.BytesIO(b"x"), 1)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(LIST_KEYS)))
    http.clear()


def s3_peer_env(services: Services, workdir: str) -> dict[str, str]:
    """What botocore needs to reach the bench's S3 server (path-style addressing)."""
    config = os.path.join(workdir, "aws-config")
    with open(config, "w", encoding="ascii") as f:
        f.write("[default]\ns3 =\n    addressing_style = path\n")
    s3 = services.s3
    return {
        "AWS_ENDPOINT_URL": f"http://{s3.endpoint}",
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_REGION": s3.region,
        "AWS_DEFAULT_REGION": s3.region,
        "AWS_CONFIG_FILE": config,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass(frozen=True, eq=False)
class S3Contender:
    name: str
    tool: str
    arguments: dict[str, Any]


S3_OURS = S3Contender("ours", "list_objects", {"tenant_id": "bench", "bucket": LIST_BUCKET, "max_keys": LIST_KEYS})
S3_PEERS = {
    "aws-s3-mcp": S3Contender(
        "aws-s3-mcp 0.1.3", "s3_list_objects", {"bucket_name": LIST_BUCKET, "max_keys": LIST_KEYS}
    ),
    "s3-mcp": S3Contender(
        "s3-mcp 0.1.0",
        "s3_list_objects",
        {"bucket_name": LIST_BUCKET, "limit": LIST_KEYS, "response_format": "json"},
    ),
}


def listed_keys(result: Any) -> int:
    """Keys in a listing answer: structured ``objects``, else JSON text with a list of objects."""
    data = result.structured_content
    if data is None:
        data = json.loads("".join(getattr(x, "text", "") for x in result.content))
    if isinstance(data.get("result"), str):  # fastmcp wraps a str return: {"result": "<the JSON text>"}
        data = json.loads(data["result"])
    for name in ("objects", "contents", "Contents", "items"):
        if isinstance(data.get(name), list):
            return len(data[name])
    raise AssertionError(f"no objects in the answer: {str(data)[:300]}")


async def s3peers(services: Services, report: Report) -> None:
    """``list_objects`` of 1,000 keys: ours, the PyPI S3 peers, and the store's own listing (minio-py)."""
    fill_list_bucket(services)
    raw_client = services.s3.client()
    workdir = tempfile.mkdtemp(prefix="bench-s3peers-")
    env = s3_peer_env(services, workdir)
    async with contextlib.AsyncExitStack() as stack:
        ours_env = {**services.redis_env(8), **services.s3_tenant_env("bench")}
        servers: dict[S3Contender, StdioServer] = {
            S3_OURS: await stack.enter_async_context(StdioServer(MINIO_MODULE, ours_env, name="ours"))
        }
        for package, who in S3_PEERS.items():
            why_not = c.install_python_peer(package)
            if why_not:
                report.note(f"{who.name} unavailable: {why_not}")
                continue
            script = str(c.PEERS_DIR / "py" / package / "bin" / package)
            servers[who] = await stack.enter_async_context(StdioServer("", env, argv=[script], name=who.name))
        for who, server in servers.items():
            n = listed_keys(await server.call_raw(who.tool, who.arguments))
            assert n == LIST_KEYS, f"{who.name} listed {n} keys"

        async def raw() -> None:
            entries = raw_client.list_objects(LIST_BUCKET, recursive=True)
            assert sum(1 for _ in entries) == LIST_KEYS

        figures = Figures()
        calls, reps = S3_PLAN
        for who, server in servers.items():  # warm-up
            for _ in range(calls):
                await server.call_raw(who.tool, who.arguments)
        for rep in range(reps):
            for mode in rotate(list(MODES), rep):
                for who in rotate(list(servers), rep):
                    server = servers[who]
                    server.validate = mode == "on"

                    async def call(server: StdioServer = server, who: S3Contender = who) -> None:
                        await server.call_raw(who.tool, who.arguments)

                    await batch(figures, (who.name, "list", mode), server, call, calls)
            await batch(figures, ("minio-py list_objects (in process)", "list", "on"), None, raw, calls)
        peak = {who.name: server.status()["VmHWM"] for who, server in servers.items()}
    for name in os.listdir(workdir):
        os.unlink(os.path.join(workdir, name))
    os.rmdir(workdir)
    report.note("list_objects of 1,000 keys: p50 validation on / off; client CPU per call; server CPU; bytes")
    for name in dict.fromkeys(n for n, _, _ in figures.p50):
        on, off = (name, "list", "on"), (name, "list", "off")
        off_p50 = ms(figures.mid(off)) if figures.p50.get(off) else "-"
        server_cpu = ms(median(figures.server_cpu[on])) if figures.server_cpu.get(on) else "-"
        report.note(
            f"    {name:34} {ms(figures.mid(on)):>9} / {off_p50:>9}   client {ms(median(figures.client_cpu[on])):>9}   "
            f"server {server_cpu:>9}   {kb(median(figures.wire[on])):>9}   VmHWM {mb(peak.get(name, 0))}"
        )
    peer_names = [who.name for who in servers if who is not S3_OURS]
    ours_on, ours_off = ("ours", "list", "on"), ("ours", "list", "off")
    raw_key = ("minio-py list_objects (in process)", "list", "on")
    if peer_names:
        fastest = min(peer_names, key=lambda n: figures.mid((n, "list", "on")))
        r = figures.ratio(ours_on, (fastest, "list", "on"))
        report.row(
            "s3peers: list_objects 1,000 keys, ours vs fastest S3 peer",
            "<= 1.25x",
            f"{ms(figures.mid(ours_on))} vs {ms(figures.mid((fastest, 'list', 'on')))} ({fastest})",
            f"{r:.2f}x",
            r <= 1.25,
        )
    r = figures.ratio(ours_on, ours_off)
    report.row(
        "s3peers: list_objects, ours: client validation on vs off",
        "<= 1.15x",
        f"{ms(figures.mid(ours_on))} vs {ms(figures.mid(ours_off))}",
        f"{r:.2f}x",
        r <= 1.15,
    )
    r = figures.ratio(ours_off, raw_key)
    report.row(
        "s3peers: list_objects, ours (validation off) vs the store's own listing (minio-py)",
        "(info)",
        f"{ms(figures.mid(ours_off))} vs {ms(figures.mid(raw_key))}",
        f"{r:.2f}x",
        None,
    )
