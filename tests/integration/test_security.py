"""Trust features on real services: HTTP auth, secrets at rest, Redis ACL and TLS, the host guard."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import secrets

import pytest
import redis as redis_lib
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcp_tenants.crypto import generate_key
from mcp_tenants.devservices import RedisService, free_ports

from .http import HttpServer
from .stdio import ServerProcess, Session
from .tenants import pg_register_args

PG = "mcp_tenants.postgres"


def closed_redis() -> dict[str, str]:
    return {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_ports(1)[0])}


def test_http_requires_the_bearer_token_and_sigterm_exits_cleanly(pg_database):
    token = secrets.token_hex(16)
    # Over HTTP a tool may register loopback targets only when the operator allows them.
    server = HttpServer(PG, {**closed_redis(), "MCP_AUTH_TOKEN": token, "MCP_ALLOWED_HOSTS": "127.0.0.1"})
    try:
        server.wait_ready()
        assert server.status_of(None) == 401
        assert server.status_of("wrong-token") == 401
        assert server.status_of(token) == 200

        async def scenario():
            async with server.client(token) as client:
                session = Session(client)
                await session.call("register_tenant", **pg_register_args(pg_database))
                return await session.call("query", tenant_id="acme", sql="SELECT 'over http' AS via")

        assert asyncio.run(scenario())["rows"] == [["over http"]]
        assert server.stop() == 0
        assert token not in server.logs() and pg_database["password"] not in server.logs()
    finally:
        server.close()


def test_non_loopback_bind_without_token_is_refused_unless_allowed(redis_db):
    refused = HttpServer(PG, closed_redis(), host="0.0.0.0")
    try:
        assert refused.process.wait(timeout=60) == 2
        assert "MCP_AUTH_TOKEN" in refused.logs()
    finally:
        refused.close()
    # A reachable Redis without API keys: while Redis cannot say whether keys exist, callers
    # without credentials are refused (fail closed), --allow-unauthenticated or not.
    allowed = HttpServer(PG, redis_db.env(), "--allow-unauthenticated", host="0.0.0.0")
    try:
        allowed.wait_ready()
        assert allowed.status_of(None) == 200
        assert allowed.stop() == 0
    finally:
        allowed.close()


def test_secrets_are_sealed_at_rest_and_a_wrong_key_fails_only_that_tenant(pg_database, redis_db):
    key = generate_key()
    sealed = ServerProcess(PG, {**redis_db.env(), "MCP_TENANT_ENCRYPTION_KEY": key})
    wrong = ServerProcess(PG, {**redis_db.env(), "MCP_TENANT_ENCRYPTION_KEY": generate_key()})
    try:

        async def register(session: Session):
            await session.call("register_tenant", **pg_register_args(pg_database))

        sealed.run(register)
        raw = redis_db.client.get("mcp:postgres:tenant:acme")
        assert pg_database["password"] not in raw
        stored = json.loads(raw)
        assert stored["user"] == pg_database["user"] and "fernet" in stored["password"]
        assert "plain text" not in sealed.logs()

        async def with_wrong_key(session: Session):
            error = await session.fail("query", tenant_id="acme", sql="SELECT 1")
            assert "cannot be decrypted" in error
            listing = await session.call("list_tenants")
            assert "acme" in listing["unreadable"]

        wrong.run(with_wrong_key)
        assert redis_db.client.get("mcp:postgres:tenant:acme") == raw  # nothing overwritten

        async def with_right_key(session: Session):
            return await session.call("query", tenant_id="acme", sql="SELECT 1 AS ok")

        assert sealed.run(with_right_key)["rows"] == [[1]]
    finally:
        sealed.close()
        wrong.close()


def test_redis_acl_user_limited_to_mcp_keys(pg_database):
    redis = RedisService(password=secrets.token_hex(8))
    redis.start()
    try:
        admin = redis.client(decode_responses=True)
        acl_password = secrets.token_hex(12)
        admin.execute_command("ACL", "SETUSER", "mcp", "on", f">{acl_password}", "~mcp:*", "+@all", "-@dangerous")
        limited = redis.client(username="mcp", password=acl_password, decode_responses=True)
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            limited.set("other:key", "x")
        server = ServerProcess(
            PG,
            {
                "REDIS_HOST": redis.host,
                "REDIS_PORT": str(redis.port),
                "REDIS_USERNAME": "mcp",
                "REDIS_PASSWORD": acl_password,
            },
        )

        async def scenario(session: Session):
            assert (await session.call("register_tenant", **pg_register_args(pg_database)))["persisted"] is True
            assert [t["source"] for t in (await session.call("list_tenants"))["tenants"]] == ["redis"]

        try:
            server.run(scenario)
            assert admin.exists("mcp:postgres:tenant:acme")
            assert acl_password not in server.logs()
        finally:
            server.close()
    finally:
        redis.stop()


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "redis.crt", tmp_path / "redis.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_rediss_url_reaches_redis_over_tls(pg_database, tmp_path):
    cert, key = _self_signed(tmp_path)
    (tls_port,) = free_ports(1)
    password = secrets.token_hex(8)
    redis = RedisService(
        password=password,
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
        ],
    )
    redis.start()
    try:
        url = f"rediss://:{password}@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}"
        server = ServerProcess(PG, {"REDIS_URL": url, "REDIS_HOST": "ignored.invalid"})

        async def scenario(session: Session):
            assert (await session.call("register_tenant", **pg_register_args(pg_database)))["persisted"] is True

        try:
            server.run(scenario)
            assert redis.client(decode_responses=True).exists("mcp:postgres:tenant:acme")
            assert password not in server.logs()
        finally:
            server.close()
    finally:
        redis.stop()


def test_host_guard_and_keyword_conninfo(pg_database, redis_db):
    guarded = ServerProcess(PG, {**redis_db.env(), "MCP_ALLOWED_HOSTS": "10.0.0.0/8,*.db.internal"})
    open_server = ServerProcess(PG, redis_db.env())
    try:

        async def guarded_scenario(session: Session):
            error = await session.fail("register_tenant", **pg_register_args(pg_database))
            assert "MCP_ALLOWED_HOSTS" in error

        async def open_scenario(session: Session):
            error = await session.fail("register_tenant", **pg_register_args(pg_database, host="169.254.169.254"))
            assert "link-local" in error
            # A password that looks like conninfo stays a password: the real host refuses it.
            error = await session.fail(
                "register_tenant", **pg_register_args(pg_database, password="x host=evil.invalid port=1")
            )
            assert "the password was refused" in error and "evil.invalid" not in error

        guarded.run(guarded_scenario)
        open_server.run(open_scenario)
        assert redis_db.client.keys("mcp:*:tenant:*") == []  # tenants only: the audit stream records the attempt
    finally:
        guarded.close()
        open_server.close()
