"""Several server processes on streamable HTTP (stateless) behind a throwaway HAProxy.

``ReplicaFleet`` starts ``count`` replicas of ``mcp-postgres-server`` (or the MinIO server) on
free loopback ports, all on the same Redis, and HAProxy in front of them; ``kill(n)`` SIGKILLs a
replica by its PID, ``terminate(n)`` sends SIGTERM. ``call_tool`` is a minimal MCP client (one
JSON-RPC ``tools/call`` POST; stateless servers need no ``initialize``) used by the fleet tests
and the load benchmark, where the SDK's client would cost more than the call it measures.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from typing import Any

from mcp_tenants.devservices.base import (
    LOOPBACK,
    ServiceUnavailable,
    free_ports,
    http_server_command,
    log_tail,
    stop_pid,
    wait_until,
)
from mcp_tenants.devservices.haproxy_service import HAProxyService

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "2025-06-18"


class ToolCallFailed(Exception):
    """The call did not return a result: an HTTP error, a dropped connection or a tool error."""


class Replica:
    """One server process on streamable HTTP; its log goes to a file in the fleet's temp dir."""

    def __init__(self, module: str, env: dict[str, str], port: int, log: str) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                http_server_command(module, LOOPBACK, port),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def listening(self) -> bool:
        """True once the process answers HTTP at all (any status)."""
        if self.process.poll() is not None:
            raise ServiceUnavailable(f"replica exited with {self.process.returncode}{log_tail(self.log)}")
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process by its PID and reap it; returns its exit code."""
        if self.process.poll() is None:
            stop_pid(self.process.pid, sig, timeout=20)
        return self.process.wait()


class ReplicaFleet:
    """``count`` server replicas and HAProxy in front; a context manager that stops them all."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        count: int = 3,
        module: str = "mcp_tenants.postgres",
        health_path: str | None = "/readyz",
    ) -> None:
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **env}
        self.count = count
        self.module = module
        self.health_path = health_path
        self.tmpdir = tempfile.mkdtemp(prefix="mcp-fleet-")
        self.replicas: list[Replica] = []
        self.proxy: HAProxyService | None = None

    @property
    def url(self) -> str:
        """The load balancer's base URL."""
        assert self.proxy is not None
        return self.proxy.url

    def replica_url(self, n: int) -> str:
        """Base URL of replica ``n``, bypassing the load balancer."""
        return f"http://{LOOPBACK}:{self.replicas[n].port}"

    def start(self) -> None:
        """Start every replica (in parallel), then HAProxy; return once every replica is in rotation."""
        began = time.monotonic()
        try:
            for n, port in enumerate(free_ports(self.count)):
                self.replicas.append(Replica(self.module, self.env, port, os.path.join(self.tmpdir, f"r{n}.log")))
            for replica in self.replicas:
                wait_until(replica.listening, 90, f"replica on port {replica.port}", replica.log)
            self.proxy = HAProxyService([(LOOPBACK, r.port) for r in self.replicas], health_path=self.health_path)
            self.proxy.start()
            self.proxy.wait_states({f"r{n}": "UP" for n in range(self.count)})
        except BaseException:
            self.stop()
            raise
        logger.info("%d replicas behind haproxy ready in %.1f s", self.count, time.monotonic() - began)

    def kill(self, n: int) -> None:
        """SIGKILL replica ``n`` by its PID, like a crash."""
        self.replicas[n].stop(signal.SIGKILL)

    def terminate(self, n: int) -> int | None:
        """SIGTERM replica ``n`` (a graceful stop) and wait for it; returns its exit code."""
        return self.replicas[n].stop(signal.SIGTERM)

    def logs(self) -> str:
        """Every replica's log, for the secret audit and failure messages."""
        texts = []
        for n, replica in enumerate(self.replicas):
            try:
                with open(replica.log, encoding="utf-8", errors="replace") as f:
                    texts.append(f"--- replica r{n} ---\n{f.read()}")
            except OSError:
                pass
        return "\n".join(texts)

    def stop(self) -> None:
        """Stop HAProxy and every replica by PID; remove the temp dir."""
        import shutil

        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for replica in self.replicas:
            replica.stop(signal.SIGKILL)
        self.replicas = []
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> ReplicaFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ToolClient:
    """A minimal MCP client on one keep-alive HTTP connection: ``call(name, **arguments)``.

    Not thread-safe: one per thread. A dropped connection is reported as ``ToolCallFailed`` and
    the next call opens a new one.
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 30) -> None:
        host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
        self._address = (host, int(port or 80))
        self._timeout = timeout
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL_VERSION,
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._connection: http.client.HTTPConnection | None = None
        self._id = 0

    def call(self, name: str, **arguments: Any) -> Any:
        """The structured result of one tool call; ``ToolCallFailed`` otherwise."""
        self._id += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "id": self._id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
        )
        if self._connection is None:
            self._connection = http.client.HTTPConnection(*self._address, timeout=self._timeout)
        try:
            self._connection.request("POST", "/mcp", body=body, headers=self._headers)
            response = self._connection.getresponse()
            payload = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ToolCallFailed(f"{name}: {type(exc).__name__}: {exc}") from None
        if response.status != 200:
            self.close()
            raise ToolCallFailed(f"{name}: HTTP {response.status}: {payload[:200]}")
        return _result(name, payload)

    def close(self) -> None:
        """Drop the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _result(name: str, payload: str) -> Any:
    """The structured content of the JSON-RPC answer in ``payload`` (plain JSON or server-sent events)."""
    lines = [line[5:].strip() for line in payload.splitlines() if line.startswith("data:")]
    for text in lines or [payload]:
        try:
            message = json.loads(text)
        except ValueError:
            continue
        if "error" in message:
            raise ToolCallFailed(f"{name}: JSON-RPC error {message['error'].get('message')}")
        result = message.get("result") or {}
        if result.get("isError"):
            texts = [c.get("text", "") for c in result.get("content", [])]
            raise ToolCallFailed(f"{name}: tool error: {' '.join(texts)}")
        return result.get("structuredContent")
    raise ToolCallFailed(f"{name}: no JSON-RPC answer in the response")
