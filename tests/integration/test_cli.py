"""The mcp-tenants operator CLI as an operator runs it: a subprocess on a real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from mcp_tenants.crypto import generate_key
from mcp_tenants.devservices import RedisService
from tests import audit
from tests.conftest import running

from .stdio import ROOT

COMMANDS = ["list", "show", "add", "remove", "export", "import", "rotate-key", "doctor", "generate-key"]


@pytest.fixture
def cli(redis_db):
    """Run ``mcp-tenants`` with the test's Redis; returns (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str = "", redis: bool = True, cwd=ROOT, **env: str):
        full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
        if redis:
            full_env = {**redis_db.env(), **full_env}
        done = subprocess.run(
            [sys.executable, "-m", "mcp_tenants.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=120,
            start_new_session=True,  # no controlling terminal, as under cron or CI
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
    assert code == 0 and redis_db.client.keys("mcp:postgres:tenant:*") == []
    # Both writes are in the change log, so running servers follow them within a second.
    changes = redis_db.client.xrange("mcp:postgres:tenant-changes")
    assert [fields["tenant_id"] for _id, fields in changes] == ["acme", "acme"]
    code, _, err = cli("remove", "acme")
    assert code == 1 and "unknown tenant" in err
    code, _, err = cli("show", "../x")
    assert code == 2 and "tenant_id" in err


def test_add_refuses_a_wrong_password_and_stores_nothing(cli, pg_database, redis_db):
    code, out, err = cli(*add_args(pg_database), stdin="wrong-password-777\n")
    assert code == 1 and "password was refused" in err
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


# --- issue 12, items 13-19: the CLI explains every mistake ------------------------------------


@pytest.mark.parametrize(
    "server, fields",
    [
        ("postgres", ["host=h", "database=d", "user=u", "password=cmdline-secret-1"]),
        ("minio", ["endpoint=s3:9000", "access_key=ak", "secret_key=cmdline-secret-1"]),
    ],
)
def test_a_secret_on_the_command_line_is_refused(cli, redis_db, server, fields):
    code, out, err = cli("--server", server, "add", "acme", *fields, "--secret-stdin", stdin="from-stdin-secret\n")
    assert code == 2 and "never taken from the command line" in err and "--secret-stdin" in err
    assert "cmdline-secret-1" not in out + err
    assert redis_db.client.keys("*") == []


def test_without_a_terminal_or_secret_stdin_add_says_how_to_pipe_the_secret(cli, pg_database, redis_db):
    args = [a for a in add_args(pg_database) if a != "--secret-stdin"]
    code, _, err = cli(*args)
    assert code == 2 and "no terminal" in err and "--secret-stdin" in err
    assert "Traceback" not in err and redis_db.client.keys("*") == []
    code, _, err = cli(*add_args(pg_database), stdin="")
    assert code == 2 and "no password on stdin" in err


def test_unknown_fields_are_refused_with_a_suggestion(cli, redis_db):
    code, _, err = cli("add", "acme", "host=h", "databse=d", "user=u", "--secret-stdin", stdin="pw-unused-1\n")
    assert code == 2 and "unknown field 'databse' (did you mean 'database'?)" in err
    code, _, err = cli("add", "acme", "endpoint=s3:9000", "--secret-stdin", stdin="pw-unused-1\n")
    assert code == 2 and "--server minio" in err
    code, _, err = cli("add", "acme", "host=h", "user=u", "--secret-stdin", stdin="pw-unused-1\n")
    assert code == 2 and "missing field(s): database" in err
    assert redis_db.client.keys("*") == []


def test_import_explains_an_export_without_secrets_and_the_wrong_server(cli, pg_database, redis_db):
    cli(*add_args(pg_database), stdin=pg_database["password"] + "\n")
    _, plain, err = cli("export")
    assert "--include-secrets" in err  # the export itself says what it cannot do
    _, full, _ = cli("export", "--include-secrets")
    redis_db.client.flushdb()
    code, _, err = cli("import", "-", stdin=plain)
    assert code == 2 and "without secrets" in err and "export --include-secrets" in err
    code, _, err = cli("--server", "minio", "import", "-", stdin=full)
    assert code == 2 and "postgres server" in err and "--server postgres" in err
    entries = json.loads(full)["tenants"]
    code, _, err = cli("--server", "minio", "import", "-", stdin=json.dumps(entries))  # a bare list
    assert code == 2 and "holds postgres tenants" in err and "--server postgres" in err
    assert redis_db.client.keys("*") == []


def test_remove_of_an_env_tenant_says_it_is_defined_in_the_environment(cli, pg_database):
    env = {
        "POSTGRES_TENANT_ENVY_HOST": pg_database["host"],
        "POSTGRES_TENANT_ENVY_DATABASE": "d",
        "POSTGRES_TENANT_ENVY_USER": "u",
        "POSTGRES_TENANT_ENVY_PASSWORD": "pw-envy-1",
    }
    code, _, err = cli("remove", "envy", **env)
    assert code == 1 and "defined in the environment" in err and "POSTGRES_TENANT_ENVY_*" in err
    code, _, err = cli("remove", "envi", **env)
    assert code == 1 and "unknown tenant 'envi' (did you mean 'envy'?)" in err


def test_first_run_without_configuration_says_how_to_point_the_cli_at_redis(cli, tmp_path):
    code, out, err = cli("list", redis=False, cwd=tmp_path)
    assert code == 1
    assert "serving from memory" not in out + err and "Traceback" not in err
    assert "redis://redis:6379/0" in err and "REDIS_URL" in err and "REDIS_HOST" in err and "--env-file" in err


# --- issue 12, items 2 and 5 from the CLI -----------------------------------------------------


def test_list_and_doctor_report_invalid_env_tenants(cli, pg_database):
    env = {"POSTGRES_TENANT_BAD_HOST": "h", "POSTGRES_TENANT_BAD_PORT": "abc"}
    code, out, _ = cli("--json", "list", **env)
    assert code == 1 and "POSTGRES_TENANT_BAD_PORT" in json.loads(out)["unreadable"]["bad"]
    code, out, _ = cli("doctor", "--skip-targets", **env)
    assert code == 1 and "[!!] environment" in out and "POSTGRES_TENANT_BAD_DATABASE is not set" in out


def test_corrupt_entries_of_any_kind_are_listed_and_removable(cli, pg_database, redis_db):
    cli(*add_args(pg_database, "good"), stdin=pg_database["password"] + "\n")
    raw = redis.Redis(host=redis_db.host, port=redis_db.port, password=redis_db.password, db=redis_db.db)
    raw.set("mcp:postgres:tenant:notutf8", b"\xff\xfe{")
    raw.set("mcp:postgres:tenant:deep", b"[" * 50_000)
    raw.hset("mcp:postgres:tenant:hashed", "host", "h")
    raw.set(b"mcp:postgres:tenant:Not A Tenant", b"{}")
    code, out, err = cli("--json", "list")
    listing = json.loads(out)
    assert code == 1 and [t["tenant_id"] for t in listing["tenants"]] == ["good"], err
    assert set(listing["unreadable"]) == {"notutf8", "deep", "hashed", "Not A Tenant"}
    for name in ("notutf8", "deep", "hashed", "Not A Tenant"):
        code, _, err = cli("remove", name)
        assert code == 0, err
    code, out, _ = cli("list")
    assert code == 0 and out.split()[0] == "good"
    assert raw.keys("mcp:postgres:tenant:*") == [b"mcp:postgres:tenant:good"]


@pytest.fixture
def private_redis():
    yield from running(RedisService())


def test_add_while_redis_refuses_writes_says_why_and_stores_nothing(cli, pg_database, private_redis):
    admin = private_redis.client(decode_responses=True)
    env = {"REDIS_HOST": private_redis.host, "REDIS_PORT": str(private_redis.port), "REDIS_DB": "0"}
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        code, _, err = cli(*add_args(pg_database), stdin=pg_database["password"] + "\n", redis=False, **env)
    finally:
        admin.config_set("maxmemory", "0")
    assert code == 1 and "could not store tenant 'acme'" in err and "maxmemory" in err and "nothing was changed" in err
    admin.acl_setuser("nosets", enabled=True, nopass=True, keys=["*"], channels=["*"], commands=["+@all", "-set"])
    code, _, err = cli(
        *add_args(pg_database), stdin=pg_database["password"] + "\n", redis=False, REDIS_USERNAME="nosets", **env
    )
    assert code == 1 and "refused to store tenant 'acme'" in err and "ACL" in err
    assert admin.keys("*") == []
