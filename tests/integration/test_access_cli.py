"""``mcp-tenants key`` and ``mcp-tenants audit`` as an operator runs them: subprocesses on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcp_tenants.access.audit import AuditLog
from mcp_tenants.access.keys import hash_key
from mcp_tenants.redisconn import make_redis_client
from mcp_tenants.settings import RedisSettings
from tests import audit

from .stdio import ROOT


@pytest.fixture
def cli(redis_db):
    def run(*args: str, server: str = "postgres"):
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **redis_db.env()}
        done = subprocess.run(
            [sys.executable, "-m", "mcp_tenants.cli", "--server", server, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        return done.returncode, done.stdout, done.stderr

    return run


def test_key_lifecycle_through_the_cli_keeps_only_hashes_in_redis(cli, redis_db):
    code, out, err = cli("key", "create", "sales-team", "--tenants", "sales_*", "--role", "writer", "--expires", "90d")
    assert code == 0, err
    key = out.splitlines()[-1]
    audit.secret(key)
    assert key.startswith("mcpk_") and out.count(key) == 1
    dump = json.dumps({k: redis_db.client.dump(k).hex() for k in redis_db.client.keys("*")})
    assert key not in dump and key.encode().hex() not in dump
    assert redis_db.client.hexists("mcp:postgres:api-keys", hash_key(key))

    code, listing, _ = cli("key", "list", "--json")
    (row,) = json.loads(listing)["keys"]
    assert code == 0 and row["name"] == "sales-team" and row["tenants"] == ["sales_*"] and key not in listing
    code, _, err = cli("key", "create", "sales-team", "--tenants", "*", "--role", "reader")
    assert code == 1 and "exists" in err
    code, _, err = cli("key", "create", "x", "--tenants", "sales.*", "--role", "reader")
    assert code == 2 and "pattern" in err
    assert cli("key", "list", server="minio")[1].strip() == "no API keys"  # keys are per server
    assert cli("key", "revoke", "sales-team")[0] == 0
    assert not redis_db.client.exists("mcp:postgres:api-keys")
    code, _, err = cli("key", "revoke", "sales-team")
    assert code == 1 and "no API key named 'sales-team'" in err


def test_audit_reads_what_the_servers_wrote(cli, redis_db):
    client = make_redis_client(RedisSettings.from_env(redis_db.env(), default_db=0))
    with AuditLog(client, "postgres") as log:
        log.record(
            principal="sales-team",
            kind="key",
            tenant="sales_eu",
            tool="query",
            subject="SELECT 1",
            outcome="ok",
            duration_ms=1.5,
            rows=1,
        )
        log.record(
            principal="hr",
            kind="oauth",
            tenant="hr",
            tool="execute",
            outcome="error",
            error="AccessDenied",
            duration_ms=0.2,
        )
    code, out, _ = cli("audit", "--since", "1h")
    assert code == 0 and len(out.splitlines()) == 2 and "sales_eu" in out and "error(AccessDenied)" in out
    code, out, _ = cli("audit", "--principal", "oauth:hr", "--json")
    (record,) = json.loads(out)["records"]
    assert record["tool"] == "execute" and record["duration_ms"] == 0.2
    assert cli("audit", "--tenant", "nobody")[2].strip() == "no matching audit records"
