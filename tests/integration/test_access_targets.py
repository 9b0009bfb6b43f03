"""Every SSRF form from the security review, refused by both servers on both transports.

A canary listener on 127.0.0.1 stands in for an internal service: over HTTP, where loopback is
refused by default, no form of its address may ever reach it. Metadata forms (169.254.169.254 in
every encoding) and host lists are refused on both transports. DNS rebinding is tested in process
with real PostgreSQL and S3 servers and a resolver the test controls: the check runs again on
every connect and the connection goes to the address that was checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
import threading
from collections.abc import Iterator

import psycopg_pool
import pytest

from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.errors import AccessDenied
from mcp_tenants.minio.tenant import MinioBackend, MinioTenant
from mcp_tenants.postgres.tenant import PostgresBackend, PostgresTenant
from mcp_tenants.settings import Settings

from .http import HttpServer
from .stdio import ServerProcess, Session, ToolFailed
from .tenants import pg_register_args

#: 169.254.169.254 (or another always-refused address) as an agent could spell it.
METADATA_HOSTS = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "2852039166",
    "0251.0376.0251.0376",
    "0xa9fea9fe",
    "169.254.43518",
    "2002:a9fe:a9fe::1",
    "64:ff9b::a9fe:a9fe",
    "fd00:ec2::254",
    "0.0.0.0",
]
#: 127.0.0.1 as an agent could spell it (refused over HTTP by default).
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "::ffff:127.0.0.1"]
HOST_LISTS = ["169.254.169.254,127.0.0.1", "127.0.0.1,x.db.internal", "x.db.internal,127.0.0.1"]


class Canary:
    """A TCP listener on 127.0.0.1 that counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pg_args(host: str, port: int) -> dict[str, object]:
    return {"tenant_id": "probe", "host": host, "port": port, "database": "d", "user": "postgres", "password": "x"}


def s3_args(host: str, port: int) -> dict[str, object]:
    return {"tenant_id": "probe", "endpoint": endpoint(host, port), "access_key": "a", "secret_key": "secret-x"}


async def refusals(session: Session, make_args, hosts: list[str], port: int) -> dict[str, str]:
    """host → error text of register_tenant; fails the test if any registration succeeds."""
    errors = {}
    for host in hosts:
        try:
            await session.call("register_tenant", **make_args(host, port))
        except ToolFailed as exc:
            errors[host] = str(exc)
        else:
            raise AssertionError(f"register_tenant accepted {host!r}")
    return errors


@pytest.mark.parametrize("module", ["mcp_tenants.postgres", "mcp_tenants.minio"])
def test_over_http_no_form_of_an_internal_address_is_reached(module, redis_db, canary, postgres_service):
    token = secrets.token_urlsafe(16)
    # "*.db.internal" once matched across the comma of "169.254.169.254,x.db.internal".
    server = HttpServer(module, {**redis_db.env(), "MCP_AUTH_TOKEN": token, "MCP_ALLOWED_HOSTS": "*.db.internal"})
    make_args = pg_args if module.endswith("postgres") else s3_args
    try:
        server.wait_ready()

        async def scenario():
            async with server.client(token) as client:
                session = Session(client)
                found = await refusals(session, make_args, METADATA_HOSTS + LOOPBACK_HOSTS + HOST_LISTS, canary.port)
                if module.endswith("postgres"):  # the local cluster's socket directory: trust auth, superuser
                    socket_dir = str(postgres_service.tmpdir)
                    found.update(await refusals(session, make_args, [socket_dir], postgres_service.port))
                return found

        errors = asyncio.run(scenario())
        assert canary.hits == 0
        for host in METADATA_HOSTS:
            assert "may never point there" in errors[host], (host, errors[host])
        for host in LOOPBACK_HOSTS:
            assert "MCP_ALLOWED_HOSTS" in errors[host] or "loopback" in errors[host], (host, errors[host])
        for host in HOST_LISTS:
            assert "list of hosts" in errors[host], (host, errors[host])
        for host, text in errors.items():
            if host.startswith("/"):
                assert "Unix-socket" in text, (host, text)
        assert redis_db.client.keys("mcp:*:tenant:*") == []
    finally:
        server.close()


@pytest.mark.parametrize("module", ["mcp_tenants.postgres", "mcp_tenants.minio"])
def test_over_stdio_metadata_forms_and_host_lists_are_refused_too(module, redis_db, canary):
    server = ServerProcess(module, redis_db.env())
    make_args = pg_args if module.endswith("postgres") else s3_args
    try:
        errors = server.run(lambda session: refusals(session, make_args, METADATA_HOSTS + HOST_LISTS[:1], 443))
        for host in METADATA_HOSTS:
            assert "may never point there" in errors[host], (host, errors[host])
        assert "list of hosts" in errors[HOST_LISTS[0]]
    finally:
        server.close()


# -- DNS rebinding, in process, against the real servers -------------------------------------------


class Rebinding:
    """getaddrinfo for one made-up name whose answer the test changes; other hosts go to the real one."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address, self.asked = name, address, 0

    def __call__(self, host, port, *args, **kwargs):
        if host != self.name:
            return socket.getaddrinfo(host, port, *args, **kwargs)
        self.asked += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.address, port or 0))]


def http_settings(**overrides) -> Settings:
    env = {"MCP_TRANSPORT": "streamable-http", "MCP_POOL_TIMEOUT_MS": "1500", "MCP_ALLOWED_HOSTS": "127.0.0.1"}
    return Settings.from_env("postgres", env, **overrides)


def test_postgres_reconnects_are_checked_again_and_go_to_the_checked_address(pg_database, caplog):
    dns = Rebinding("db.rebind.test", "127.0.0.1")
    backend = PostgresBackend(http_settings())
    backend.targets = TargetPolicy(["127.0.0.1"], remote=True, resolver=dns)
    config = PostgresTenant(**{**pg_register_args(pg_database), "host": "db.rebind.test", "tenant_id": "rebind"})
    backend.verify(config)  # the name exists only in the test's resolver: the pin carried the connection
    pool = backend.open(config)
    try:
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            conn.close()  # the next checkout must connect again
        dns.address = "169.254.169.254"
        with caplog.at_level(logging.WARNING), pytest.raises(psycopg_pool.PoolTimeout):
            pool.getconn(timeout=1.5)
        assert "may never point there" in caplog.text
        with pytest.raises(AccessDenied, match="may never point there"):
            backend.verify(config)
    finally:
        backend.close(pool)
    # Trusted tenants (environment, CLI) connect as configured, loopback included.
    trusted = PostgresBackend(http_settings(allowed_hosts=()))
    cli_config = dataclasses.replace(PostgresTenant(**pg_register_args(pg_database)), origin="cli")
    trusted.verify(cli_config)
    with pytest.raises(AccessDenied, match="loopback"):
        trusted.verify(dataclasses.replace(cli_config, origin="tool"))


def test_s3_reconnects_are_checked_again(s3_service):
    host, port = s3_service.endpoint.rsplit(":", 1)
    dns = Rebinding("s3.rebind.test", host)
    backend = MinioBackend(Settings.from_env("minio", {"MCP_TRANSPORT": "streamable-http"}))
    backend.targets = TargetPolicy([host], remote=True, resolver=dns)
    config = MinioTenant(
        tenant_id="rebind",
        endpoint=f"s3.rebind.test:{port}",
        access_key=s3_service.access_key,
        secret_key=s3_service.secret_key,
        region=s3_service.region,
    )
    backend.verify(config)
    client = backend.open(config)
    try:
        client.list_buckets()
        dns.address = "169.254.169.254"
        client._http.clear()  # drop the pooled connection: the next request connects again
        with pytest.raises(AccessDenied, match="may never point there"):
            client.list_buckets()
    finally:
        with contextlib.suppress(Exception):
            backend.close(client)
