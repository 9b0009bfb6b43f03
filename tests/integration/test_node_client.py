"""Both servers driven by a client built on another MCP SDK: the official TypeScript SDK.

``tests/node/client.mjs`` (``@modelcontextprotocol/sdk``, exact version pinned in
``tests/node/package.json`` and locked in ``package-lock.json``) connects over stdio or streamable
HTTP, lists the tools and calls a script of tools, printing one JSON line per event. The SDK client
validates every ``structuredContent`` against the tool's ``outputSchema`` itself; a call marked
``corrupt`` proves that this validation is active.

Without ``node``/``npm`` (or when ``npm ci`` cannot fetch the packages) the tests skip, except under
``CI=true`` where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..conftest import service_unavailable
from .http import HttpServer
from .tenants import MINIO_TOOLS, POSTGRES_TOOLS

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
STAMP = NODE_DIR / "node_modules" / ".mcp-tenants-lock.sha256"
PROTOCOL_VERSIONS = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}
RUN_TIMEOUT = 60


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_DIR / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """``[node, client.mjs]`` with ``npm ci`` run into tests/node once (skipped when up to date)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        service_unavailable("node and npm are needed for the TypeScript SDK client tests (not on PATH)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < 18:
        service_unavailable(f"node {version or '?'} is too old for @modelcontextprotocol/sdk (needs >= 18)")
    digest = lock_digest()
    if not (STAMP.is_file() and STAMP.read_text().strip() == digest):
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            service_unavailable("npm ci in tests/node did not finish within 300 s")
        if done.returncode != 0:
            service_unavailable(f"npm ci in tests/node failed ({done.returncode}):\n{done.stderr[-3000:]}")
        STAMP.write_text(digest + "\n")
    return [node, str(NODE_DIR / "client.mjs")]


def run_client(node_client: list[str], config: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Run client.mjs with ``config`` on stdin; return its JSON-line events and its stderr."""
    done = subprocess.run(
        node_client,
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=NODE_DIR,
        check=False,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    failed = any(e["event"] == "error" for e in events)
    assert (done.returncode != 0) == failed, f"exit {done.returncode}, events {events}\n{done.stderr}"
    return events, done.stderr


def stdio_config(module: str, env: dict[str, str], calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-m", module],
        "cwd": str(ROOT),
        "env": {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **env},
        "calls": calls,
    }


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def check_handshake_and_tools(events: list[dict[str, Any]], stderr: str, expected: set[str]) -> None:
    """Initialized on a version both SDKs speak; every tool has an outputSchema the SDK compiled."""
    assert not of(events, "error"), f"{events}\n{stderr}"
    (init,) = of(events, "initialized")
    assert init["protocolVersion"] in PROTOCOL_VERSIONS
    assert "tools" in init["capabilities"]
    (listing,) = of(events, "tools")
    tools = {t["name"]: t for t in listing["tools"]}
    assert set(tools) == expected
    for name, tool in tools.items():
        assert tool["outputSchema"] and tool["outputSchema"].get("type") == "object", name
        assert tool["validatorArmed"] is True, name  # the SDK compiled it with Ajv
        hints = tool["annotations"] or {}
        for hint in ("readOnlyHint", "destructiveHint", "idempotentHint"):
            assert isinstance(hints.get(hint), bool), (name, hint, hints)


def ok(call: dict[str, Any]) -> dict[str, Any]:
    """The structuredContent of a successful, SDK-validated call."""
    assert "exception" not in call and call["isError"] is False, call
    assert call["validated"] is True, call
    return call["structuredContent"]


def test_postgres_server_over_stdio(node_client, pg_database, redis_db):
    register = {"tenant_id": "acme", **{k: pg_database[k] for k in ("host", "port", "database", "user", "password")}}
    calls = [
        {"tool": "register_tenant", "arguments": register},
        {"tool": "list_tenants"},
        {
            "tool": "query",
            "arguments": {"tenant_id": "acme", "sql": "SELECT $1::int + 1 AS answer, now() AS at", "params": [41]},
        },
        {"tool": "list_tables", "arguments": {"tenant_id": "acme"}},
        {"tool": "explain_query", "arguments": {"tenant_id": "acme", "sql": "SELECT 1"}},
        {"tool": "query", "arguments": {"tenant_id": "nobody", "sql": "SELECT 1"}},
        {"tool": "list_tenants", "corrupt": True},
    ]
    events, stderr = run_client(node_client, stdio_config("mcp_tenants.postgres", redis_db.env(), calls))
    check_handshake_and_tools(events, stderr, POSTGRES_TOOLS)
    registered, tenants, query, tables, plan, unknown, corrupted = of(events, "call")

    result = ok(registered)
    assert result["persisted"] is True and result["tenant"]["tenant_id"] == "acme"
    assert [(t["tenant_id"], t["source"]) for t in ok(tenants)["tenants"]] == [("acme", "redis")]
    rows = ok(query)
    assert rows["rows"][0][0] == 42 and isinstance(rows["rows"][0][1], str)
    assert [c["name"] for c in rows["columns"]] == ["answer", "at"] and rows["truncated"] is False
    assert ok(tables)["tables"] == []
    ok(plan)

    assert unknown["isError"] is True and "exception" not in unknown
    assert "unknown tenant 'nobody'" in unknown["text"] and "register_tenant" in unknown["text"]
    assert "Traceback" not in unknown["text"]

    # A response that breaks the outputSchema is rejected by the TypeScript SDK itself.
    assert "does not match the tool's output schema" in corrupted["exception"]["message"], corrupted

    transcript = json.dumps(events)
    assert pg_database["password"] not in transcript and pg_database["password"] not in stderr


def test_minio_server_over_stdio(node_client, s3_service, redis_db):
    bucket = f"node-{uuid.uuid4().hex[:12]}"
    target = {"tenant_id": "media", "bucket": bucket}
    calls = [
        {
            "tool": "register_tenant",
            "arguments": {
                "tenant_id": "media",
                "endpoint": s3_service.endpoint,
                "access_key": s3_service.access_key,
                "secret_key": s3_service.secret_key,
                "region": s3_service.region,
                "access": "read-write",
            },
        },
        {"tool": "create_bucket", "arguments": target},
        {"tool": "put_object", "arguments": {**target, "key": "docs/hello.txt", "content": "hi from node"}},
        {"tool": "get_object", "arguments": {**target, "key": "docs/hello.txt"}},
        {"tool": "list_objects", "arguments": target},
        {"tool": "stat_object", "arguments": {**target, "key": "docs/hello.txt"}},
        {"tool": "get_object", "arguments": {**target, "key": "missing.txt"}},
        {"tool": "delete_object", "arguments": {**target, "key": "docs/hello.txt"}},
        {"tool": "delete_bucket", "arguments": target},
    ]
    events, stderr = run_client(node_client, stdio_config("mcp_tenants.minio", redis_db.env(), calls))
    check_handshake_and_tools(events, stderr, MINIO_TOOLS)
    registered, created, put, got, listed, stat, missing, deleted_object, deleted_bucket = of(events, "call")

    result = ok(registered)
    assert result["persisted"] is True and result["tenant"]["access"] == "read-write"
    ok(created)
    assert ok(put)["etag"]
    content = ok(got)
    assert (content["content"], content["encoding"], content["truncated"]) == ("hi from node", "text", False)
    objects = ok(listed)
    assert [(o["key"], o["size"]) for o in objects["objects"]] == [("docs/hello.txt", 12)]
    assert ok(stat)["size"] == 12
    assert missing["isError"] is True and "missing.txt" in missing["text"]
    ok(deleted_object)
    ok(deleted_bucket)

    transcript = json.dumps(events)
    assert s3_service.secret_key not in transcript and s3_service.secret_key not in stderr


def test_postgres_server_over_http_with_bearer_token(node_client, redis_db):
    token = secrets.token_urlsafe(24)
    server = HttpServer("mcp_tenants.postgres", {**redis_db.env(), "MCP_AUTH_TOKEN": token})
    try:
        server.wait_ready()
        http = {"transport": "http", "url": server.url, "calls": [{"tool": "list_tenants"}]}

        events, stderr = run_client(node_client, {**http, "headers": {"Authorization": f"Bearer {token}"}})
        check_handshake_and_tools(events, stderr, POSTGRES_TOOLS)
        (listed,) = of(events, "call")
        assert ok(listed)["tenants"] == []

        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            events, _ = run_client(node_client, {**http, "headers": headers})
            (error,) = of(events, "error")
            assert error["stage"] == "connect" and error["code"] == 401, error
            assert not of(events, "call")
        assert token not in server.logs()
        assert server.stop() == 0
    finally:
        server.close()
