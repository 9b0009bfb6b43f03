"""``mcp-tenants key`` and ``mcp-tenants audit`` over fakeredis, through the real argument parser."""

import io
import json
import time

import fakeredis
import pytest

from mcp_tenants.access import cli
from mcp_tenants.access.audit import AuditLog
from mcp_tenants.access.keys import ApiKeyStore, hash_key
from mcp_tenants.cli import build_parser
from mcp_tenants.errors import InvalidInput, TenantsError


def parse(*argv):
    return build_parser().parse_args(argv)  # the real mcp-tenants command line


@pytest.fixture
def redis():
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def run(redis, *argv, stop=None):
    args = parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    ctx = cli.AccessContext("postgres", redis, bool(getattr(args, "json", False)), out, err)
    try:
        code = cli.cmd_audit(ctx, args, stop=stop) if stop is not None else args.access_command(ctx, args)
    except InvalidInput as exc:
        return cli.EXIT_USAGE, out.getvalue(), str(exc)
    except TenantsError as exc:
        return cli.EXIT_FAILED, out.getvalue(), str(exc)
    return code, out.getvalue(), err.getvalue()


def test_key_create_prints_the_key_alone_on_the_last_line_once(redis):
    code, out, _ = run(
        redis, "key", "create", "team-a", "--tenants", "sales_*,ops", "--role", "reader", "--expires", "90d"
    )
    key = out.splitlines()[-1]
    assert code == 0 and key.startswith("mcpk_") and " " not in key
    assert "team-a" in out.splitlines()[0] and "sales_*,ops" in out
    assert ApiKeyStore(redis, "postgres").lookup(hash_key(key)).role == "reader"
    code, out, _ = run(redis, "key", "create", "team-b", "--tenants", "*", "--role", "admin", "--json")
    first, key_b = out.splitlines()
    assert json.loads(first)["name"] == "team-b" and key_b.startswith("mcpk_") and key_b not in first


def test_key_list_shows_everything_but_the_key(redis):
    _, out, _ = run(redis, "key", "create", "team-a", "--tenants", "sales_*", "--role", "writer", "--expires", "1h")
    key = out.splitlines()[-1]
    code, listing, _ = run(redis, "key", "list")
    assert code == 0 and key not in listing and hash_key(key) not in listing
    header, row = listing.splitlines()
    assert header.split() == ["NAME", "TENANTS", "ROLE", "CREATED", "EXPIRES", "LAST", "USED"]
    assert row.startswith("team-a") and "sales_*" in row and "writer" in row and row.endswith("never")
    _, as_json, _ = run(redis, "key", "list", "--json")
    (entry,) = json.loads(as_json)["keys"]
    assert set(entry) == {"name", "tenants", "role", "created", "expires", "expired", "last_used"}


def test_key_revoke_and_its_errors(redis):
    run(redis, "key", "create", "team-a", "--tenants", "*", "--role", "reader")
    assert run(redis, "key", "revoke", "team-a")[0] == 0
    assert run(redis, "key", "list")[1].strip() == "no API keys"
    code, _, message = run(redis, "key", "revoke", "team-a")
    assert code == cli.EXIT_FAILED and "no API key named 'team-a'" in message
    assert run(redis, "key", "create", "x", "--tenants", "a.b", "--role", "reader")[0] == cli.EXIT_USAGE
    assert run(redis, "key", "create", "x", "--tenants", "*", "--role", "reader", "--expires", "soon")[0] == 2
    run(redis, "key", "create", "dup", "--tenants", "*", "--role", "reader")
    code, _, message = run(redis, "key", "create", "dup", "--tenants", "*", "--role", "reader")
    assert code == cli.EXIT_FAILED and "exists" in message
    with pytest.raises(SystemExit):
        parse("key", "create", "x", "--tenants", "*", "--role", "root")


def write_records(redis, records):
    with AuditLog(redis, "postgres") as audit:
        for record in records:
            audit.record(**record)
    deadline = time.monotonic() + 5
    while redis.xlen("mcp:postgres:audit") < len(records):
        assert time.monotonic() < deadline


def test_audit_filters_limits_and_prints(redis):
    write_records(
        redis,
        [
            {
                "principal": "team-a",
                "kind": "key",
                "tenant": "sales",
                "tool": "query",
                "subject": "SELECT 1",
                "outcome": "ok",
                "duration_ms": 2,
                "rows": 1,
            },
            {
                "principal": "team-b",
                "kind": "key",
                "tenant": "hr",
                "tool": "execute",
                "subject": "DELETE",
                "outcome": "error",
                "error": "AccessDenied",
                "duration_ms": 1,
            },
            {
                "principal": "team-a",
                "kind": "key",
                "tenant": "sales",
                "tool": "list_tables",
                "outcome": "ok",
                "duration_ms": 5,
                "rows": 7,
            },
        ],
    )
    code, out, _ = run(redis, "audit")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].split()[1:4] == ["team-a", "sales", "query"]
    assert "error(AccessDenied)" in lines[1] and "rows=7" in lines[2]
    assert len(run(redis, "audit", "--tenant", "sales")[1].splitlines()) == 2
    assert len(run(redis, "audit", "--principal", "key:team-b")[1].splitlines()) == 1
    assert "list_tables" in run(redis, "audit", "--limit", "1")[1]  # the newest
    assert len(run(redis, "audit", "--since", "1h")[1].splitlines()) == 3
    records = json.loads(run(redis, "audit", "--json")[1])["records"]
    assert [r["tool"] for r in records] == ["query", "execute", "list_tables"] and records[0]["rows"] == 1
    assert run(redis, "audit", "--tenant", "nobody") == (0, "", "no matching audit records\n")


def test_audit_follow_prints_new_records_as_they_arrive(redis):
    write_records(redis, [{"principal": "a", "tool": "query", "outcome": "ok", "duration_ms": 1}])
    checks = []

    def stop():  # asked before each wait for new records: add one, then stop after it was read
        checks.append(True)
        if len(checks) == 1:
            redis.xadd("mcp:postgres:audit", {"principal": "b", "tool": "list_schemas", "outcome": "ok"})
        return len(checks) > 2

    code, out, _ = run(redis, "audit", "--follow", "--json", stop=stop)
    assert code == 0 and [json.loads(line)["principal"] for line in out.splitlines()] == ["a", "b"]
