"""The mcp-tenants operator CLI as an operator runs it: a subprocess on a real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcp_tenants.crypto import generate_key
from tests import audit

from .stdio import ROOT

COMMANDS = ["list", "show", "add", "remove", "export", "import", "rotate-key", "doctor", "generate-key"]


@pytest.fixture
def cli(redis_db):
    """Run ``mcp-tenants`` with the test's Redis; returns (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str = "", **env: str):
        full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **redis_db.env(), **env}
        done = subprocess.run(
            [sys.executable, "-m", "mcp_tenants.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=ROOT,
            timeout=120,
        )
        if "--include-secrets" not in args:  # that export prints secrets on purpose
            audit.record(f"mcp-tenants {' '.join(args[:2])}", done.stdout + done.stderr)
        return done.returncode, done.stdout, done.stderr

    return run


def add_args(pg, tenant_id="acme"):
    return [
        "add",
        tenant_id,
        f"host={pg['host']}",
        f"port={pg['port']}",
        f"database={pg['database']}",
        f"user={pg['user']}",
        "--secret-stdin",
    ]


def test_help_lists_every_subcommand(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


def test_add_show_list_remove_round_trip(cli, pg_database, redis_db):
    code, out, err = cli("--json", *add_args(pg_database), stdin=pg_database["password"] + "\n")
    assert code == 0, err
    assert json.loads(out)["tenant"]["tenant_id"] == "acme"
    code, out, _ = cli("--json", "show", "acme")
    shown = json.loads(out)
    assert code == 0 and shown["password"] == "***" and shown["source"] == "redis"
    code, out, _ = cli("--json", "list")
    assert [t["tenant_id"] for t in json.loads(out)["tenants"]] == ["acme"]
    code, out, _ = cli("remove", "acme")
    assert code == 0 and redis_db.client.keys("*") == []
    code, _, err = cli("remove", "acme")
    assert code == 1 and "unknown tenant" in err
    code, _, err = cli("show", "../x")
    assert code == 2 and "tenant_id" in err


def test_add_refuses_a_wrong_password_and_stores_nothing(cli, pg_database, redis_db):
    code, out, err = cli(*add_args(pg_database), stdin="wrong-password-777\n")
    assert code == 1 and "password authentication failed" in err
    assert "wrong-password-777" not in out + err
    assert redis_db.client.keys("*") == []


def test_export_leaves_secrets_out_unless_asked_and_import_restores(cli, pg_database, redis_db):
    cli(*add_args(pg_database), stdin=pg_database["password"] + "\n")
    code, plain, _ = cli("export")
    assert code == 0 and pg_database["password"] not in plain and "password" not in plain
    code, full, _ = cli("export", "--include-secrets")
    assert code == 0 and pg_database["password"] in full
    redis_db.client.flushdb()
    code, out, err = cli("--json", "import", "-", stdin=full)
    assert code == 0, err
    assert json.loads(out)["results"] == {"acme": "imported"}
    code, out, _ = cli("import", "-", stdin=full)
    assert "skipped" in out
    code, _, err = cli("import", "-", stdin="{not json")
    assert code == 2 and "not valid JSON" in err


def test_rotate_key_reencrypts_everything_and_is_safe_to_rerun(cli, pg_database, redis_db):
    old, new = generate_key(), generate_key()
    cli(*add_args(pg_database, "one"), stdin=pg_database["password"] + "\n", MCP_TENANT_ENCRYPTION_KEY=old)
    cli(*add_args(pg_database, "two"), stdin=pg_database["password"] + "\n")  # plain text, as the seed did
    code, _, err = cli("rotate-key")
    assert code == 2 and "MCP_TENANT_ENCRYPTION_KEY" in err
    code, out, err = cli("--json", "rotate-key", MCP_TENANT_ENCRYPTION_KEY=f"{new},{old}")
    assert code == 0, err
    assert json.loads(out) == {"resealed": 2, "current": 0, "failed": {}}
    code, out, _ = cli("--json", "rotate-key", MCP_TENANT_ENCRYPTION_KEY=f"{new},{old}")
    assert json.loads(out)["current"] == 2
    for key in ("mcp:postgres:tenant:one", "mcp:postgres:tenant:two"):
        assert pg_database["password"] not in redis_db.client.get(key)
    # Only the new key is needed from now on.
    code, out, err = cli("--json", "doctor", MCP_TENANT_ENCRYPTION_KEY=new)
    assert code == 0, out + err
    assert json.loads(out)["healthy"] is True


def test_doctor_reports_plain_text_unreadable_entries_and_unreachable_redis(cli, pg_database, redis_db):
    cli(*add_args(pg_database), stdin=pg_database["password"] + "\n")
    code, out, _ = cli("doctor")
    assert code == 0 and "plain text" in out and "tenant acme: reachable" in out
    redis_db.client.set("mcp:postgres:tenant:broken", "{oops")
    code, out, _ = cli("--json", "doctor", "--skip-targets")
    report = json.loads(out)
    assert code == 1 and report["healthy"] is False
    assert any("broken" in c["detail"] for c in report["checks"] if c["check"] == "entries")
    code, out, _ = cli("doctor", REDIS_PORT="1")
    assert code == 1 and "unreachable" in out
    assert pg_database["password"] not in out


def test_global_options_work_after_the_subcommand(cli, pg_database):
    cli(*add_args(pg_database), stdin=pg_database["password"] + "\n")
    code, out, err = cli("list", "--json", "--server", "postgres")
    assert code == 0, err
    assert [t["tenant_id"] for t in json.loads(out)["tenants"]] == ["acme"]
    code, out, _ = cli("--json", "list", "--server", "minio")
    assert code == 0 and json.loads(out)["tenants"] == []


@pytest.mark.parametrize("args", [["--help"], ["generate-key"], ["list"]])
def test_the_cli_imports_neither_the_mcp_sdk_nor_the_servers_nor_a_driver(redis_db, args):
    probe = (
        "import sys\n"
        "from mcp_tenants.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'mcp', 'psycopg', 'psycopg_pool', 'minio', 'pydantic', 'starlette', 'uvicorn'}\n"
        "ours = {'mcp_tenants.server', 'mcp_tenants.registry'}\n"
        "ours |= {'mcp_tenants.postgres.tenant', 'mcp_tenants.minio.tenant'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in ours))\n"
    )
    env = {"PATH": os.environ["PATH"], **redis_db.env()}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
