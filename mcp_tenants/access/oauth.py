"""OAuth 2.1 access tokens (the MCP authorization spec, this server as resource server).

JWT access tokens are verified with PyJWT against the issuer's published keys: the JWKS URL from
``MCP_OAUTH_JWKS_URL`` or from the issuer's discovery document (OpenID Connect discovery, else
RFC 8414 metadata). Checked: the signature with an asymmetric algorithm that fits the key (never
``none`` and never HMAC: a public key must not double as a shared secret), ``iss``, ``aud``
(``MCP_OAUTH_AUDIENCE``, by default the server's own ``/mcp`` URL), ``exp`` and, when present,
``nbf``. The principal is ``sub``; its grant is the claim ``MCP_OAUTH_TENANTS_CLAIM`` (a list of
tenant-id patterns, or one comma- or space-separated string); its role comes from the scopes:
``mcp:admin``, else ``mcp:writer``, else reader.

Verification is blocking (a key fetch may be needed): call ``verify`` from a worker thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from mcp_tenants.access.principals import Principal, parse_patterns
from mcp_tenants.config import shown
from mcp_tenants.errors import InvalidInput

logger = logging.getLogger(__name__)

ADMIN_SCOPE, WRITER_SCOPE = "mcp:admin", "mcp:writer"
#: Asymmetric algorithms by JWK key type; a key that names its own ``alg`` allows only that one.
ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512", "ES256K"),
    "OKP": ("EdDSA",),
}
LEEWAY_S = 30
FETCH_TIMEOUT_S = 5.0
#: After a failed discovery, wait this long before asking the issuer again.
RETRY_AFTER_S = 10.0
_LOOPBACK = ("localhost", "127.0.0.1", "::1")

FetchJson = Callable[[str], Any]


def fetch_json(url: str) -> Any:
    """GET ``url`` and parse the JSON body (redirects are not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with opener.open(request, timeout=FETCH_TIMEOUT_S) as response:
        return json.loads(response.read(1 << 20))


def check_url(name: str, url: str) -> str:
    """``url`` if it is https (or http on loopback, for development), else ``InvalidInput``."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        if parts.query or parts.fragment:
            raise InvalidInput(f"{name}={shown(url)} must not have a query or fragment")
        return url
    raise InvalidInput(
        f"{name}={shown(url)} must be an https:// URL (http:// only on localhost): keys fetched in clear "
        "text could be replaced on the way"
    )


class JwksClient(jwt.PyJWKClient):
    """PyJWT's JWKS client (key-set cache, one refresh per cooldown for unknown key ids), fetching
    through ``fetch`` (no redirects, bounded size and time)."""

    def __init__(self, uri: str, fetch: FetchJson) -> None:
        super().__init__(uri, cache_jwk_set=True, lifespan=300, timeout=FETCH_TIMEOUT_S)
        self._fetch_json = fetch

    def fetch_data(self) -> Any:
        try:
            data = self._fetch_json(self.uri)
        except (OSError, ValueError) as exc:
            raise jwt.PyJWKClientConnectionError(f"cannot fetch the JWKS from {self.uri}: {exc}") from exc
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        return data


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed every check: the principal, its scopes and the claims it came with."""

    principal: Principal
    scopes: tuple[str, ...]
    client_id: str
    expires_at: int
    claims: dict[str, Any]


def scopes_of(claims: dict[str, Any]) -> tuple[str, ...]:
    """The token's scopes, from ``scope`` (space-separated) or ``scp`` (a list or a string)."""
    raw = claims.get("scope", claims.get("scp", ""))
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return tuple(s for s in items if isinstance(s, str))


def role_of(scopes: tuple[str, ...]) -> str:
    """admin with ``mcp:admin``, writer with ``mcp:writer``, else reader."""
    if ADMIN_SCOPE in scopes:
        return "admin"
    return "writer" if WRITER_SCOPE in scopes else "reader"


def patterns_of(value: Any, claim: str) -> tuple[str, ...]:
    """The grant in the tenants claim; a malformed claim grants nothing."""
    if isinstance(value, str):
        value = value.replace(" ", ",")
    if not isinstance(value, (str, list)):
        return ()
    try:
        return parse_patterns(value, source=f"claim {claim}")
    except InvalidInput as exc:
        logger.warning("ignoring the %s claim of a token: %s", claim, exc)
        return ()


class JwtVerifier:
    """Verifies JWT access tokens of one issuer for one audience. Thread-safe."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        tenants_claim: str = "mcp_tenants",
        leeway: int = LEEWAY_S,
        fetch: FetchJson = fetch_json,
    ) -> None:
        self.issuer = check_url("MCP_OAUTH_ISSUER", issuer)
        self.audience = audience
        self.tenants_claim = tenants_claim
        self._leeway = leeway
        self._fetch = fetch
        self._jwks_url = check_url("MCP_OAUTH_JWKS_URL", jwks_url) if jwks_url else None
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()  # guards _client and _failed_at only
        self._failed_at = -RETRY_AFTER_S

    # -- keys ---------------------------------------------------------------------------------

    def discover(self) -> str:
        """The JWKS URL from the issuer's discovery document (whose ``issuer`` must match)."""
        base = self.issuer.rstrip("/")
        parts = urlsplit(base)
        candidates = [
            f"{base}/.well-known/openid-configuration",
            f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}",
        ]
        problems = []
        for url in candidates:
            try:
                document = self._fetch(url)
            except (OSError, ValueError) as exc:
                problems.append(f"{url}: {exc}")
                continue
            if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
                problems.append(f"{url}: no jwks_uri")
                continue
            if str(document.get("issuer", "")).rstrip("/") != base:
                problems.append(f"{url}: names issuer {shown(document.get('issuer'))}, not {base!r}")
                continue
            return check_url("jwks_uri", document["jwks_uri"])
        raise OSError("; ".join(problems))

    def _jwk_client(self) -> jwt.PyJWKClient | None:
        """The JWKS client, discovering its URL once; None while the issuer cannot be reached."""
        with self._lock:
            if self._client is not None:
                return self._client
            if time.monotonic() - self._failed_at < RETRY_AFTER_S:
                return None
        try:
            url = self._jwks_url or self.discover()
        except (OSError, InvalidInput) as exc:
            with self._lock:
                self._failed_at = time.monotonic()
            logger.warning("cannot read the OAuth issuer's discovery document (%s); tokens are refused", exc)
            return None
        client = JwksClient(url, self._fetch)
        with self._lock:
            self._client = self._client or client
            return self._client

    # -- tokens -------------------------------------------------------------------------------

    def verify(self, token: str) -> VerifiedToken | None:
        """The verified token, or None when any check fails (the reason is logged at DEBUG)."""
        try:
            return self._verify(token)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            logger.debug("OAuth token refused: %s", exc)
            return None

    def _verify(self, token: str) -> VerifiedToken | None:
        header = jwt.get_unverified_header(token)
        kid, algorithm = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not isinstance(algorithm, str):
            raise ValueError("the token header has no kid or no alg")
        client = self._jwk_client()
        if client is None:
            return None
        key = client.get_signing_key(kid)
        # PyJWK exposes the JWK's own "alg" only through its data (algorithm_name may be a default).
        declared = getattr(key, "_jwk_data", {}).get("alg")
        allowed = (declared,) if declared else ALGORITHMS.get(key.key_type or "", ())
        if algorithm not in allowed or algorithm not in {a for algs in ALGORITHMS.values() for a in algs}:
            raise ValueError(f"algorithm {algorithm!r} does not fit key {kid!r}")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self._leeway,
            options={"require": ["exp", "iss", "aud", "sub"], "verify_nbf": True},
        )
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise ValueError("sub is empty")
        scopes = scopes_of(claims)
        principal = Principal(
            subject[:200], "oauth", role_of(scopes), patterns_of(claims.get(self.tenants_claim), self.tenants_claim)
        )
        client_id = claims.get("client_id") or claims.get("azp") or subject
        return VerifiedToken(principal, scopes, str(client_id), int(claims["exp"]), {"iss": claims["iss"]})
