"""``python -m mcp_tenants.quickstart`` end to end, as the README's first command runs it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_tenants.crypto import generate_key
from mcp_tenants.devservices import ServiceUnavailable, postgres_bindir, weed_binary

from ..conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # generous: three services and four server processes on a slow machine


def clean_env(**extra: str) -> dict[str, str]:
    """No REDIS_*, MCP_* or tenant variables from the developer's shell."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    return {**keep, "PYTHONPATH": str(ROOT), **extra}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_tenants.quickstart", *args]


def require_local_services() -> None:
    """The throwaway services quickstart starts: skip without them, fail under CI."""
    try:
        if shutil.which("redis-server") is None:
            raise ServiceUnavailable("redis-server not found")
        postgres_bindir()
        weed_binary()
    except ServiceUnavailable as exc:
        service_unavailable(f"quickstart needs its local services: {exc}")


def client_config(stdout: str) -> dict[str, Any]:
    """The mcpServers JSON block of the report (from a line "{" to the line "}")."""
    lines = stdout.splitlines()
    start = lines.index("{")
    end = lines.index("}", start)
    return json.loads("\n".join(lines[start : end + 1]))


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_quickstart_runs_the_scenario_on_throwaway_services_and_stops_them(tmp_path: Path) -> None:
    require_local_services()
    result = subprocess.run(
        command(), cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert "started a throwaway redis-server" in out
    assert "started a throwaway cluster" in out and "throwaway SeaweedFS S3 server" in out
    assert out.count("register_tenant 'quickstart'") == 2
    assert out.count("persisted in Redis key") == 2 and "secret sealed" in out
    assert out.count("restarted the server") == 2
    assert out.count("'quickstart' is still there (source: redis)") == 2
    assert '["apples", 3], ["pears", 5], ["plums", 8]' in out
    assert "create_bucket 'quickstart-demo': created" in out
    assert "list_buckets: quickstart-demo" in out
    assert "All steps passed." in out
    assert "stop when quickstart exits" in out and "--keep-running" in out

    servers = client_config(out)["mcpServers"]
    assert set(servers) == {"postgres", "minio"}
    assert servers["postgres"]["env"]["REDIS_DB"] == "0" and servers["minio"]["env"]["REDIS_DB"] == "1"
    for server in servers.values():
        assert Path(server["command"]).is_file()
    # Everything it started is gone: the Redis port of the printed configuration is closed.
    assert not port_open(int(servers["postgres"]["env"]["REDIS_PORT"]))


def test_keep_running_serves_the_printed_configuration_until_interrupted(tmp_path: Path) -> None:
    require_local_services()
    out_path = tmp_path / "stdout.txt"
    with out_path.open("w") as out, (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            command("--keep-running"), cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while "keep running until you press Ctrl-C" not in out_path.read_text():
            assert proc.poll() is None, f"quickstart exited early:\n{out_path.read_text()}"
            assert time.monotonic() < deadline, "quickstart never reached --keep-running"
            time.sleep(0.2)
        servers = client_config(out_path.read_text())["mcpServers"]

        # A desktop client started with exactly this configuration finds and uses the tenants.
        async def use(entry: dict[str, Any], tool: str, **arguments: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            env = {**clean_env(), **entry["env"]}
            params = StdioServerParameters(command=entry["command"], args=entry.get("args", []), env=env, cwd=tmp_path)
            async with Client(stdio_client(params), mode="legacy") as client:
                listed = await client.call_tool("list_tenants", {})
                used = await client.call_tool(tool, {"tenant_id": "quickstart", **arguments})
                assert not used.is_error, used.content
                return listed.structured_content or {}, used.structured_content or {}

        listed, rows = asyncio.run(use(servers["postgres"], "query", sql="SELECT count(*) AS n FROM quickstart_orders"))
        assert {"tenant_id": "quickstart", "source": "redis"}.items() <= listed["tenants"][0].items()
        assert rows["rows"] == [[3]]
        _, buckets = asyncio.run(use(servers["minio"], "list_buckets"))
        assert [b["name"] for b in buckets["buckets"]] == ["quickstart-demo"]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=120)
    assert status == 0, (tmp_path / "stderr.txt").read_text()
    assert not port_open(int(servers["postgres"]["env"]["REDIS_PORT"]))


def test_configured_redis_and_tenant_are_used_and_dead_demo_tenants_are_forgotten(
    tmp_path: Path, redis_db, pg_database
) -> None:
    require_local_services()
    key = generate_key()
    env = clean_env(
        **redis_db.env(),
        MCP_TENANT_ENCRYPTION_KEY=key,
        POSTGRES_TENANT_APP_HOST=pg_database["host"],
        POSTGRES_TENANT_APP_PORT=str(pg_database["port"]),
        POSTGRES_TENANT_APP_DATABASE=pg_database["database"],
        POSTGRES_TENANT_APP_USER=pg_database["user"],
        POSTGRES_TENANT_APP_PASSWORD=pg_database["password"],
    )
    result = subprocess.run(
        command(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert "Redis: yours" in out and "throwaway redis-server" not in out
    assert "PostgreSQL: yours, the database of environment tenant 'app'" in out
    assert f'1 row(s): ["{pg_database["database"]}", "{pg_database["user"]}"]' in out
    assert "throwaway SeaweedFS S3 server" in out and "list_buckets: quickstart-demo" in out
    # The PostgreSQL demo tenant targets the user's database: it stays, sealed. The S3 one targeted
    # a throwaway server that has stopped: it is gone.
    stored = redis_db.client.get("mcp:postgres:tenant:quickstart")
    assert stored and pg_database["password"] not in stored
    assert redis_db.client.get("mcp:minio:tenant:quickstart") is None
    assert "Removed mcp:minio:tenant:quickstart from your Redis" in out
    # Secrets of the user's setup never reach the report.
    config = client_config(out)["mcpServers"]["postgres"]["env"]
    assert config["MCP_TENANT_ENCRYPTION_KEY"] == "<your MCP_TENANT_ENCRYPTION_KEY>"
    assert config["REDIS_PASSWORD"] == "<your REDIS_PASSWORD>"
    for secret in (key, redis_db.password, pg_database["password"]):
        assert secret not in out and secret not in result.stderr
