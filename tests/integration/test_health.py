"""The health-check command against a real server process on streamable HTTP.

Redis is deliberately down (a closed port): the server still serves, so it is still healthy.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tenants.devservices import free_ports
from mcp_tenants.health import Unhealthy, check

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


class HttpServer:
    """``python -m mcp_tenants.postgres`` on streamable HTTP, stopped by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.port, redis_port = free_ports(2)  # nothing listens on redis_port: Redis is down
        self.token = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = workdir / "server.log"
        env = clean_env(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_port), MCP_AUTH_TOKEN=self.token)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mcp_tenants.postgres",
                    "--transport",
                    "streamable-http",
                    "--port",
                    str(self.port),
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                check(self.url, self.token, timeout=2)
                return
            except Unhealthy:
                if time.monotonic() > deadline:
                    pytest.fail(f"server not answering after {START_TIMEOUT:.0f} s:\n{self.log.read_text()}")
                time.sleep(0.1)

    def terminate(self) -> int:
        """SIGTERM by PID; return the exit status (SIGKILL after a generous wait)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no MCP_*, REDIS_* or tenant variables from the developer's shell."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    return {**keep, "PYTHONPATH": str(ROOT), **extra}


def run_health(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the health command the way the Docker HEALTHCHECK does (a fresh process)."""
    return subprocess.run(
        [sys.executable, "-m", "mcp_tenants.health", *args],
        cwd=workdir,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    workdir = tmp_path_factory.mktemp("health")
    running = HttpServer(workdir)
    try:
        running.wait_until_answering()
        yield running
    finally:
        running.terminate()


def test_healthy_server_with_the_right_token_exits_0_with_one_line(server: HttpServer, tmp_path: Path) -> None:
    result = run_health(tmp_path, "--url", server.url, MCP_AUTH_TOKEN=server.token)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("healthy:")
    assert "mcp-postgres-server" in result.stderr
    assert server.token not in result.stderr


def test_default_url_uses_mcp_port(server: HttpServer, tmp_path: Path) -> None:
    result = run_health(tmp_path, MCP_PORT=str(server.port), MCP_AUTH_TOKEN=server.token)
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{server.port}/mcp" in result.stderr


def test_token_and_port_are_read_from_dotenv(server: HttpServer, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"MCP_AUTH_TOKEN={server.token}\nMCP_PORT={server.port}\n")
    result = run_health(tmp_path)
    assert result.returncode == 0, result.stderr


def test_wrong_token_exits_1_and_does_not_echo_it(server: HttpServer, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    result = run_health(tmp_path, "--url", server.url, MCP_AUTH_TOKEN=wrong)
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy:") and "401" in result.stderr
    assert "MCP_AUTH_TOKEN" in result.stderr
    assert wrong not in result.stderr and server.token not in result.stderr


def test_missing_token_exits_1(server: HttpServer, tmp_path: Path) -> None:
    result = run_health(tmp_path, "--url", server.url)
    assert result.returncode == 1
    assert "401" in result.stderr


def test_closed_port_exits_1(tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    result = run_health(tmp_path, "--url", f"http://127.0.0.1:{closed}/mcp", "--timeout", "3", MCP_AUTH_TOKEN="x" * 20)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot connect" in result.stderr


def test_not_an_http_url_exits_1(tmp_path: Path) -> None:
    result = run_health(tmp_path, "--url", "file:///etc/passwd")
    assert result.returncode == 1
    assert "http://" in result.stderr


def test_sigterm_stops_a_healthy_server_with_exit_0(tmp_path: Path) -> None:
    server = HttpServer(tmp_path)
    try:
        server.wait_until_answering()
        assert run_health(tmp_path, "--url", server.url, MCP_AUTH_TOKEN=server.token).returncode == 0
    finally:
        status = server.terminate()
    assert status == 0, server.log.read_text()
    assert run_health(tmp_path, "--url", server.url, MCP_AUTH_TOKEN=server.token).returncode == 1
