"""Process settings: how to reach Redis and every limit and switch a server reads from its environment.

Read and validated once at start (frozen dataclasses), then shared between threads without locks.
Every error names the variable and the bad value, except for secrets, whose value is never
repeated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mcp_tenants.config import ACCESS_MODES, mask_url, parse_bool, parse_int, redact, shown
from mcp_tenants.errors import InvalidInput


@dataclass(frozen=True)
class RedisSettings:
    """How to reach Redis: ``REDIS_URL`` wins over the host/port/db/user/password variables."""

    host: str = "redis"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    url: str | None = None
    #: ``REDIS_SENTINELS``: (host, port) of each sentinel; when set the master comes from them.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_password: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis`` (or, with a URL, ``redis.Redis.from_url``)."""
        if self.url:
            return {"url": self.url}
        return {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
        }

    def describe(self) -> str:
        """Where Redis is, for logs and doctor output: never the password."""
        if self.sentinels:
            where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {where}"
        if self.url:
            return mask_url(self.url)
        return f"redis://{self.host}:{self.port}/{self.db}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, default_db: int) -> RedisSettings:
        """Read ``REDIS_*`` variables."""
        url = environ.get("REDIS_URL") or None
        if url and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise InvalidInput(f"REDIS_URL must start with redis://, rediss:// or unix://, got {mask_url(url)!r}")
        password = environ.get("REDIS_PASSWORD") or None
        sentinels = parse_sentinels(environ.get("REDIS_SENTINELS", ""))
        master = (environ.get("REDIS_SENTINEL_MASTER") or "").strip() or None
        if sentinels and not master:
            raise InvalidInput("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master to follow")
        if master and not sentinels:
            raise InvalidInput("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: list the sentinels")
        if sentinels and url and urlsplit(url).scheme == "unix":
            raise InvalidInput(
                "REDIS_URL=unix://... cannot be combined with REDIS_SENTINELS: use redis:// or rediss://"
            )
        sentinel_password = environ.get("REDIS_SENTINEL_PASSWORD") or None
        url_password = urlsplit(url).password if url else None
        # Both forms: the URL's percent-encoded one, and the decoded one Redis sees (and may echo).
        redact.add(password, sentinel_password, url_password, unquote(url_password) if url_password else None)
        return cls(
            sentinels=sentinels,
            sentinel_master=master,
            sentinel_password=sentinel_password,
            host=environ.get("REDIS_HOST", "redis") or "redis",
            port=parse_int("REDIS_PORT", environ.get("REDIS_PORT", "6379"), minimum=1, maximum=65535),
            db=parse_int("REDIS_DB", environ.get("REDIS_DB", str(default_db)), minimum=0, maximum=1_000_000),
            username=environ.get("REDIS_USERNAME") or None,
            password=password,
            url=url,
        )


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """``REDIS_SENTINELS``: ``host:port`` pairs, comma-separated (port 26379 when left out)."""
    sentinels = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, port = item, "26379"
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif item.count(":") == 1:
            host, port = item.split(":")
        if not host or any(c.isspace() or c in "/@[]" for c in host):
            raise InvalidInput(f"REDIS_SENTINELS entry {shown(item)} is invalid: use host:port,host:port")
        sentinels.append((host, parse_int("REDIS_SENTINELS port", port, minimum=1, maximum=65535)))
    return tuple(sentinels)


#: (variable, field, default, minimum, maximum) of every numeric limit.
_LIMITS: tuple[tuple[str, str, int, int, int], ...] = (
    ("MCP_QUERY_MAX_ROWS", "query_max_rows", 1000, 1, 1_000_000),
    ("MCP_RESULT_MAX_BYTES", "result_max_bytes", 1 << 20, 1024, 1 << 30),
    ("MCP_STATEMENT_TIMEOUT_MS", "statement_timeout_ms", 30_000, 1, 24 * 3600 * 1000),
    ("MCP_OBJECT_MAX_BYTES", "object_max_bytes", 1 << 20, 1, 1 << 30),
    ("MCP_PUT_MAX_BYTES", "put_max_bytes", 1 << 20, 1, 1 << 30),
    ("MCP_MAX_REQUEST_BYTES", "max_request_bytes", 0, 64 << 10, 1 << 31),
    ("MCP_PRINCIPAL_MAX_CALLS", "principal_max_calls", 0, 1, 1024),
    ("MCP_LIST_MAX_KEYS", "list_max_keys", 1000, 1, 100_000),
    ("MCP_WORKER_THREADS", "worker_threads", 16, 1, 1024),
    ("MCP_POOL_MAX_SIZE", "pool_max_size", 8, 1, 1000),
    ("MCP_POOL_TIMEOUT_MS", "pool_timeout_ms", 10_000, 1, 3600 * 1000),
    ("MCP_CONNECT_TIMEOUT_S", "connect_timeout_s", 5, 1, 300),
    ("MCP_MAX_OPEN_TENANTS", "max_open_tenants", 100, 1, 100_000),
    ("MCP_TENANT_IDLE_S", "tenant_idle_s", 600, 1, 7 * 24 * 3600),
    ("MCP_DRAIN_SECONDS", "drain_seconds", 0, 0, 300),
    ("MCP_AUDIT_MAX_LEN", "audit_max_len", 100_000, 1, 1_000_000_000),
)


@dataclass(frozen=True)
class Settings:
    """Everything a server process reads from its environment, validated."""

    server: str
    redis: RedisSettings
    query_max_rows: int = 1000
    result_max_bytes: int = 1 << 20
    statement_timeout_ms: int = 30_000
    object_max_bytes: int = 1 << 20
    put_max_bytes: int = 1 << 20
    #: 0: derived from put_max_bytes (see ``request_limit``).
    max_request_bytes: int = 0
    #: 0: half the worker threads (see ``principal_limit``).
    principal_max_calls: int = 0
    list_max_keys: int = 1000
    worker_threads: int = 16
    pool_max_size: int = 8
    pool_timeout_ms: int = 10_000
    connect_timeout_s: int = 5
    max_open_tenants: int = 100
    tenant_idle_s: int = 600
    drain_seconds: int = 0
    metrics_port: int | None = None
    audit_max_len: int = 100_000
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    auth_token: str | None = None
    allow_unauthenticated: bool = False
    encryption_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allowed_volatile_functions: tuple[str, ...] = ()
    log_level: str = "INFO"
    tenant_tools: bool = True
    max_access: str = "read-write"
    public_url: str | None = None
    oauth_issuer: str | None = None
    oauth_jwks_url: str | None = None
    oauth_audience: str | None = None
    oauth_tenants_claim: str = "mcp_tenants"

    @classmethod
    def from_env(cls, server: str, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read and validate the settings of ``server`` ("postgres" or "minio")."""
        env = os.environ if environ is None else environ
        default_db = {"postgres": 0, "minio": 1}[server]
        values: dict[str, Any] = {
            fld: parse_int(var, env[var], minimum=lo, maximum=hi)
            for var, fld, _default, lo, hi in _LIMITS
            if env.get(var, "").strip()
        }
        transport = env.get("MCP_TRANSPORT", "stdio") or "stdio"
        token = env.get("MCP_AUTH_TOKEN") or None
        keys = tuple(k.strip() for k in env.get("MCP_TENANT_ENCRYPTION_KEY", "").split(",") if k.strip())
        redact.add(token, *keys)
        values.update(
            transport=transport,
            host=env.get("MCP_HOST", "127.0.0.1") or "127.0.0.1",
            port=parse_int("MCP_PORT", env.get("MCP_PORT", "8000") or "8000", minimum=1, maximum=65535),
            auth_token=token,
            allow_unauthenticated=parse_bool(
                "MCP_ALLOW_UNAUTHENTICATED", env.get("MCP_ALLOW_UNAUTHENTICATED", "false")
            ),
            encryption_keys=keys,
            allowed_hosts=tuple(h.strip() for h in env.get("MCP_ALLOWED_HOSTS", "").split(",") if h.strip()),
            allowed_volatile_functions=tuple(
                f.strip() for f in env.get("MCP_ALLOWED_VOLATILE_FUNCTIONS", "").split(",") if f.strip()
            ),
            log_level=(env.get("MCP_LOG_LEVEL", "INFO") or "INFO").upper(),
            tenant_tools=_parse_switch("MCP_TENANT_TOOLS", env.get("MCP_TENANT_TOOLS", "on")),
            max_access=(env.get("MCP_MAX_ACCESS") or "read-write").strip(),
            public_url=(env.get("MCP_PUBLIC_URL") or "").strip().rstrip("/") or None,
            oauth_issuer=(env.get("MCP_OAUTH_ISSUER") or "").strip() or None,
            oauth_jwks_url=(env.get("MCP_OAUTH_JWKS_URL") or "").strip() or None,
            oauth_audience=(env.get("MCP_OAUTH_AUDIENCE") or "").strip() or None,
            oauth_tenants_claim=(env.get("MCP_OAUTH_TENANTS_CLAIM") or "").strip() or "mcp_tenants",
        )
        if env.get("MCP_METRICS_PORT", "").strip():
            values["metrics_port"] = parse_int("MCP_METRICS_PORT", env["MCP_METRICS_PORT"], minimum=1, maximum=65535)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(server=server, redis=RedisSettings.from_env(env, default_db=default_db), **values)
        settings.validate()
        return settings

    @property
    def principal_limit(self) -> int:
        """Calls one principal may have running at once (``MCP_PRINCIPAL_MAX_CALLS``); by default
        half the worker threads, so one caller cannot occupy every worker."""
        return self.principal_max_calls or max(1, self.worker_threads // 2)

    @property
    def request_limit(self) -> int:
        """Bytes one protocol message from a client may have (``MCP_MAX_REQUEST_BYTES``); by
        default 4 MiB, or room for a ``put_object`` of ``MCP_PUT_MAX_BYTES`` as base64 if larger."""
        return self.max_request_bytes or max(4 << 20, self.put_max_bytes * 4 // 3 + (1 << 20))

    def validate(self) -> None:
        """Check the values that no parser above has checked."""
        if self.transport not in ("stdio", "streamable-http"):
            raise InvalidInput(f"MCP_TRANSPORT={shown(self.transport)} is invalid: use stdio or streamable-http")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise InvalidInput(f"MCP_LOG_LEVEL={shown(self.log_level)} is invalid: use DEBUG, INFO, WARNING or ERROR")
        if self.max_access not in ACCESS_MODES:
            raise InvalidInput(f"MCP_MAX_ACCESS={shown(self.max_access)} is invalid: use read-only or read-write")
        for name, url in (
            ("MCP_PUBLIC_URL", self.public_url),
            ("MCP_OAUTH_ISSUER", self.oauth_issuer),
            ("MCP_OAUTH_JWKS_URL", self.oauth_jwks_url),
        ):
            if url is not None and urlsplit(url).scheme not in ("http", "https"):
                raise InvalidInput(f"{name}={shown(url)} is invalid: give an http:// or https:// URL")


def _parse_switch(name: str, value: str) -> bool:
    """An on/off setting (also true/false, 1/0, yes/no)."""
    return parse_bool(name, value or "on")


def limit_names() -> Iterable[tuple[str, int]]:
    """(variable, default) of every numeric limit, for documentation and the CLI."""
    return ((var, default) for var, _fld, default, _lo, _hi in _LIMITS)


def load_env_file(path: str | None) -> None:
    """Read a .env file (``path``, else ``./.env`` when present); variables already set win."""
    if path is not None and not Path(path).is_file():
        raise InvalidInput(f"--env-file {path!r}: no such file")
    target = path if path is not None else ".env"
    if path is None and not Path(target).is_file():
        return
    from dotenv import load_dotenv  # only when there is a file to read: it costs start-up time

    load_dotenv(target, override=False)
