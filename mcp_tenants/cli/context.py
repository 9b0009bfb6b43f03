"""What every ``mcp-tenants`` command gets: its arguments, the settings, the store, the output.

Everything heavy is imported on first use: redis and cryptography when a command reaches Redis,
psycopg or minio only when a command connects to a tenant's target (``add``, ``import --verify``,
``doctor``). ``mcp-tenants --help`` therefore imports nothing but argparse and this package.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mcp_tenants.config import TenantConfig
from mcp_tenants.envtenants import EnvTenants, read_env_tenants
from mcp_tenants.errors import StoreRefused, StoreUnavailable, TenantsError
from mcp_tenants.settings import Settings

if TYPE_CHECKING:
    import redis

    from mcp_tenants.crypto import SecretCodec
    from mcp_tenants.registry import TenantBackend
    from mcp_tenants.store import TenantStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Problem(TenantsError):
    """The command ran but found something wrong (exit code 1)."""


def config_type_of(server: str) -> type[TenantConfig]:
    """The tenant config class of ``server`` ("postgres" or "minio"), without its driver."""
    if server == "minio":
        from mcp_tenants.minio.config import MinioTenant

        return MinioTenant
    from mcp_tenants.postgres.config import PostgresTenant

    return PostgresTenant


class Context:
    """The parsed command line plus lazily built settings, Redis client, store and backend."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.server: str = args.server
        self.environ = os.environ if environ is None else environ
        self._closers: list[Callable[[], None]] = []

    @cached_property
    def settings(self) -> Settings:
        """The server's settings, read from the environment (and the .env file)."""
        return Settings.from_env(self.server, self.environ)

    @cached_property
    def config_type(self) -> type[TenantConfig]:
        """``PostgresTenant`` or ``MinioTenant``."""
        return config_type_of(self.server)

    @cached_property
    def env(self) -> EnvTenants[TenantConfig]:
        """The tenants this environment (and .env file) defines, valid or not."""
        return read_env_tenants(self.config_type, self.environ)

    def env_variables(self, tenant_id: str) -> str:
        """``POSTGRES_TENANT_<ID>_*``: the variables that define ``tenant_id``."""
        return f"{self.config_type.ENV_PREFIX}{tenant_id.upper()}_*"

    @cached_property
    def codec(self) -> SecretCodec:
        """Seals and opens secret fields with ``MCP_TENANT_ENCRYPTION_KEY``."""
        from mcp_tenants.crypto import SecretCodec

        return SecretCodec(self.settings.encryption_keys)

    @cached_property
    def redis(self) -> redis.Redis:
        """A Redis client for the server's database (not connected until first used)."""
        from mcp_tenants.redisconn import make_redis_client

        client = make_redis_client(self.settings.redis)
        self._closers.append(client.close)
        return client

    @cached_property
    def store(self) -> TenantStore[TenantConfig]:
        """The tenant store on ``redis``; a CLI process never queues writes for later."""
        from mcp_tenants.store import TenantStore

        return TenantStore(
            self.settings.redis, self.server, self.config_type, self.codec, client=self.redis, background=False
        )

    @cached_property
    def backend(self) -> TenantBackend[Any, Any]:
        """What connects to a tenant's target; imports psycopg or minio."""
        if self.server == "minio":
            from mcp_tenants.minio.tenant import MinioBackend

            return MinioBackend(self.settings)
        from mcp_tenants.postgres.tenant import PostgresBackend

        return PostgresBackend(self.settings)

    def connect(self) -> None:
        """Make sure Redis answers; else raise ``StoreUnavailable`` saying how to point the CLI at it."""
        try:
            self.store.ping()
        except StoreRefused:
            raise  # it answered: the message says what to fix
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"{exc}\n{self.redis_hint()}") from None

    def redis_hint(self) -> str:
        """How to point the CLI at Redis, for every message about an unreachable one."""
        configured = [name for name in ("REDIS_URL", "REDIS_HOST") if self.environ.get(name)]
        if configured:
            where = f"It was taken from {' and '.join(configured)}; check the value, and that Redis runs."
        else:
            where = (
                "Neither REDIS_URL nor REDIS_HOST is set, so the default host 'redis' (the Docker Compose "
                "service name) was tried."
            )
        return (
            f"{where} Point mcp-tenants at the servers' Redis with REDIS_URL=redis://HOST:6379/DB "
            "(or REDIS_HOST, REDIS_PORT, REDIS_PASSWORD), or with --env-file pointing at the servers' .env."
        )

    def emit(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON with --json, else ``text``."""
        print(json.dumps(data, indent=2, default=str) if self.args.json else text)

    def warn(self, text: str) -> None:
        """A message for the person at the terminal, on stderr."""
        print(f"mcp-tenants: {text}", file=sys.stderr)

    def close(self) -> None:
        """Close what the command opened."""
        for close in reversed(self._closers):
            close()


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: A command: takes the context, returns the exit code.
Handler = Callable[[Context], int]
