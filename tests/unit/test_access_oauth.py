"""OAuth access tokens: signature, issuer, audience, expiry, and the claims that make a principal.

Keys are real (RSA and EC, from ``cryptography``); discovery and JWKS come from a fake fetcher,
so every answer of the "issuer" is under the test's control.
"""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mcp_tenants.access.oauth import JwtVerifier, patterns_of, role_of
from mcp_tenants.errors import InvalidInput

ISSUER = "https://issuer.example.com/realms/mcp"
AUDIENCE = "https://mcp.example.com/mcp"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key, kid, **extra):
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", **extra}


class Issuer:
    """Discovery document and JWKS as a fetcher; counts requests."""

    def __init__(self, keys=None, issuer=ISSUER):
        self.keys = keys if keys is not None else [jwk(RSA_KEY, "rsa1"), jwk(EC_KEY, "ec1")]
        self.issuer = issuer
        self.requests = []

    def __call__(self, url):
        self.requests.append(url)
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": self.issuer, "jwks_uri": "https://issuer.example.com/jwks"}
        if url == "https://issuer.example.com/jwks":
            return {"keys": self.keys}
        raise OSError(f"404 {url}")


def claims(**overrides):
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": now + 300,
        "iat": now,
        "scope": "openid mcp:writer",
        "mcp_tenants": ["sales_*", "ops"],
        "azp": "claude",
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def token(key=RSA_KEY, kid="rsa1", algorithm="RS256", **overrides):
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers={"kid": kid})


def hs256(payload, secret, *, kid):
    """An HS256 token made by hand (PyJWT itself refuses asymmetric keys as HMAC secrets)."""

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(payload).encode())}"
    )
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def verifier(issuer=None, **kwargs):
    issuer = issuer or Issuer()
    return JwtVerifier(ISSUER, AUDIENCE, fetch=issuer, **kwargs), issuer


def test_a_valid_token_makes_a_principal_from_sub_scope_and_tenants_claim():
    v, _ = verifier()
    verified = v.verify(token())
    assert verified.principal.name == "alice" and verified.principal.kind == "oauth"
    assert verified.principal.role == "writer" and verified.principal.patterns == ("sales_*", "ops")
    assert verified.client_id == "claude" and verified.claims == {"iss": ISSUER}
    ec_token = v.verify(token(EC_KEY, "ec1", "ES256", scope="mcp:admin", mcp_tenants="hr, ops"))
    assert ec_token.principal.role == "admin" and ec_token.principal.patterns == ("hr", "ops")


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": int(time.time()) - 120},  # expired (beyond the leeway)
        {"nbf": int(time.time()) + 600},  # not yet valid
        {"aud": "https://other.example.com/mcp"},  # for another resource
        {"iss": "https://evil.example.com"},  # from another issuer
        {"exp": None},
        {"aud": None},
        {"sub": None},
        {"sub": ""},
    ],
    ids=["expired", "not-yet", "audience", "issuer", "no-exp", "no-aud", "no-sub", "empty-sub"],
)
def test_tokens_failing_a_claim_check_are_refused(bad):
    v, _ = verifier()
    assert v.verify(token(**bad)) is None


def test_badly_signed_tokens_are_refused():
    v, _ = verifier()
    assert v.verify(token(OTHER_KEY)) is None  # another key under a known kid
    assert v.verify(token(OTHER_KEY, kid="unknown")) is None
    good = token()
    header, payload, signature = good.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["mcp_tenants"] = ["*"]
    tampered = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert v.verify(f"{header}.{tampered}.{signature}") is None
    assert v.verify("not.a.jwt") is None and v.verify("") is None


def test_none_and_hmac_algorithms_are_refused_even_with_the_public_key_as_secret():
    v, _ = verifier()
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa1"})
    assert v.verify(unsigned) is None
    # Algorithm confusion: HS256 with the issuer's public key (which anyone can download) as secret.
    public_pem = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert v.verify(hs256(claims(), public_pem, kid="rsa1")) is None
    # A key that declares its algorithm allows only that one.
    v2, _ = verifier(Issuer([jwk(RSA_KEY, "rsa1", alg="PS256")]))
    assert v2.verify(token()) is None and v2.verify(token(algorithm="PS256")) is not None
    # An oct (shared-secret) key in the JWKS is never used.
    v3, _ = verifier(Issuer([{"kty": "oct", "k": "c2VjcmV0", "kid": "rsa1", "alg": "HS256"}]))
    assert v3.verify(hs256(claims(), b"secret", kid="rsa1")) is None


def test_a_token_without_kid_is_refused():
    v, _ = verifier()
    assert v.verify(jwt.encode(claims(), RSA_KEY, algorithm="RS256")) is None


def test_discovery_must_name_the_configured_issuer_and_failures_are_not_retried_at_once():
    v, issuer = verifier(Issuer(issuer="https://evil.example.com"))
    assert v.verify(token()) is None
    asked = len(issuer.requests)
    assert v.verify(token()) is None and len(issuer.requests) == asked  # waits before asking again


def test_jwks_url_setting_skips_discovery_and_unknown_kids_do_not_hammer_the_issuer():
    issuer = Issuer()
    v = JwtVerifier(ISSUER, AUDIENCE, jwks_url="https://issuer.example.com/jwks", fetch=issuer)
    assert v.verify(token()) is not None
    assert issuer.requests == ["https://issuer.example.com/jwks"]
    for n in range(5):
        assert v.verify(token(OTHER_KEY, kid=f"made-up-{n}")) is None
    assert len(issuer.requests) <= 2  # at most one refresh per cooldown


def test_issuer_and_jwks_urls_must_be_https_except_on_loopback():
    with pytest.raises(InvalidInput, match="https"):
        JwtVerifier("http://issuer.example.com", AUDIENCE)
    with pytest.raises(InvalidInput, match="https"):
        JwtVerifier(ISSUER, AUDIENCE, jwks_url="file:///etc/passwd")
    JwtVerifier("http://127.0.0.1:8080/realms/x", AUDIENCE)


def test_roles_and_grants_from_claims():
    assert role_of(("mcp:admin", "mcp:writer")) == "admin" and role_of(("mcp:writer",)) == "writer"
    assert role_of(()) == "reader" and role_of(("admin",)) == "reader"
    assert patterns_of(["a_*", "b"], "c") == ("a_*", "b") and patterns_of("a_* b,c", "c") == ("a_*", "b", "c")
    assert patterns_of(["ok", "bad.pattern"], "c") == () and patterns_of(42, "c") == ()
