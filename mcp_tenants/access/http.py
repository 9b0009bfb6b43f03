"""HTTP authentication: one token verifier for every kind of credential, and the gate in front of /mcp.

Built on the MCP SDK's auth support: ``PrincipalVerifier`` is a ``TokenVerifier``
(``mcp.server.auth.provider``) used by the SDK's ``BearerAuthBackend``; the SDK's
``AuthContextMiddleware`` and ``create_protected_resource_routes`` (RFC 9728) do the rest. What the
SDK's ``RequireAuthMiddleware`` cannot express is our rule for *when* a request must authenticate:

    A request must carry valid credentials when ``MCP_AUTH_TOKEN`` or ``MCP_OAUTH_ISSUER`` is set,
    or at least one API key is stored (re-read at most every second; while Redis has never answered
    this counts as yes). Otherwise a request without an ``Authorization`` header is made by
    ``ANONYMOUS``, but only on a loopback bind or with ``--allow-unauthenticated``: a server bound
    beyond loopback never lets an anonymous caller in by default. A header that does not verify is
    always refused. On a loopback bind (without ``--allow-unauthenticated``) an anonymous request
    must also name a loopback host in ``Host`` (and ``Origin``, when sent): a web page whose name
    an attacker re-points at 127.0.0.x (DNS rebinding) must not drive the server as admin.

``AccessGate`` applies that rule, answers 401 with a ``WWW-Authenticate`` header that points at the
protected-resource metadata when OAuth is configured, and records the request's principal in the
ASGI scope (``principal_of``) and in a context variable (``request_principal``).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from pydantic import AnyHttpUrl, ConfigDict
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_tenants.access.keys import ApiKeyStore, KeyCache, hash_key, looks_like_key
from mcp_tenants.access.oauth import ADMIN_SCOPE, WRITER_SCOPE, JwtVerifier
from mcp_tenants.access.principals import ANONYMOUS, NOBODY, Principal
from mcp_tenants.errors import StoreUnavailable

logger = logging.getLogger(__name__)

#: The admin principal of ``MCP_AUTH_TOKEN``.
TOKEN_PRINCIPAL = Principal("token", "token", "admin", ("*",))
SCOPE_KEY = "mcp_tenants.principal"
PUBLIC_PATHS = ("/healthz", "/readyz")
METADATA_PATH = "/.well-known/oauth-protected-resource"

_request_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "mcp_tenants_request_principal", default=NOBODY
)


class PrincipalToken(AccessToken):
    """An ``AccessToken`` that carries the principal it authenticates."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    principal: Principal


def principal_of(scope_or_request: Any) -> Principal:
    """The principal the gate let in for this request (an ASGI scope or a Starlette ``Request``)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    principal = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    return principal if isinstance(principal, Principal) else NOBODY


def request_principal() -> Principal:
    """The principal of the HTTP request being handled (``NOBODY`` outside one: fail closed)."""
    return _request_principal.get()


class PrincipalVerifier:
    """The SDK ``TokenVerifier``: ``MCP_AUTH_TOKEN``, API keys (via ``KeyCache``) and OAuth JWTs."""

    def __init__(
        self,
        *,
        auth_token: str | None = None,
        keys: KeyCache | None = None,
        jwt_verifier: JwtVerifier | None = None,
        allow_anonymous: bool = True,
        anonymous_local_only: bool = False,
    ) -> None:
        self._token = auth_token.encode() if auth_token else None
        self.keys = keys
        self.jwt = jwt_verifier
        self.allow_anonymous = allow_anonymous
        #: Anonymous requests must address the server by a loopback name (see the module docstring).
        self.anonymous_local_only = anonymous_local_only

    @property
    def always_required(self) -> bool:
        """True when a token or an OAuth issuer is configured: every request must authenticate."""
        return self._token is not None or self.jwt is not None

    async def auth_required(self) -> bool:
        """Whether a request without credentials is refused (see the module docstring)."""
        if self.always_required or not self.allow_anonymous:
            return True
        if self.keys is None:
            return False
        cached = self.keys.any_keys_cached()
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(self.keys.fetch_any_keys)

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's principal wrapped in an ``AccessToken``, or None when it does not verify."""
        try:
            return await self._verify(token)
        except Exception:  # a verifier failure must refuse the request, never fail it open
            logger.exception("bearer token verification failed unexpectedly")
            return None

    async def _verify(self, token: str) -> AccessToken | None:
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]  # the token itself is kept nowhere
        # Constant-time comparison: the time taken says nothing about how much matched.
        if self._token is not None and hmac.compare_digest(token.encode(), self._token):
            return PrincipalToken(token=fingerprint, client_id="token", scopes=[ADMIN_SCOPE], principal=TOKEN_PRINCIPAL)
        if self.keys is not None and looks_like_key(token):
            digest = hash_key(token)
            hit, record = self.keys.cached(digest)
            if not hit:
                record = await anyio.to_thread.run_sync(self.keys.fetch, digest)
            if record is None or record.expired():
                return None
            return PrincipalToken(
                token=fingerprint,
                client_id=record.name,
                scopes=[f"mcp:{record.role}"],
                expires_at=int(record.expires) if record.expires is not None else None,
                principal=record.principal(),
            )
        if self.jwt is not None and token.count(".") == 2:
            verified = await anyio.to_thread.run_sync(self.jwt.verify, token)
            if verified is None:
                return None
            return PrincipalToken(
                token=fingerprint,
                client_id=verified.client_id,
                scopes=list(verified.scopes),
                expires_at=verified.expires_at,
                resource=self.jwt.audience,
                subject=verified.principal.name,
                claims=verified.claims,
                principal=verified.principal,
            )
        return None


class AccessGate:
    """ASGI: lets a request through with its principal, or answers 401 (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, verifier: PrincipalVerifier, *, metadata_url: str | None, public_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.metadata_url = metadata_url
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        credentials = sum(1 for name, _value in scope.get("headers", ()) if name.lower() == b"authorization")
        if credentials > 1:
            # Which one counts would depend on who reads the request (this server takes the first, a
            # proxy in front may take the last): an ambiguous request is refused whatever it holds.
            await self._refuse(send, "invalid_request", "send exactly one Authorization header")
            return
        if isinstance(user, AuthenticatedUser) and isinstance(user.access_token, PrincipalToken):
            principal = user.access_token.principal
        elif credentials:
            await self._refuse(send, "invalid_token", "the bearer token is invalid, expired or revoked")
            return
        elif await self.verifier.auth_required():
            await self._refuse(send, None, "authentication required: send Authorization: Bearer <token or key>")
            return
        elif self.verifier.anonymous_local_only and not addressed_locally(scope):
            await self._refuse(
                send,
                None,
                "authentication required: without credentials only requests naming a loopback host are served",
            )
            return
        else:
            principal = ANONYMOUS
        scope[SCOPE_KEY] = principal
        reset = _request_principal.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            _request_principal.reset(reset)

    async def _refuse(self, send: Send, error: str | None, description: str) -> None:
        parts = [f'error="{error}"', f'error_description="{description}"'] if error else ['realm="mcp"']
        if self.metadata_url:
            parts.append(f'resource_metadata="{self.metadata_url}"')
        body = json.dumps({"error": error or "unauthorized", "error_description": description}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f"Bearer {', '.join(parts)}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _loopback_name(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def addressed_locally(scope: Scope) -> bool:
    """True when the request's ``Host`` (and ``Origin``, if any) name a loopback host."""
    from urllib.parse import urlsplit

    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.lower(), []).append(value)
    hosts = headers.get(b"host", [])
    if len(hosts) != 1:
        return False
    host = hosts[0].decode("latin-1").strip()
    if host.startswith("["):  # [v6]:port
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not _loopback_name(name):
        return False
    for origin in headers.get(b"origin", []):
        try:
            hostname = urlsplit(origin.decode("latin-1").strip()).hostname  # "null" has none: refused
        except ValueError:
            return False
        if not _loopback_name(hostname):
            return False
    return True


@dataclass
class HttpAuth:
    """What the HTTP app needs: ``wrap`` the app, mount ``routes``, ``close`` at shutdown."""

    verifier: PrincipalVerifier
    resource_url: str
    metadata_url: str | None = None
    routes: list[Route] = field(default_factory=list)

    def wrap(self, app: ASGIApp, *, public_paths: tuple[str, ...] = PUBLIC_PATHS) -> ASGIApp:
        """``app`` behind bearer authentication; ``public_paths`` and the metadata stay open."""
        public = (*public_paths, *(route.path for route in self.routes))
        gate = AccessGate(app, self.verifier, metadata_url=self.metadata_url, public_paths=public)
        return AuthenticationMiddleware(AuthContextMiddleware(gate), backend=BearerAuthBackend(self.verifier))

    def can_authenticate(self) -> bool:
        """Whether any credential can be accepted: a token, an issuer, or stored API keys (blocking:
        for the start-up check that refuses a non-loopback bind without authentication)."""
        if self.verifier.always_required:
            return True
        if self.verifier.keys is None:
            return False
        try:
            return self.verifier.keys.store.count() > 0
        except StoreUnavailable:  # unknown: not a reason to open a port nobody may be able to use
            return False

    def close(self) -> None:
        """Stop listening for API-key announcements."""
        if self.verifier.keys is not None:
            self.verifier.keys.close()


def public_mcp_url(settings: Any) -> str:
    """The URL clients use for this server's ``/mcp`` endpoint (``MCP_PUBLIC_URL`` + ``/mcp``)."""
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return f"{base.rstrip('/')}/mcp"


def build_http_auth(settings: Any, redis_client: Any | None) -> HttpAuth:
    """Authentication of one server process, from its settings (and Redis, for API keys)."""
    keys = KeyCache(ApiKeyStore(redis_client, settings.server)).start() if redis_client is not None else None
    resource_url = public_mcp_url(settings)
    jwt_verifier = None
    routes: list[Route] = []
    metadata_url = None
    if settings.oauth_issuer:
        jwt_verifier = JwtVerifier(
            settings.oauth_issuer,
            settings.oauth_audience or resource_url,
            jwks_url=settings.oauth_jwks_url,
            tenants_claim=settings.oauth_tenants_claim,
        )
        # Plain strings: the metadata model keeps a path-less issuer as written (RFC 8414 compares
        # issuers as exact strings), where AnyHttpUrl(...) would add a trailing slash.
        routes = create_protected_resource_routes(
            resource_url=AnyHttpUrl(resource_url),
            authorization_servers=[cast(AnyHttpUrl, settings.oauth_issuer)],
            scopes_supported=[ADMIN_SCOPE, WRITER_SCOPE],
            resource_name=f"mcp-tenants {settings.server}",
        )
        if routes[0].path != METADATA_PATH:  # also at the bare well-known path
            routes.append(Route(METADATA_PATH, endpoint=routes[0].endpoint, methods=["GET", "OPTIONS"]))
        metadata_url = str(build_resource_metadata_url(AnyHttpUrl(resource_url)))
        if not settings.public_url:
            logger.warning(
                "MCP_PUBLIC_URL is not set: OAuth clients are told this server is %s; set it to the URL clients use",
                resource_url,
            )
    verifier = PrincipalVerifier(
        auth_token=settings.auth_token,
        keys=keys,
        jwt_verifier=jwt_verifier,
        allow_anonymous=settings.allow_unauthenticated or is_loopback(settings.host),
        anonymous_local_only=not settings.allow_unauthenticated,
    )
    return HttpAuth(verifier, resource_url, metadata_url, routes)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
