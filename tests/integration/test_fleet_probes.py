"""One server process over HTTP with a token: probes without authentication, metrics, draining."""

from __future__ import annotations

import json
import secrets
import signal
import time
import urllib.error
import urllib.request

from mcp_tenants.devservices import free_ports
from mcp_tenants.devservices.replica_fleet import ToolClient
from tests import audit

from .http import HttpServer


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_need_no_token_metrics_count_calls_and_sigterm_drains(redis_db) -> None:
    token = secrets.token_urlsafe(24)
    audit.secret(token)
    (metrics_port,) = free_ports(1)
    env = {**redis_db.env(), "MCP_AUTH_TOKEN": token, "MCP_METRICS_PORT": str(metrics_port), "MCP_DRAIN_SECONDS": "2"}
    server = HttpServer("mcp_tenants.postgres", env)
    base = f"http://127.0.0.1:{server.port}"
    try:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while get(base + "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(base + "/readyz") == (200, json.dumps({"status": "ready", "redis": "up"}))
        assert get(base + "/healthz")[0] == 200
        assert server.status_of(None) == 401  # the MCP endpoint still wants the token
        ToolClient(base, token=token).call("list_tenants")
        status, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert 'mcp_tool_calls_total{outcome="ok",server="postgres",tool="list_tenants"} 1.0' in text
        assert 'mcp_redis_up{server="postgres"} 1.0' in text

        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while get(base + "/readyz")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        status, body = get(base + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        # Still serving while it drains: a load balancer has time to stop sending.
        assert ToolClient(base, token=token).call("list_tenants")["tenants"] == []
        assert server.process.wait(timeout=30) == 0
    finally:
        server.close()
