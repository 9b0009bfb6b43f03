"""Start a server process on streamable HTTP and talk to it, for transport and auth tests."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_tenants.devservices import free_ports
from mcp_tenants.devservices.base import http_server_command
from tests import audit

ROOT = Path(__file__).resolve().parents[2]


class HttpServer:
    """A server subprocess on streamable HTTP; stopped by its PID."""

    def __init__(self, module: str, env: dict[str, str], *args: str, host: str = "127.0.0.1") -> None:
        self.module = module
        (self.port,) = free_ports(1)
        self.host = host
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mcp-http-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **env}
        self.process = subprocess.Popen(
            http_server_command(module, host, self.port, *args),
            env=full_env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                urllib.request.urlopen(self.url, timeout=1)
            except urllib.error.HTTPError:
                return  # any HTTP answer means it is listening
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not listen within {timeout} s:\n{self.logs()}")

    def status_of(self, token: str | None) -> int:
        """HTTP status of an initialize POST with this bearer token (None: no header)."""
        body = (
            b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
            b'"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}'
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def client(self, token: str | None) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = streamable_http_client(self.url, http_client=httpx2.AsyncClient(headers=headers, timeout=30))
        return Client(transport)

    def stop(self) -> int:
        """SIGTERM by PID; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def close(self) -> None:
        audit.record(f"{self.module} http log", self.logs())
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        os.unlink(self.log.name)
