"""Shared fixtures: real PostgreSQL, Redis and S3 servers, started once per test session.

A service that cannot start skips the tests that need it, except under ``CI=true`` where the
test fails instead: CI must never pass by skipping (see mcp_tenants.devservices for the servers).
Every test under ``tests/integration/`` is marked ``integration`` (``pytest -m "not integration"``
runs the unit tests alone).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
import redis
from psycopg import sql

from mcp_tenants.devservices import (
    LocalService,
    PostgresService,
    RedisService,
    S3Service,
    ServiceUnavailable,
)
from tests import audit

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
INTEGRATION_DIR = Path(__file__).parent / "integration"
REDIS_DATABASES = 64

ServiceT = TypeVar("ServiceT", bound=LocalService)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ as ``integration``."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def service_unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: a missing service must never pass CI silently."""
    if IN_CI:
        pytest.fail(f"{reason}\n(CI=true: a service that cannot start is a failure)", pytrace=False)
    pytest.skip(reason)


def running(service: ServiceT) -> Iterator[ServiceT]:
    """Start ``service`` for a fixture, yield it, and always stop it."""
    try:
        service.start()
    except ServiceUnavailable as exc:
        service_unavailable(f"{type(service).__name__} unavailable: {exc}")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[PostgresService]:
    """A throwaway PostgreSQL cluster (superuser ``postgres`` with a random password)."""
    yield from running(PostgresService())


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisService]:
    """A throwaway Redis that requires a password, so the password path is always exercised."""
    password = secrets.token_urlsafe(16)
    audit.secret(password)
    service = RedisService(password=password, extra_args=["--databases", str(REDIS_DATABASES)])
    yield from running(service)


@pytest.fixture(scope="session")
def s3_service() -> Iterator[S3Service]:
    """A throwaway S3 server (SeaweedFS) with an admin and a read-only identity."""
    for service in running(S3Service()):
        audit.secret(service.secret_key, service.ro_secret_key)
        yield service


@dataclass
class RedisDatabase:
    """One flushed Redis database of the session server, for one test."""

    host: str
    port: int
    password: str | None
    db: int
    client: redis.Redis

    @property
    def url(self) -> str:
        """``redis://`` URL of this database (password included)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def env(self) -> dict[str, str]:
        """The ``REDIS_*`` environment variables that point a server at this database."""
        env = {"REDIS_HOST": self.host, "REDIS_PORT": str(self.port), "REDIS_DB": str(self.db)}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        return env


_redis_db_numbers = itertools.cycle(range(REDIS_DATABASES))


@pytest.fixture
def redis_db(redis_service: RedisService) -> Iterator[RedisDatabase]:
    """A fresh, empty database number on the session Redis (tests never see each other's keys)."""
    db = next(_redis_db_numbers)
    client = redis_service.client(db=db, decode_responses=True)
    client.flushdb()
    try:
        yield RedisDatabase(redis_service.host, redis_service.port, redis_service.password, db, client)
    finally:
        # The test may have stopped or killed the session server: flushing is best effort.
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


@pytest.fixture
def pg_database(postgres_service: PostgresService) -> Iterator[dict[str, Any]]:
    """A fresh database owned by a fresh login role with a password; both dropped afterwards.

    Yields ``{"host", "port", "database", "user", "password"}``.
    """
    suffix = secrets.token_hex(6)
    user, database, password = f"tenant_{suffix}", f"db_{suffix}", secrets.token_urlsafe(16)
    audit.secret(password)
    postgres_service.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
    )
    postgres_service.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(user))
    )
    try:
        yield {
            "host": postgres_service.host,
            "port": postgres_service.port,
            "database": database,
            "user": user,
            "password": password,
        }
    finally:
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        postgres_service.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
