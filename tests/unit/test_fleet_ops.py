"""Health endpoints and metrics, served for real (uvicorn and prometheus_client on free ports)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from mcp_tenants.devservices import free_ports
from mcp_tenants.ops import HealthEndpoints, Metrics, PrometheusMetrics, Readiness, metrics_for


def get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def locked_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Stands for the MCP app behind authentication: every request is 401."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b"no"})


@pytest.fixture
def served() -> Iterator[tuple[str, Readiness, list[bool]]]:
    """``HealthEndpoints`` around ``locked_app`` on a real uvicorn; yields (base URL, readiness, redis flag)."""
    redis = [True]
    readiness = Readiness(redis_up=lambda: redis[0])
    (port,) = free_ports(1)
    server = uvicorn.Server(
        uvicorn.Config(HealthEndpoints(locked_app, readiness), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", readiness, redis
    finally:
        server.should_exit = True
        thread.join(10)


def test_readiness_follows_start_and_shutdown_without_authentication(served: Any) -> None:
    base, readiness, redis = served
    assert get(base + "/healthz") == (200, json.dumps({"status": "starting", "redis": "up"}))
    status, body = get(base + "/readyz")
    assert status == 503 and json.loads(body)["status"] == "starting"
    readiness.mark_ready()
    assert get(base + "/readyz")[0] == 200
    assert get(base + "/readyz", "HEAD")[0] == 200
    redis[0] = False  # Redis down: still ready (the servers serve from memory), and the body says so
    assert get(base + "/readyz") == (200, json.dumps({"status": "ready", "redis": "down"}))
    readiness.mark_draining()
    status, body = get(base + "/readyz")
    assert status == 503 and json.loads(body)["status"] == "draining"
    assert get(base + "/healthz")[0] == 200  # alive while it drains
    readiness.mark_ready()  # never back from draining
    assert get(base + "/readyz")[0] == 503
    # Every other path still goes through the wrapped app (and its authentication).
    assert get(base + "/mcp")[0] == 401
    assert get(base + "/healthz/x")[0] == 401


def test_a_failing_redis_probe_reads_as_down() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    assert Readiness(redis_up=broken).body() == {"status": "starting", "redis": "down"}
    assert Readiness().body()["redis"] == "none"


def test_metrics_count_calls_by_tool_and_outcome_and_read_gauges_at_scrape() -> None:
    metrics = metrics_for("postgres", free_ports(1)[0])
    assert isinstance(metrics, PrometheusMetrics)
    (port,) = free_ports(1)
    pools = [3]

    def broken() -> float:
        raise RuntimeError("source gone")

    metrics.watch(open_pools=lambda: pools[0], redis_up=lambda: True, queued_writes=broken, audit_dropped=lambda: 7)
    metrics.serve("127.0.0.1", port)
    try:
        metrics.call_started("query")
        metrics.call_started("query")
        metrics.call_finished("query", "ok", 0.02)
        metrics.call_started("list_tenants")
        metrics.call_finished("list_tenants", "error", 1.5)
        pools[0] = 4
        status, text = get(f"http://127.0.0.1:{port}/metrics")
    finally:
        metrics.close()
    assert status == 200
    lines = set(text.splitlines())
    assert 'mcp_tool_calls_total{outcome="ok",server="postgres",tool="query"} 1.0' in lines
    assert 'mcp_tool_calls_total{outcome="error",server="postgres",tool="list_tenants"} 1.0' in lines
    assert 'mcp_tool_calls_in_flight{server="postgres",tool="query"} 1.0' in lines
    assert 'mcp_tool_call_duration_seconds_bucket{le="0.025",server="postgres",tool="query"} 1.0' in lines
    assert 'mcp_tool_call_duration_seconds_bucket{le="1.0",server="postgres",tool="list_tenants"} 0.0' in lines
    assert 'mcp_open_pools{server="postgres"} 4.0' in lines
    assert 'mcp_redis_up{server="postgres"} 1.0' in lines
    assert 'mcp_audit_records_dropped_total{server="postgres"} 7.0' in lines
    assert not any(line.startswith("mcp_redis_queued_writes{") for line in lines)  # its source failed
    assert "tenant" not in text.replace("tenants", "")  # no per-tenant label anywhere


def test_without_a_port_metrics_are_a_no_op_and_prometheus_is_never_imported() -> None:
    assert type(metrics_for("minio", None)) is Metrics
    code = (
        "import sys; from mcp_tenants import ops; m = ops.metrics_for('minio', None); "
        "m.call_started('x'); m.call_finished('x', 'ok', 0.1); m.watch(open_pools=lambda: 1); "
        "assert 'prometheus_client' not in sys.modules and 'starlette' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class FakeStore:
    available = True

    def pending_ids(self) -> set[str]:
        return {"a", "b"}


class FakeManager:
    def open_count(self) -> int:
        return 5


def test_ops_feeds_metrics_from_call_records_and_drains_before_stopping() -> None:
    import asyncio

    from mcp_tenants.ops import Ops, outcome_of
    from mcp_tenants.settings import Settings

    assert [outcome_of(r) for r in ({"outcome": "ok"}, {"error": "InternalError"}, {"error": "AccessDenied"})] == [
        "ok",
        "internal_error",
        "denied",
    ]
    assert outcome_of({"outcome": "error", "error": "TenantNotFound"}) == "error"
    port = free_ports(1)[0]
    settings = Settings.from_env("postgres", {"MCP_METRICS_PORT": str(port), "MCP_DRAIN_SECONDS": "0"})
    ops = Ops("postgres", settings, store=FakeStore(), manager=FakeManager())
    ops.start()
    try:
        ops.observer.call_started("query")
        ops.observer.call_finished({"tool": "query", "outcome": "ok", "duration_ms": 12.5, "tenant": "acme"})
        ops.readiness.mark_ready()
        lines = set(get(f"http://127.0.0.1:{port}/metrics")[1].splitlines())
        assert 'mcp_tool_calls_total{outcome="ok",server="postgres",tool="query"} 1.0' in lines
        assert {'mcp_open_pools{server="postgres"} 5.0', 'mcp_redis_queued_writes{server="postgres"} 2.0'} <= lines
        assert 'mcp_ready{server="postgres"} 1.0' in lines
        asyncio.run(ops.drain())
        assert ops.readiness.state == "draining"
        assert 'mcp_ready{server="postgres"} 0.0' in get(f"http://127.0.0.1:{port}/metrics")[1].splitlines()
    finally:
        ops.close()
