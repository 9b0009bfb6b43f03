"""The HTTP gate over an in-process ASGI app: who gets in, the 401s, the RFC 9728 metadata."""

import asyncio
import dataclasses
import json
import time

import fakeredis
import httpx2
import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_tenants.access.http import build_http_auth, principal_of, request_principal
from mcp_tenants.access.keys import ApiKeyStore, hash_key
from mcp_tenants.settings import RedisSettings, Settings

from .test_access_oauth import AUDIENCE, ISSUER, RSA_KEY, Issuer, claims


async def whoami(request):
    p = principal_of(request)
    assert request_principal() is p  # the context variable agrees with the scope
    return JSONResponse({"name": p.name, "kind": p.kind, "role": p.role, "patterns": list(p.patterns)})


async def health(request):
    return JSONResponse({"ok": True})


def settings(**overrides):
    return Settings(server="postgres", redis=RedisSettings(), transport="streamable-http", **overrides)


def make_app(auth):
    app = Starlette(routes=[Route("/mcp", whoami, methods=["GET", "POST"]), Route("/healthz", health), *auth.routes])
    return auth.wrap(app)


def call(app, path="/mcp", token=None, header=None):
    async def go():
        headers = {"Authorization": header or f"Bearer {token}"} if (token or header) else {}
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


@pytest.fixture
def redis_server():
    return fakeredis.FakeServer()


def redis_client(server):
    return fakeredis.FakeRedis(server=server, decode_responses=True)


def test_without_any_authentication_configured_callers_are_anonymous(redis_server):
    auth = build_http_auth(settings(), redis_client(redis_server))
    try:
        app = make_app(auth)
        assert call(app).json()["name"] == "anonymous" and call(app).json()["role"] == "admin"
        assert call(app, token="whatever").status_code == 401  # a wrong credential is never ignored
        assert call(app, header="Basic dXNlcjpwdw==").status_code == 401
    finally:
        auth.close()


def test_the_auth_token_is_the_admin_principal_and_everything_else_gets_401(redis_server):
    auth = build_http_auth(settings(auth_token="s3cret-token-value"), redis_client(redis_server))
    try:
        app = make_app(auth)
        assert call(app, token="s3cret-token-value").json() == {
            "name": "token",
            "kind": "token",
            "role": "admin",
            "patterns": ["*"],
        }
        missing = call(app)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="mcp"'
        wrong = call(app, token="s3cret-token-valuX")
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert call(app, "/healthz").status_code == 200  # health stays open
        assert call(app, "/mcp/").status_code == 401  # anything not listed as public is protected
    finally:
        auth.close()


def test_a_stored_api_key_makes_authentication_required_and_names_the_principal(redis_server):
    auth = build_http_auth(settings(), redis_client(redis_server))
    try:
        app = make_app(auth)
        assert call(app).status_code == 200
        _, key = ApiKeyStore(redis_client(redis_server), "postgres").create("team-a", "sales_*", "writer")
        deadline = time.monotonic() + 5
        while call(app).status_code != 401:  # within a second (announcement, or the 1 s cache)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert call(app, token=key).json() == {
            "name": "team-a",
            "kind": "key",
            "role": "writer",
            "patterns": ["sales_*"],
        }
        ApiKeyStore(redis_client(redis_server), "postgres").revoke("team-a")
        while call(app, token=key).status_code != 401:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        auth.close()


def test_expired_keys_are_refused(redis_server):
    store = ApiKeyStore(redis_client(redis_server), "postgres")
    record, key = store.create("short", "*", "reader", expires_in=3600)
    expired = dataclasses.replace(record, expires=time.time() - 1)
    store.client.hset(store.records, hash_key(key), expired.to_json())
    auth = build_http_auth(settings(), redis_client(redis_server))
    try:
        assert call(make_app(auth), token=key).status_code == 401
    finally:
        auth.close()


def test_oauth_publishes_metadata_and_points_401s_at_it(monkeypatch):
    issuer = Issuer()
    monkeypatch.setattr("mcp_tenants.access.oauth.fetch_json", issuer)
    auth = build_http_auth(
        settings(oauth_issuer=ISSUER, oauth_audience=AUDIENCE, public_url="https://mcp.example.com"), None
    )
    auth.verifier.jwt._fetch = issuer
    app = make_app(auth)
    metadata_url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    assert ISSUER.count("/") > 2  # a path-ful issuer; the integration test covers a path-less one
    refused = call(app)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == f'Bearer realm="mcp", resource_metadata="{metadata_url}"'
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        metadata = call(app, path)
        assert metadata.status_code == 200, path
        body = metadata.json()
        assert body["resource"] == "https://mcp.example.com/mcp" and body["authorization_servers"] == [ISSUER]
        assert body["scopes_supported"] == ["mcp:admin", "mcp:writer"]
    good = jwt.encode(claims(scope="mcp:admin"), RSA_KEY, algorithm="RS256", headers={"kid": "rsa1"})
    assert call(app, token=good).json() == {
        "name": "alice",
        "kind": "oauth",
        "role": "admin",
        "patterns": ["sales_*", "ops"],
    }
    other_audience = jwt.encode(
        claims(aud="https://x.example.com/mcp"), RSA_KEY, algorithm="RS256", headers={"kid": "rsa1"}
    )
    refused = call(app, token=other_audience)
    assert refused.status_code == 401 and "invalid_token" in refused.headers["www-authenticate"]
    assert json.loads(refused.text)["error"] == "invalid_token"


def test_beyond_loopback_anonymous_callers_need_allow_unauthenticated(redis_server):
    for host, allowed, expected in [("0.0.0.0", False, 401), ("0.0.0.0", True, 200), ("::1", False, 200)]:
        auth = build_http_auth(settings(host=host, allow_unauthenticated=allowed), redis_client(redis_server))
        try:
            assert call(make_app(auth)).status_code == expected, (host, allowed)
            assert auth.can_authenticate() is False
        finally:
            auth.close()
    ApiKeyStore(redis_client(redis_server), "postgres").create("k", "*", "reader")
    auth = build_http_auth(settings(host="0.0.0.0"), redis_client(redis_server))
    assert auth.can_authenticate() is True
    auth.close()


def test_the_default_audience_is_the_servers_own_mcp_url():
    auth = build_http_auth(settings(oauth_issuer=ISSUER, host="127.0.0.1", port=8123), None)
    assert auth.resource_url == "http://127.0.0.1:8123/mcp" and auth.verifier.jwt.audience == auth.resource_url
