"""Start ``issuer.mjs`` (oidc-provider) with issuers whose RSA keys the tests generate, and get tokens.

Each issuer is ``http://127.0.0.1:PORT`` and issues JWT access tokens with the client_credentials
grant for the resource indicator the client asks for (its ``aud``). The tests keep each issuer's
private key, so they can also sign a token the issuer would have signed, with claims the issuer
would never put in one (an ``exp`` in the past).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from mcp_tenants.devservices import free_ports
from tests import audit

NODE_DIR = Path(__file__).resolve().parent
STAMP = NODE_DIR / "node_modules" / ".mcp-tenants-lock.sha256"


class IssuerUnavailable(Exception):
    """node/npm are missing, ``npm ci`` failed, or the issuer did not start."""


def install() -> str:
    """``npm ci`` into tests/integration/oauth once (skipped while the lock file is unchanged); the node path."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise IssuerUnavailable("node and npm are needed for the OAuth tests (not on PATH)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if not match or (int(match.group(1)), int(match.group(2))) < (20, 19):
        raise IssuerUnavailable(f"node {version or '?'} is too old for oidc-provider (needs >= 20.19)")
    digest = hashlib.sha256(b"".join((NODE_DIR / n).read_bytes() for n in ("package.json", "package-lock.json")))
    if not (STAMP.is_file() and STAMP.read_text().strip() == digest.hexdigest()):
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            env={**os.environ, "npm_config_update_notifier": "false"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise IssuerUnavailable(f"npm ci in {NODE_DIR} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        STAMP.write_text(digest.hexdigest() + "\n")
    return node


@dataclass
class Client:
    """A client of an issuer: its credentials, the scopes it may ask for, its tenants claim."""

    client_id: str
    scope: str
    tenants: list[str]
    client_secret: str = field(default_factory=lambda: os.urandom(12).hex())


@dataclass
class Issuer:
    """One issuer: its URL, its private key (kid ``k1``) and its clients."""

    port: int
    clients: list[Client]
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spec(self) -> dict[str, Any]:
        private = {**RSAAlgorithm.to_jwk(self.key, as_dict=True), "kid": "k1", "use": "sig", "alg": "RS256"}
        return {
            "port": self.port,
            "jwk": private,
            "clients": [vars(c) for c in self.clients],
        }

    def token(self, client_id: str, resource: str, scope: str | None = None) -> str:
        """An access token from the issuer's token endpoint (client_credentials, resource indicator)."""
        client = next(c for c in self.clients if c.client_id == client_id)
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "resource": resource,
        }
        wanted = client.scope if scope is None else scope
        if wanted:  # a client without scopes asks for none (its tokens make readers)
            form["scope"] = wanted
        request = urllib.request.Request(f"{self.url}/token", data=urllib.parse.urlencode(form).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                token = json.load(response)["access_token"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"token request failed: {exc.code} {exc.read()[:500]!r}") from None
        audit.secret(token)
        return token

    def mint(self, **claims: Any) -> str:
        """A token signed with this issuer's own key, with exactly ``claims`` (iss added)."""
        token = jwt.encode({"iss": self.url, **claims}, self.key, algorithm="RS256", headers={"kid": "k1"})
        audit.secret(token)
        return token


class Issuers:
    """``issuer.mjs`` serving several issuers; a context manager, stopped by its PID."""

    def __init__(self, *client_lists: list[Client]) -> None:
        ports = free_ports(len(client_lists))
        self.issuers = [Issuer(port, clients) for port, clients in zip(ports, client_lists, strict=True)]
        self.process: subprocess.Popen[str] | None = None
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115

    def __enter__(self) -> list[Issuer]:
        node = install()
        json.dump({"issuers": [i.spec() for i in self.issuers]}, self._config)
        self._config.close()
        os.chmod(self._config.name, 0o600)  # private keys
        self.process = subprocess.Popen(
            [node, str(NODE_DIR / "issuer.mjs"), self._config.name],
            cwd=NODE_DIR,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # "ready", or EOF when it failed
        if line != "ready":
            self.__exit__()
            raise IssuerUnavailable(f"issuer.mjs did not start: {Path(self._log.name).read_text()[-3000:]}")
        deadline = time.monotonic() + 10
        for issuer in self.issuers:
            while True:
                try:
                    urllib.request.urlopen(f"{issuer.url}/.well-known/openid-configuration", timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        return self.issuers

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in (self._config.name, self._log.name):
            Path(path).unlink(missing_ok=True)
