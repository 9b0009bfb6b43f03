"""Scale: 10,000 stored tenants at start-up, a 1,000,000-row result, a 100 MB object, a big bucket."""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import urllib3

from bench.calls import SELECT_1, pg_env
from bench.harness import (
    MINIO_MODULE,
    PG_MODULE,
    Report,
    Services,
    StdioServer,
    mb,
    median,
    ms,
    spread,
    timed,
)
from mcp_tenants.config import Redactor
from mcp_tenants.crypto import SecretCodec, generate_key
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.settings import Settings
from mcp_tenants.store import TenantStore, key_prefix

TENANTS = 10_000
EMPTY_DB, PLAIN_DB, SEALED_DB = 3, 4, 5

# -- 3. many tenants ----------------------------------------------------------------------------


def write_tenants(services: Services, db: int, codec: SecretCodec, count: int = TENANTS) -> float:
    """Write ``count`` tenant entries as TenantStore.put writes them (one template, fresh ids and
    passwords); the seconds it took."""
    pg = services.pg
    template = PostgresTenant(
        tenant_id="template",
        host=pg.host,
        port=pg.port,
        database=pg.dbname,
        user="reader",
        password="template-password",
    ).to_dict()
    client = services.redis.client(db=db)
    began = time.monotonic()
    pipe = client.pipeline(transaction=False)
    prefix = key_prefix("postgres")
    for i in range(count):
        tenant_id = f"tenant-{i:05d}"
        entry = codec.seal(
            {**template, "tenant_id": tenant_id, "password": secrets.token_urlsafe(18)}, PostgresTenant.SECRET_FIELDS
        )
        pipe.set(prefix + tenant_id, json.dumps(entry))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    assert client.dbsize() == count
    client.close()
    return time.monotonic() - began


async def start_and_first_call(env: dict[str, str], *, list_tenants: bool = False) -> dict[str, Any]:
    """Spawn → initialize → first ``query`` answered; RSS then; optionally one ``list_tenants``."""
    async with StdioServer(PG_MODULE, env) as server:
        await server.call("query", **SELECT_1)
        first = time.perf_counter() - server.spawned_at
        status = server.status()
        out = {
            "init": server.initialized_at - server.spawned_at,
            "first": first,
            "rss": status["VmRSS"],
            "hwm": status["VmHWM"],
        }
        if list_tenants:
            began = time.perf_counter()
            result = await server.call("list_tenants")
            out["list"] = time.perf_counter() - began
            out["listed"] = len(result["tenants"])
            out["list_bytes"] = len(json.dumps(result))
    return out


async def tenants(services: Services, report: Report, *, reps: int = 3) -> None:
    """Start-up to the first served call and RSS with 10,000 stored tenants vs none."""
    key = generate_key()
    plain_s = write_tenants(services, PLAIN_DB, SecretCodec())
    sealed_s = write_tenants(services, SEALED_DB, SecretCodec([key]))
    report.note(f"wrote {TENANTS} entries in {plain_s:.1f} s (plain) and {sealed_s:.1f} s (sealed, Fernet)")
    base = pg_env(services)
    variants = {
        "empty": {**base, **services.redis_env(EMPTY_DB)},
        "10k": {**base, **services.redis_env(PLAIN_DB)},
        "empty+key": {**base, **services.redis_env(EMPTY_DB), "MCP_TENANT_ENCRYPTION_KEY": key},
        "10k sealed+key": {**base, **services.redis_env(SEALED_DB), "MCP_TENANT_ENCRYPTION_KEY": key},
    }
    await start_and_first_call(variants["empty"])  # warm-up: page cache, .pyc files
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for rep in range(reps):  # interleaved, so the noise hits every variant alike
        for name, env in variants.items():
            runs[name].append(await start_and_first_call(env, list_tenants=rep == 0 and name == "10k"))

    def fig(name: str, what: str) -> float:
        return median([r[what] for r in runs[name]])

    for name in variants:
        report.note(
            f"{name:15} initialize {spread([r['init'] for r in runs[name]])}; first query "
            f"{spread([r['first'] for r in runs[name]])}; RSS {mb(fig(name, 'rss'))} "
            f"(peak {mb(fig(name, 'hwm'))})"
        )
    listed = runs["10k"][0]
    report.note(
        f"list_tenants with 10k stored: {ms(listed['list'])}, {listed['listed']} tenants, "
        f"{listed['list_bytes'] / 1e6:.2f} MB of JSON"
    )
    for empty, full, label in (("empty", "10k", "plain"), ("empty+key", "10k sealed+key", "encrypted")):
        delta = fig(full, "first") - fig(empty, "first")
        report.row(
            f"3: start-up to first query, 10k {label} tenants vs 0",
            "<= +0.5 s",
            f"{fig(full, 'first'):.2f} s vs {fig(empty, 'first'):.2f} s",
            f"{delta:+.2f} s",
            delta <= 0.5,
        )
        rss = fig(full, "rss") - fig(empty, "rss")
        report.row(
            f"3: RSS after start, 10k {label} tenants vs 0",
            "<= +40 MB",
            f"{mb(fig(full, 'rss'))} vs {mb(fig(empty, 'rss'))}",
            f"{rss / 1e6:+.1f} MB",
            rss <= 40e6,
        )
    report.row(
        "3: list_tenants with 10k stored tenants (one call)",
        "(info)",
        ms(listed["list"]),
        f"{listed['listed']} listed, {listed['list_bytes'] / 1e6:.2f} MB result",
        None,
    )
    open_profile(services, report)
    redactor_cost(report)
    codec = SecretCodec([key])
    sealed = [codec.seal({"password": secrets.token_urlsafe(18)}, ("password",)) for _ in range(TENANTS)]
    began = time.perf_counter()
    for entry in sealed:
        codec.open(entry, ("password",), tenant_id="bench")
    report.note(f"SecretCodec.open() of {TENANTS} sealed passwords (in process): {time.perf_counter() - began:.2f} s")


def redactor_cost(report: Report, count: int = TENANTS) -> None:
    """What ``config.Redactor`` costs with one secret per stored tenant: every tenant config adds
    its password on construction, and every log line and error message passes through it."""
    redactor = Redactor()
    began = time.perf_counter()
    for _ in range(count):
        redactor.add(secrets.token_urlsafe(18))
    added = time.perf_counter() - began
    line = "2026-01-01 00:00:00 INFO mcp_tenants.registry: registered postgres tenant 'acme' (persisted: True)"
    calls = 20
    began = time.perf_counter()
    for _ in range(calls):
        redactor(line)
    per_call = (time.perf_counter() - began) / calls
    report.note(
        f"Redactor with {count} secrets (in process): {count} add() calls {added:.2f} s; "
        f"one redact() of a log line {ms(per_call)}"
    )
    report.row(
        f"3: Redactor: add() x {count} / one redact() call, {count} secrets",
        "(info)",
        f"{added:.2f} s / {ms(per_call)}",
        "-",
        None,
    )


def open_profile(services: Services, report: Report, top: int = 6) -> None:
    """Where start-up time goes with 10k stored tenants: ``TenantStore.load_all()``, what
    ``TenantManager.open()`` runs on its background preload thread, in this process under
    cProfile (which inflates Python-heavy code), on the same Redis entries."""
    settings = Settings.from_env("postgres", services.redis_env(PLAIN_DB))
    store = TenantStore(settings.redis, "postgres", PostgresTenant, SecretCodec())
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.runcall(store.load_all)
    took = time.perf_counter() - began
    store.close()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    report.note(
        f"in process, TenantStore.load_all() (the preload) of {TENANTS} stored tenants: {took:.2f} s under cProfile; "
        "top self time:"
    )
    for (path, line, func), (_cc, calls, self_s, cum_s, _callers) in ranked:
        where = path.split("site-packages/")[-1].split("/work/main/")[-1]
        report.note(
            f"    {self_s:6.2f} s self ({self_s / took:4.0%}), {cum_s:6.2f} s cum, {calls:6} calls  "
            f"{func} ({where}:{line})"
        )


# -- 4a. a million rows -------------------------------------------------------------------------

MILLION = "SELECT g, md5(g::text) FROM generate_series(1, 1000000) g"


async def rows(services: Services, report: Report, *, reps: int = 3) -> None:
    """``query`` of 1,000,000 rows (capped at 1,000) vs raw psycopg fetching the same 1,000 rows."""

    def raw() -> None:
        with (
            psycopg.connect(**services.pg.conninfo()) as conn,
            conn.transaction(force_rollback=True),
            conn.cursor(name="bench") as cur,
        ):
            cur.execute(MILLION)
            assert len(cur.fetchmany(1000)) == 1000

    async with StdioServer(PG_MODULE, pg_env(services)) as server:
        for _ in range(3):  # warm-up: the same path with a small result
            await server.call("query", tenant_id="bench", sql=MILLION.replace("1000000", "2000"))
            raw()
        before = server.status()
        tool_times, raw_times = [], []
        for _ in range(reps):
            result: dict[str, Any] = {}

            async def call(out: dict[str, Any] = result) -> None:
                out.update(await server.call("query", tenant_id="bench", sql=MILLION))

            tool_times.append(await timed(call))
            assert result["row_count"] == 1000 and result["truncated"] is True
            raw_times.append(await timed(lambda: asyncio.to_thread(raw)))
        after = server.status()
    growth = after["VmHWM"] - before["VmHWM"]
    ratio = median([t / r for t, r in zip(tool_times, raw_times, strict=True)])
    report.note(f"query tool: {spread(tool_times)}; raw server-side cursor fetchmany(1000): {spread(raw_times)}")
    report.note(
        f"server VmHWM {mb(before['VmHWM'])} -> {mb(after['VmHWM'])}; "
        f"VmRSS {mb(before['VmRSS'])} -> {mb(after['VmRSS'])}"
    )
    report.row("4: 1M-row query: server peak RSS growth", "<= 50 MB", mb(growth), "-", growth <= 50e6)
    report.row(
        "4: 1M-row query (1,000 returned) vs raw psycopg fetchmany(1000)",
        "<= 2x",
        f"{ms(median(tool_times))} vs {ms(median(raw_times))}",
        f"{ratio:.2f}x",
        ratio <= 2,
    )


# -- 4b. a big object and a big bucket ----------------------------------------------------------

BIG_OBJECT = 100 * 1024 * 1024


def list_keys() -> int:
    """Keys in the big bucket: $BENCH_LIST_KEYS, default 20,000 (100,000 takes ~4 min to upload here)."""
    return int(os.environ.get("BENCH_LIST_KEYS", "20000"))


def fill_buckets(services: Services, report: Report) -> None:
    http = urllib3.PoolManager(maxsize=64, timeout=60, retries=False)
    client = services.s3.client(http_client=http)
    for bucket in ("bench-big", "bench-keys", "bench-few"):
        client.make_bucket(bucket)
    began = time.monotonic()
    data = os.urandom(BIG_OBJECT)  # incompressible, and not valid UTF-8: comes back as base64
    client.put_object("bench-big", "big.bin", io.BytesIO(data), len(data), part_size=16 * 1024 * 1024)
    client.put_object("bench-big", "small.txt", io.BytesIO(b"hello"), 5)
    del data
    report.note(f"uploaded a {BIG_OBJECT >> 20} MiB object in {time.monotonic() - began:.1f} s")

    def put(args: tuple[str, int]) -> None:
        bucket, i = args
        client.put_object(bucket, f"k/{i:07d}", io.BytesIO(b"x"), 1)

    count = list_keys()
    began = time.monotonic()
    with ThreadPoolExecutor(48) as pool:
        list(pool.map(put, [("bench-keys", i) for i in range(count)] + [("bench-few", i) for i in range(2000)]))
    took = time.monotonic() - began
    report.note(f"uploaded {count} + 2,000 tiny objects in {took:.1f} s ({(count + 2000) / took:.0f}/s, 48 threads)")
    http.clear()


async def objects(services: Services, report: Report, *, reps: int = 3) -> None:
    """``get_object`` of a 100 MB object and ``list_objects`` over a big bucket: latency and peak RSS."""
    fill_buckets(services, report)
    raw_client = services.s3.client()
    count = list_keys()
    env = {**services.redis_env(6), **services.s3_tenant_env("bench")}
    async with StdioServer(MINIO_MODULE, env) as server:
        for _ in range(3):  # warm-up: the same paths with small inputs
            await server.call("get_object", tenant_id="bench", bucket="bench-big", key="small.txt")
            await server.call("list_objects", tenant_id="bench", bucket="bench-few", max_keys=10)
        before = server.status()
        got: dict[str, Any] = {}

        async def get(out: dict[str, Any] = got) -> None:
            result = await server.client.call_tool(
                "get_object", {"tenant_id": "bench", "bucket": "bench-big", "key": "big.bin"}
            )
            out.update(result.structured_content or {})
            out["text_bytes"] = sum(len(getattr(c, "text", "")) for c in result.content)

        get_times = [await timed(get) for _ in range(reps)]
        assert got["truncated"] is True and got["size"] == BIG_OBJECT
        after_get = server.status()
        listed: dict[str, Any] = {}

        async def page(bucket: str, out: dict[str, Any] = listed) -> None:
            out.update(await server.call("list_objects", tenant_id="bench", bucket=bucket))

        big_pages, few_pages = [], []
        for _ in range(reps):
            big_pages.append(await timed(lambda: page("bench-keys")))
            assert len(listed["objects"]) == 1000 and listed["truncated"] is True
            few_pages.append(await timed(lambda: page("bench-few")))
        after_list = server.status()

    def raw_get() -> None:
        response = raw_client.get_object("bench-big", "big.bin", offset=0, length=1 << 20)
        try:
            assert len(response.read()) == 1 << 20
        finally:
            response.close()
            response.release_conn()

    def raw_page() -> None:
        entries = raw_client.list_objects("bench-keys", recursive=True)
        assert sum(1 for _, _ in zip(range(1000), entries, strict=False)) == 1000

    raw_get_times = [await timed(lambda: asyncio.to_thread(raw_get)) for _ in range(reps)]
    raw_page_times = [await timed(lambda: asyncio.to_thread(raw_page)) for _ in range(reps)]

    get_growth = after_get["VmHWM"] - before["VmHWM"]
    list_growth = after_list["VmHWM"] - after_get["VmHWM"]
    report.note(
        f"get_object (100 MiB object, {got['length']} bytes returned as {got['encoding']}): "
        f"{spread(get_times)}; raw minio 1 MiB ranged GET {spread(raw_get_times)}"
    )
    report.note(
        f"get_object result: {len(got['content']) / 1e6:.2f} MB of content in structuredContent, and "
        f"{got['text_bytes'] / 1e6:.2f} MB of text content (the SDK sends the result twice)"
    )
    report.note(
        f"list_objects first page: {count} keys {spread(big_pages)}; 2,000 keys {spread(few_pages)}; "
        f"raw minio first 1,000 entries {spread(raw_page_times)}"
    )
    report.note(
        f"server VmHWM {mb(before['VmHWM'])} -> {mb(after_get['VmHWM'])} (get_object) -> "
        f"{mb(after_list['VmHWM'])} (list_objects); VmRSS after {mb(after_list['VmRSS'])}"
    )
    r_get = median(get_times) / median(raw_get_times)
    report.row(
        "4: get_object on 100 MiB object: server peak RSS growth",
        "bounded (<= 50 MB)",
        mb(get_growth),
        f"{ms(median(get_times))} call, {r_get:.1f}x raw 1 MiB GET",
        get_growth <= 50e6,
    )
    r_pages = median(big_pages) / median(few_pages)
    report.row(
        f"4: list_objects first page, {count:,} keys vs 2,000 keys",
        "pages (~1x), RSS <= 50 MB",
        f"{ms(median(big_pages))} vs {ms(median(few_pages))}, RSS +{mb(list_growth)}",
        f"{r_pages:.2f}x",
        r_pages <= 1.5 and list_growth <= 50e6,
    )
    r_raw = median(big_pages) / median(raw_page_times)
    report.row(
        "4: list_objects first page vs raw minio first 1,000 entries",
        "(info)",
        f"{ms(median(big_pages))} vs {ms(median(raw_page_times))}",
        f"{r_raw:.2f}x",
        None,
    )
