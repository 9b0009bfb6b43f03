"""Red team, access layer: holes found by attacking the servers, each pinned by a test.

Real sockets on loopback only (no traffic leaves the machine): a line-based service that records
what a PostgreSQL connect sends it, and HTTP servers for S3 redirects. Redis is fakeredis.
See REDTEAM-ACCESS.md for the findings and their severity.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time

import fakeredis
import httpx2
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_tenants.access.audit import AuditLog
from mcp_tenants.access.cli import format_record
from mcp_tenants.access.http import build_http_auth, principal_of
from mcp_tenants.access.keys import ApiKeyStore, KeyCache, hash_key
from mcp_tenants.access.redaction import ScopedRedaction
from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.errors import AccessDenied, InvalidInput, TenantsError
from mcp_tenants.ops import OTHER_TOOL, MetricsObserver, PrometheusMetrics
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.postgres.targets import pinned_connection_class
from mcp_tenants.registry import TenantManager
from mcp_tenants.settings import RedisSettings, Settings


def settings(**overrides) -> Settings:
    values = {"transport": "streamable-http", "connect_timeout_s": 2, **overrides}
    return Settings(server="postgres", redis=RedisSettings(), **values)


# -- cross-protocol request forgery through the startup packet ------------------------------------


class LineService:
    """A line-based TCP service on 127.0.0.1 (like memcached or SMTP): records every byte it gets,
    and the lines it would run as commands."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(3)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
                    conn.sendall(b"ERROR\r\n")
            except OSError:
                pass
            conn.close()

    @property
    def lines(self) -> list[bytes]:
        return [line.strip() for line in self.received.split(b"\n")]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def line_service():
    service = LineService()
    yield service
    service.close()


def injected_config(port: int, **overrides) -> PostgresTenant:
    fields = {
        "tenant_id": "cache",
        "host": "127.0.0.1",
        "port": port,
        "database": "d",
        "user": "u\r\nset pwned 0 0 1\r\nX\r\n",
        "password": "p",
        "sslmode": "disable",
    }
    return PostgresTenant(**{**fields, **overrides})


def test_line_breaks_in_user_or_database_never_reach_a_tool_registered_target(line_service):
    # Before the fix: libpq sent the user name in clear, and the service ran "set pwned 0 0 1"
    # (memcached syntax) as a command of its own: a tool could drive any line-based service the
    # target policy lets it reach (over stdio: loopback; over HTTP: whatever MCP_ALLOWED_HOSTS allows).
    from mcp_tenants.postgres.tenant import PostgresBackend

    stdio = settings(transport="stdio")
    backend = PostgresBackend(stdio)
    manager = TenantManager(backend, None, {}, policy=RegistrationPolicy.from_settings(stdio))
    with pytest.raises(InvalidInput, match="user of tenant 'cache' contains control characters"):
        manager.register(injected_config(line_service.port))
    with pytest.raises(InvalidInput, match="database of tenant 'cache' contains control characters"):
        manager.register(injected_config(line_service.port, database="d\nflush_all"))
    # A tool entry stored before the fix (or by an older process) is refused at connect time.
    connect = pinned_connection_class(TargetPolicy(remote=False)).connect
    with pytest.raises(AccessDenied, match="user contains control characters"):
        connect(host="127.0.0.1", port=line_service.port, user="u\r\nset pwned 0 0 1", dbname="d", connect_timeout=2)
    time.sleep(0.1)
    assert line_service.received == b""
    # The operator's own tenants stay as they are (trusted), and a password may hold anything.
    trusted = injected_config(line_service.port, user="u", password="p\r\nw", origin="cli")
    with pytest.raises(Exception):  # noqa: B017 - the fake service is no PostgreSQL
        backend.verify(trusted)
    assert b"set pwned" not in line_service.received


# -- the audit trail: bounded records, unforgeable lines -----------------------------------------


def test_a_callers_tool_name_cannot_bloat_or_forge_audit_records():
    server = fakeredis.FakeServer()
    redis_client = fakeredis.FakeRedis(server=server, decode_responses=True)
    forged = "query  ok  1ms\n2026-01-01T00:00:00.000Z  ops  hr_payroll  execute  ok  2ms  DROP TABLE pay"
    with AuditLog(redis_client, "postgres") as audit:
        audit.record(
            principal="team-a-reader",
            kind="key",
            tool=forged + "x" * 1_000_000,
            outcome="error",
            error="InvalidInput",
            subject="SELECT 1 -- \x1b]0;owned\x07\x1b[2J\u202e",
        )
        deadline = time.monotonic() + 5
        while not redis_client.xlen("mcp:postgres:audit"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    ((_id, fields),) = redis_client.xrange("mcp:postgres:audit")
    assert len(fields["tool"].encode()) <= 128  # was the whole megabyte, in Redis and in the log
    line = format_record(fields)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line and "\x07" not in line
    assert line.startswith(f"{fields['time']}  team-a-reader  -  query ok 1ms 2026-01-01")  # one record, one line
    assert "\\x1b]0;owned\\x07" in line  # shown escaped
    impostor = format_record({"principal": "token", "kind": "oauth", "tool": "query", "outcome": "ok"})
    admin = format_record({"principal": "token", "kind": "token", "tool": "query", "outcome": "ok"})
    assert "oauth:token" in impostor and "token:token" in admin  # an OAuth sub cannot pose as the token


# -- metrics: a caller cannot make series without bound -------------------------------------------


def tool_labels(metrics: PrometheusMetrics) -> set[str]:
    return {
        sample.labels["tool"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if "tool" in sample.labels
    }


def test_made_up_tool_names_do_not_become_metric_series():
    metrics = PrometheusMetrics("postgres")
    observer = MetricsObserver(metrics)
    for i in range(500):
        name = f"no_such_tool_{i}" if i % 2 else f"Made Up {i}\n"
        observer.call_started(name)
        observer.call_finished({"tool": name, "outcome": "error", "error": "InvalidInput", "duration_ms": 1})
    observer.call_started("query")
    observer.call_finished({"tool": "query", "outcome": "ok", "duration_ms": 2})
    labels = tool_labels(metrics)
    assert len(labels) <= 34 and "query" in labels and OTHER_TOOL in labels  # was 501 labels
    in_flight = metrics.registry.get_sample_value
    assert in_flight("mcp_tool_calls_in_flight", {"server": "postgres", "tool": OTHER_TOOL}) == 0

    # With the server's tool list (Ops.use_tools), only its tools get labels at all.
    listed = MetricsObserver(PrometheusMetrics("postgres"), known_tools={"query", "execute"})
    for name in ("query", "execute", "no_such_tool"):
        listed.call_started(name)
        listed.call_finished({"tool": name, "outcome": "error", "error": "AccessDenied", "duration_ms": 1})
    assert tool_labels(listed.metrics) == {"query", "execute", OTHER_TOOL}

    # A tool that had not succeeded yet when a call started is moved off "other" when it does.
    fresh = MetricsObserver(PrometheusMetrics("postgres"))
    fresh._plausible = {f"t{i}" for i in range(40)}  # the unproven slots are taken
    fresh.call_started("list_schemas")
    fresh.call_finished({"tool": "list_schemas", "outcome": "ok", "duration_ms": 1})
    value = fresh.metrics.registry.get_sample_value
    assert value("mcp_tool_calls_in_flight", {"server": "postgres", "tool": OTHER_TOOL}) == 0
    assert value("mcp_tool_calls_in_flight", {"server": "postgres", "tool": "list_schemas"}) == 0
    assert value("mcp_tool_calls_total", {"server": "postgres", "tool": "list_schemas", "outcome": "ok"}) == 1


# -- fleet: a replica cut off from Redis ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_replica_cut_off_from_redis_stops_honouring_a_revoked_key():
    server = fakeredis.FakeServer()
    keys = ApiKeyStore(fakeredis.FakeRedis(server=server, decode_responses=True), "postgres")
    _, key = keys.create("team-a-reader", "team_a_*", "reader")
    clock = Clock()
    replica = KeyCache(keys, clock=clock)
    assert replica.fetch(hash_key(key)).name == "team-a-reader" and replica.fetch_any_keys() is True
    # The replica loses Redis (a partition); meanwhile the operator revokes the key elsewhere.
    server.connected = False
    clock.now += 5
    assert replica.fetch(hash_key(key)) is not None  # a short outage is ridden out
    clock.now += KeyCache.OUTAGE_GRACE
    assert replica.fetch(hash_key(key)) is None  # was: honoured for as long as the partition lasted


def test_a_replica_cut_off_from_redis_stops_serving_anonymous_callers():
    server = fakeredis.FakeServer()
    keys = ApiKeyStore(fakeredis.FakeRedis(server=server, decode_responses=True), "postgres")
    clock = Clock()
    replica = KeyCache(keys, clock=clock)
    assert replica.fetch_any_keys() is False  # no key yet: a loopback server lets anonymous in
    server.connected = False  # ... the operator creates the first key while this replica is cut off
    assert replica.fetch_any_keys() is False
    clock.now += KeyCache.OUTAGE_GRACE + 1
    assert replica.fetch_any_keys() is True


# -- DNS rebinding against an anonymous loopback server ---------------------------------------------


async def whoami(request):
    return JSONResponse({"name": principal_of(request).name})


def get(app, base_url: str, headers: dict[str, str] | None = None):
    async def go():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=base_url) as client:
            return await client.get("/mcp", headers=headers or {})

    return asyncio.run(go())


def test_anonymous_callers_must_address_the_server_by_a_loopback_name():
    # The SDK's own Host check covers only --host 127.0.0.1, localhost and ::1; on 127.0.0.2 (any
    # 127/8 address counts as loopback for anonymous access) a page at evil.example re-pointed to
    # 127.0.0.2 drove the server as the anonymous admin.
    auth = build_http_auth(settings(host="127.0.0.2"), fakeredis.FakeRedis(decode_responses=True))
    try:
        app = auth.wrap(Starlette(routes=[Route("/mcp", whoami)]))
        assert get(app, "http://evil.example:8000").status_code == 401
        assert get(app, "http://127.0.0.2:8000", {"Origin": "http://evil.example"}).status_code == 401
        assert get(app, "http://127.0.0.2:8000", {"Origin": "null"}).status_code == 401
        for base in ("http://127.0.0.2:8000", "http://localhost:8000", "http://[::1]:8000"):
            assert get(app, base).json() == {"name": "anonymous"}, base
        assert get(app, "http://127.0.0.2:8000", {"Origin": "http://localhost:3000"}).status_code == 200
    finally:
        auth.close()
    # Behind the operator's own proxy (--allow-unauthenticated) the Host is the proxy's business.
    open_auth = build_http_auth(
        settings(host="0.0.0.0", allow_unauthenticated=True), fakeredis.FakeRedis(decode_responses=True)
    )
    try:
        app = open_auth.wrap(Starlette(routes=[Route("/mcp", whoami)]))
        assert get(app, "http://mcp.example.com").json() == {"name": "anonymous"}
    finally:
        open_auth.close()


def test_a_request_with_two_authorization_headers_is_refused_whatever_they_hold():
    redis_client = fakeredis.FakeRedis(decode_responses=True)
    _, key = ApiKeyStore(redis_client, "postgres").create("team-a-reader", "team_a_*", "reader")
    auth = build_http_auth(settings(), redis_client)
    try:
        app = auth.wrap(Starlette(routes=[Route("/mcp", whoami)]))

        def status(*values: str) -> int:
            async def go():
                transport = httpx2.ASGITransport(app=app)
                async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                    return await client.get("/mcp", headers=[("Authorization", v) for v in values])

            return asyncio.run(go()).status_code

        assert status(f"Bearer {key}") == 200 and status(f"bearer {key}") == 200
        assert status(f"Bearer {key}", "Bearer mcpk_" + "x" * 43) == 401  # was 200: the first one won
        assert status("Basic dXNlcjpwdw==", f"Bearer {key}") == 401
    finally:
        auth.close()


# -- scoped redaction: every server secret ------------------------------------------------------------


def test_the_sentinel_password_is_one_of_the_servers_own_secrets():
    redis = RedisSettings(sentinels=(("127.0.0.1", 26379),), sentinel_master="m", sentinel_password="sentinel-pw-123")
    mask = ScopedRedaction.from_settings(Settings(server="postgres", redis=redis)).for_call([], {})
    assert mask("AUTH failed with sentinel-pw-123") == "AUTH failed with ***"
    url = RedisSettings(url="redis://:p%40ss-word-9@127.0.0.1:6379/0")
    mask = ScopedRedaction.from_settings(Settings(server="postgres", redis=url)).for_call([], {})
    assert mask("p@ss-word-9 / p%40ss-word-9") == "*** / ***"


# -- S3: redirects ------------------------------------------------------------------------------------


@pytest.fixture
def redirecting_s3():
    """An "S3 endpoint" on 127.0.0.1 that answers every request with 307 to 127.0.0.2, where a
    listener counts connections."""
    target = socket.create_server(("127.0.0.2", 0))
    target.settimeout(0.2)
    target_port = target.getsockname()[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _redirect(self):
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.2:{target_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = _redirect

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def reached() -> bool:
        try:
            conn, _ = target.accept()
        except OSError:
            return False
        conn.close()
        return True

    yield server.server_address[1], reached
    server.shutdown()
    server.server_close()
    target.close()


def test_an_s3_redirect_to_an_address_the_policy_refuses_is_not_followed(redirecting_s3):
    from mcp_tenants.minio.config import MinioTenant
    from mcp_tenants.minio.tenant import MinioBackend

    port, reached = redirecting_s3
    backend = MinioBackend(
        Settings(server="minio", redis=RedisSettings(), transport="streamable-http", allowed_hosts=("127.0.0.1",))
    )
    config = MinioTenant(tenant_id="s3", endpoint=f"127.0.0.1:{port}", access_key="AKIAX", secret_key="secret-x")
    client = backend.open(config)
    try:
        with pytest.raises(AccessDenied, match=r"127\.0\.0\.2.*MCP_ALLOWED_HOSTS"):
            client.list_buckets()
    finally:
        backend.close(client)
    assert not reached()


def test_a_connection_string_inside_the_database_name_stays_a_name(line_service):
    """Regression: libpq expands a connection string given as dbname only in PQconnectdbParams with
    expand_dbname; psycopg passes keywords quoted into one string, so ``host=...`` in a database
    (or user) name is never read as a parameter, and the connection goes to the checked address."""
    elsewhere = LineService()  # on 127.0.0.1 too; only a parameter smuggled in could aim there
    try:
        connect = pinned_connection_class(TargetPolicy(remote=False)).connect
        with pytest.raises(psycopg.OperationalError):
            connect(
                host="127.0.0.1",
                port=line_service.port,
                dbname=f"host=127.0.0.1 port={elsewhere.port} dbname=postgres",
                user=f"postgresql://127.0.0.1:{elsewhere.port}/x",
                sslmode="disable",
                connect_timeout=2,
            )
        time.sleep(0.1)
        assert elsewhere.received == b""
        assert f"host=127.0.0.1 port={elsewhere.port} dbname=postgres".encode() in line_service.received
        with pytest.raises(ValueError, match="keyword"):
            connect(f"host=127.0.0.1 port={line_service.port}")
    finally:
        elsewhere.close()


def test_a_replica_that_missed_the_announcement_stops_serving_a_removed_tenant_within_a_second():
    from mcp_tenants.crypto import SecretCodec
    from mcp_tenants.store import TenantStore

    from .fakes import FakeBackend, HalfOpenSubscription

    server = fakeredis.FakeServer()

    def replica(client_type=fakeredis.FakeRedis):
        client = client_type(server=server, decode_responses=True)
        store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)
        return TenantManager(FakeBackend(PostgresTenant), store, {}).open()

    first, second = replica(), replica(HalfOpenSubscription)
    try:
        config = PostgresTenant(tenant_id="team_b_db", host="127.0.0.1", database="d", user="u", password="p")
        first.register(config, verify=False)
        assert second.get("team_b_db") == config  # now in the second replica's memory
        first.remove("team_b_db")  # announced, but the second replica's subscription delivers nothing
        deadline = time.monotonic() + 1.1
        while time.monotonic() < deadline:
            try:
                second.get("team_b_db")
            except TenantsError:
                break
            time.sleep(0.05)
        with pytest.raises(TenantsError):  # UnknownTenant, once it noticed
            second.get("team_b_db")
    finally:
        first.close()
        second.close()
