"""OAuth 2.1 access tokens from a real authorization server (oidc-provider), over real HTTP.

Issuer A is the server's ``MCP_OAUTH_ISSUER``; issuer B is another, with its own key. Tokens come
from their token endpoints (client_credentials, with the server's ``/mcp`` URL as resource
indicator, so it is the token's audience). Valid tokens work, with the principal, role and grant
taken from ``sub``, scopes and the ``mcp_tenants`` claim; expired tokens, tokens for another
audience, from another issuer or badly signed get 401, which points at the RFC 9728 metadata.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from tests import audit

from ..conftest import service_unavailable
from .http import HttpServer
from .oauth.issuers import Client, Issuers, IssuerUnavailable
from .stdio import Session
from .test_access_http import MODULE, tenants_env


@pytest.fixture(scope="module")
def issuers():
    try:
        with Issuers(
            [Client("sales-app", "mcp:writer", ["sales_*"]), Client("hr-bot", "", ["hr_*"])],
            [Client("intruder", "mcp:admin", ["*"])],
        ) as started:
            yield started
    except IssuerUnavailable as exc:
        service_unavailable(str(exc))


@pytest.fixture
def server(issuers, redis_db, pg_database):
    issuer, _other = issuers
    running = HttpServer(MODULE, {**redis_db.env(), **tenants_env(pg_database), "MCP_OAUTH_ISSUER": issuer.url})
    try:
        running.wait_ready()
        yield running
    finally:
        running.close()


def listed(server: HttpServer, token: str) -> list[str]:
    async def scenario():
        async with server.client(token) as client:
            return [t["tenant_id"] for t in (await Session(client).call("list_tenants"))["tenants"]]

    return asyncio.run(scenario())


def test_the_server_publishes_its_metadata_and_401s_point_at_it(server, issuers):
    issuer, _ = issuers
    base = server.url.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            metadata = json.load(response)
        assert metadata["resource"] == server.url and metadata["authorization_servers"] == [issuer.url]
    request = urllib.request.Request(server.url, data=b"{}", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert (
        f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        in refused.value.headers["WWW-Authenticate"]
    )


def test_valid_tokens_carry_principal_role_and_grant(server, issuers, redis_db):
    issuer, _ = issuers
    sales = issuer.token("sales-app", server.url)
    hr = issuer.token("hr-bot", server.url)
    assert listed(server, sales) == ["sales_eu", "sales_us"] and listed(server, hr) == ["hr_payroll"]

    async def hr_writes():
        async with server.client(hr) as client:
            return await Session(client).fail("execute", tenant_id="hr_payroll", sql="CREATE TABLE t (n int)")

    assert "oauth 'hr-bot' has role reader" in asyncio.run(hr_writes())
    deadline = time.monotonic() + 10  # the records are written by a background thread
    while redis_db.client.xlen("mcp:postgres:audit") < 3:
        assert time.monotonic() < deadline, "audit records missing"
        time.sleep(0.05)
    records = [f for _id, f in redis_db.client.xrange("mcp:postgres:audit")]
    assert {(r["principal"], r["kind"]) for r in records} == {("sales-app", "oauth"), ("hr-bot", "oauth")}
    assert sales not in json.dumps(records)


def test_expired_foreign_misaddressed_and_badly_signed_tokens_are_refused(server, issuers):
    issuer, other = issuers
    now = int(time.time())
    good = issuer.token("sales-app", server.url)
    header, payload, signature = good.split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    refused = {
        "expired": issuer.mint(sub="sales-app", aud=server.url, iat=now - 600, exp=now - 300, scope="mcp:writer"),
        "other audience": issuer.token("sales-app", "http://127.0.0.1:1/mcp"),
        "other issuer": other.token("intruder", server.url),
        "bad signature": f"{header}.{payload}.{flipped}",
        "signed by another key": other.mint(sub="sales-app", aud=server.url, exp=now + 300, iss=issuer.url),
    }
    audit.secret(*refused.values())
    assert server.status_of(good) == 200
    # The same claims signed by the issuer's key pass: what fails above is exactly the defect.
    assert server.status_of(issuer.mint(sub="sales-app", aud=server.url, exp=now + 300)) == 200
    statuses = {name: server.status_of(token) for name, token in refused.items()}
    assert statuses == dict.fromkeys(refused, 401)
