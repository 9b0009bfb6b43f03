"""What every measurement needs: services, server processes over stdio, process stats, a report.

Servers are driven exactly as a desktop client drives them: the MCP SDK's ``Client`` over
``stdio_client``. To know the server's PID without searching for it, the server is spawned
through ``sh -c 'echo $$ > FILE; exec python -m MODULE'``: ``exec`` keeps the PID the shell
wrote. Every process here is stopped by the PID this bench started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp.client.stdio as sdk_stdio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_tenants.devservices import PostgresService, RedisService, S3Service

ROOT = Path(__file__).resolve().parents[1]
PG_MODULE = "mcp_tenants.postgres"
MINIO_MODULE = "mcp_tenants.minio"
MINIMAL_MODULE = "bench.minimal_server"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ToolFailed(Exception):
    """A tool answered with ``isError: true``."""


class ServerFailed(Exception):
    """A server process did not start or answer ``initialize``."""


# -- numbers ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (of a non-empty sequence)."""
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds."""
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def spread(values: Sequence[float], fmt: Callable[[float], str] = ms) -> str:
    """``median (min..max, n=N)`` of repetitions."""
    return f"{fmt(median(values))} (min {fmt(min(values))}, max {fmt(max(values))}, n={len(values)})"


# -- process stats ------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` and the other ``Vm*`` lines of /proc/PID/status, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Vm"):
                name, _, rest = line.partition(":")
                values[name] = int(rest.split()[0]) * 1024
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (all threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def mb(n_bytes: float) -> str:
    """Bytes shown as MB (10^6)."""
    return f"{n_bytes / 1e6:.1f} MB"


# -- services -----------------------------------------------------------------------------------


class Services:
    """PostgreSQL, Redis and S3 started on first use and stopped together at the end."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._pg: PostgresService | None = None
        self._redis: RedisService | None = None
        self._s3: S3Service | None = None

    @property
    def pg(self) -> PostgresService:
        if self._pg is None:
            self._pg = self._start(PostgresService())
        return self._pg

    @property
    def redis(self) -> RedisService:
        if self._redis is None:
            self._redis = self._start(RedisService(extra_args=["--databases", "32"]))
        return self._redis

    @property
    def s3(self) -> S3Service:
        if self._s3 is None:
            self._s3 = self._start(S3Service())
        return self._s3

    def _start(self, service: Any) -> Any:
        began = time.monotonic()
        self._stack.enter_context(service)
        print(f"  [{type(service).__name__} started in {time.monotonic() - began:.1f} s]", flush=True)
        return service

    def redis_env(self, db: int) -> dict[str, str]:
        return {"REDIS_HOST": self.redis.host, "REDIS_PORT": str(self.redis.port), "REDIS_DB": str(db)}

    def pg_tenant_env(self, tenant_id: str) -> dict[str, str]:
        """Environment variables defining a PostgreSQL tenant on the bench cluster."""
        pg, prefix = self.pg, f"POSTGRES_TENANT_{tenant_id.upper()}_"
        return {
            prefix + "HOST": pg.host,
            prefix + "PORT": str(pg.port),
            prefix + "DATABASE": pg.dbname,
            prefix + "USER": pg.user,
            prefix + "PASSWORD": pg.password,
        }

    def s3_tenant_env(self, tenant_id: str) -> dict[str, str]:
        """Environment variables defining a MinIO tenant on the bench S3 server."""
        s3, prefix = self.s3, f"MINIO_TENANT_{tenant_id.upper()}_"
        return {
            prefix + "ENDPOINT": s3.endpoint,
            prefix + "ACCESS_KEY": s3.access_key,
            prefix + "SECRET_KEY": s3.secret_key,
            prefix + "REGION": s3.region,
        }

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a server over stdio ------------------------------------------------------------------------


class WireCounter:
    """Bytes the client received from servers over stdio: every JSON-RPC line the SDK's stdio
    transport parses (``len`` of the decoded line + its newline; the payloads here are ASCII).

    One counter for the whole bench process: calls are sequential, so the difference around a
    call is that call's answer. Installed by wrapping ``mcp.client.stdio._parse_line``, which
    the transport looks up at every line; ``len`` of a str costs nothing measurable.
    """

    received = 0

    @classmethod
    def install(cls) -> None:
        original = sdk_stdio._parse_line
        if getattr(original, "_bench_counting", False):
            return

        def counting(line: str) -> Any:
            cls.received += len(line) + 1
            return original(line)

        counting._bench_counting = True  # type: ignore[attr-defined]
        sdk_stdio._parse_line = counting  # type: ignore[assignment]


WireCounter.install()


async def _no_validation(name: str, result: Any) -> None:
    """Stands in for ``ClientSession.validate_tool_result`` when the client's validation is off."""


class StdioServer:
    """One server process driven by the SDK ``Client`` over stdio; ``async with`` starts it.

    ``spawned_at`` and ``initialized_at`` (``time.perf_counter()``) bracket start-up: from just
    before the process is spawned to the ``initialize`` answer. ``argv`` runs any command
    instead of ``python -m module`` (the peers: ``node …``, another venv's script).

    ``validate`` switches the client's re-validation of ``structuredContent`` against the tool's
    output schema (``ClientSession.validate_tool_result``, jsonschema; the SDK has no option for
    it, so "off" replaces that method on this session's instance with a no-op).
    """

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        *,
        python: str | None = None,
        argv: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.module = module
        self.name = name or module
        self.argv = list(argv) if argv else None
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.python = python or sys.executable
        # An empty working directory: the servers read ./.env when present.
        self._dir = tempfile.mkdtemp(prefix="mcp-bench-")
        self._pidfile = os.path.join(self._dir, "pid")
        self._log = open(os.path.join(self._dir, "server.log"), "w+")  # noqa: SIM115 - closed on exit
        self._client: Client | None = None
        self.pid = 0
        self.spawned_at = 0.0
        self.initialized_at = 0.0

    def params(self) -> StdioServerParameters:
        script = 'echo $$ > "$0"; exec "$@"'
        command = self.argv or [self.python, "-m", self.module]
        return StdioServerParameters(
            command="/bin/sh",
            args=["-c", script, self._pidfile, *command],
            env=self.env,
            cwd=self._dir,
        )

    async def __aenter__(self) -> StdioServer:
        self._client = Client(stdio_client(self.params(), errlog=self._log), mode="legacy")
        self.spawned_at = time.perf_counter()
        try:
            await self._client.__aenter__()
        except Exception as exc:
            log = self.logs()[-3000:]
            raise ServerFailed(f"{self.name} did not start: {exc!r}\n--- server log ---\n{log}") from None
        self.initialized_at = time.perf_counter()
        self.pid = int(Path(self._pidfile).read_text().strip())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._client is not None
        await self._client.__aexit__(*exc)
        self._log.close()
        with contextlib.suppress(OSError):
            for name in os.listdir(self._dir):
                os.unlink(os.path.join(self._dir, name))
            os.rmdir(self._dir)

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    @property
    def validate(self) -> bool:
        """Whether the client re-validates structured results against output schemas."""
        return "validate_tool_result" not in vars(self.client.session)

    @validate.setter
    def validate(self, on: bool) -> None:
        session = self.client.session
        if on:
            vars(session).pop("validate_tool_result", None)
        else:
            session.validate_tool_result = _no_validation  # type: ignore[method-assign]

    async def call_raw(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Call a tool; the ``CallToolResult`` (``ToolFailed`` on ``isError``)."""
        result = await self.client.call_tool(tool, arguments)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise ToolFailed(f"{self.name} {tool}: {text[:2000]}\n--- server log ---\n{self.logs()[-2000:]}")
        return result

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool; its structured result, or ``ToolFailed``."""
        result = await self.client.call_tool(tool, arguments)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise ToolFailed(f"{tool}: {text}\n--- server log ---\n{self.logs()[-2000:]}")
        return result.structured_content or {}

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def logs(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text()


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    """Seconds one awaited call took."""
    began = time.perf_counter()
    await call()
    return time.perf_counter() - began


async def latencies(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    """Seconds each of ``count`` sequential calls took."""
    return [await timed(call) for _ in range(count)]


# -- the report ---------------------------------------------------------------------------------


@dataclass
class Row:
    measurement: str
    target: str
    measured: str
    ratio: str
    verdict: str  # "pass", "FAIL" or "info"


@dataclass
class Report:
    """Rows for the summary table, plus free-form notes printed as they come."""

    rows: list[Row] = field(default_factory=list)

    def row(self, measurement: str, target: str, measured: str, ratio: str, ok: bool | None) -> None:
        verdict = "info" if ok is None else ("pass" if ok else "FAIL")
        self.rows.append(Row(measurement, target, measured, ratio, verdict))
        print(f"  => {measurement}: {measured}; {ratio} [target {target}] {verdict}", flush=True)

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def table(self) -> str:
        """The rows as an RST grid table."""
        header = Row("measurement", "target", "measured", "ratio", "verdict")
        rows = [header, *self.rows]
        cols = list(zip(*[(r.measurement, r.target, r.measured, r.ratio, r.verdict) for r in rows], strict=True))
        widths = [max(len(c) for c in col) for col in cols]

        def line(char: str) -> str:
            return "+" + "+".join(char * (w + 2) for w in widths) + "+"

        def cells(row: Row) -> str:
            values = (row.measurement, row.target, row.measured, row.ratio, row.verdict)
            return "|" + "|".join(f" {v:<{w}} " for v, w in zip(values, widths, strict=True)) + "|"

        out = [line("-"), cells(header), line("=")]
        for row in self.rows:
            out += [cells(row), line("-")]
        return "\n".join(out)


@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    """Print a heading and the wall time the section took."""
    print(f"\n== {title}", flush=True)
    began = time.monotonic()
    yield
    print(f"  [{title}: {time.monotonic() - began:.1f} s]", flush=True)
