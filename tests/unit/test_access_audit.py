"""The audit trail on fakeredis: stream layout, JSON log lines, no secrets, outages, drops."""

import json
import logging
import time

import fakeredis
import pytest

from mcp_tenants.access.audit import AuditLog, cut, from_stream
from mcp_tenants.config import redact

RECORD = {
    "principal": "team-a",
    "kind": "key",
    "tenant": "sales",
    "tool": "query",
    "subject": "SELECT 1",
    "outcome": "ok",
    "duration_ms": 3,
    "rows": 1,
}


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def client(server):
    return fakeredis.FakeRedis(server=server, decode_responses=True)


def test_each_record_is_one_stream_entry_and_one_json_log_line(server, caplog):
    caplog.set_level(logging.INFO, logger="mcp_tenants.audit")
    with AuditLog(client(server), "postgres") as audit:
        audit.record(**RECORD)
        wait_for(lambda: client(server).xlen("mcp:postgres:audit") == 1)
    ((_id, fields),) = client(server).xrange("mcp:postgres:audit")
    stored = from_stream(fields)
    assert {k: stored[k] for k in RECORD} == RECORD and stored["time"].endswith("Z")
    lines = [r.getMessage() for r in caplog.records if r.name == "mcp_tenants.audit"]
    assert len(lines) == 1 and json.loads(lines[0]) == stored
    assert list(json.loads(lines[0]))[:5] == ["time", "principal", "kind", "tenant", "tool"]


def test_it_observes_the_cores_calls(server):
    with AuditLog(client(server), "postgres") as audit:
        audit.call_started("query")
        audit.call_finished({**RECORD, "time": 1767225600.5, "error": None})
    ((_id, fields),) = client(server).xrange("mcp:postgres:audit")
    assert fields["time"] == "2026-01-01T00:00:00.500Z" and "error" not in fields


def test_the_stream_is_capped_approximately(server):
    with AuditLog(client(server), "minio", max_len=100, batch_size=50) as audit:
        for n in range(1000):
            audit.record(**{**RECORD, "rows": n})
    assert 100 <= client(server).xlen("mcp:minio:audit") < 1000


def test_secrets_are_masked_and_subjects_cut(server):
    redact.add("audit-secret-pw-9")
    with AuditLog(client(server), "postgres") as audit:
        audit.record(**{**RECORD, "subject": "ALTER ROLE x PASSWORD 'audit-secret-pw-9' " + "x" * 5000})
    ((_id, fields),) = client(server).xrange("mcp:postgres:audit")
    assert "audit-secret-pw-9" not in json.dumps(fields) and "***" in fields["subject"]
    assert len(fields["subject"].encode()) <= 2048 and fields["subject"].endswith("...")
    assert cut("é" * 2000) == "é" * 1022 + "..."  # never half a character


def test_records_wait_while_redis_is_down_and_are_flushed_when_it_returns(server):
    server.connected = False
    with AuditLog(client(server), "postgres", max_backoff=0.05) as audit:
        for n in range(5):
            audit.record(**{**RECORD, "rows": n})
        wait_for(lambda: audit.queued == 0)
        server.connected = True
        wait_for(lambda: client(server).xlen("mcp:postgres:audit") == 5)
        assert [from_stream(f)["rows"] for _i, f in client(server).xrange("mcp:postgres:audit")] == list(range(5))
        assert audit.dropped == 0


def test_what_does_not_fit_is_dropped_counted_and_logged(server, caplog):
    server.connected = False
    audit = AuditLog(client(server), "postgres", buffer_size=10, max_backoff=0.05)  # writer not started yet
    for n in range(25):
        audit.record(**{**RECORD, "rows": n})  # returns at once even with no writer and no Redis
    assert audit.dropped == 15  # the queue holds 10
    with caplog.at_level(logging.WARNING, logger="mcp_tenants.access.audit"):
        audit.start()
        for n in range(25, 40):
            audit.record(**{**RECORD, "rows": n})
        wait_for(lambda: audit.queued == 0 and audit.dropped >= 25)
        server.connected = True
        audit.close()
    assert any("dropped" in r.getMessage() for r in caplog.records)
    assert client(server).xlen("mcp:postgres:audit") == 40 - audit.dropped


def test_without_redis_records_still_reach_the_log(caplog):
    caplog.set_level(logging.INFO, logger="mcp_tenants.audit")
    with AuditLog(None, "postgres") as audit:
        audit.record(**RECORD)
    assert [json.loads(r.getMessage())["tool"] for r in caplog.records if r.name == "mcp_tenants.audit"] == ["query"]
