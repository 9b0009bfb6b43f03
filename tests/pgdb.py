"""Throwaway databases on the suite's PostgreSQL, each owned by a fresh login role."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql


@contextlib.contextmanager
def owned_database(
    postgres_service: Any,
    prefix: str,
    *,
    setup: str = "",
    superuser: bool = False,
    encoding: str | None = None,
    role_settings: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """A database and its owner (``prefix`` + a random suffix), both dropped afterwards.

    ``setup`` runs as the owner; ``role_settings`` become the role's defaults (``ALTER ROLE ...
    SET``) after it. Yields keyword arguments for ``psycopg.connect`` as the owner (``dbname``).
    """
    suffix = secrets.token_hex(5)
    role = name = f"{prefix}_{suffix}"
    password = secrets.token_urlsafe(16)
    create_role = "CREATE ROLE {} LOGIN PASSWORD {}" + (" SUPERUSER" if superuser else "")
    postgres_service.execute(sql.SQL(create_role).format(sql.Identifier(role), sql.Literal(password)))
    try:
        create = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role))
        if encoding:
            create += sql.SQL(" ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
                sql.Literal(encoding)
            )
        postgres_service.execute(create)
        info = {**postgres_service.conninfo(), "dbname": name, "user": role, "password": password}
        with psycopg.connect(**info, autocommit=True, client_encoding="UTF8") as conn:
            if setup:
                conn.execute(setup)
            for setting, value in (role_settings or {}).items():
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(role), sql.Identifier(setting), sql.SQL(value)
                    )
                )
        yield info
    finally:
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        postgres_service.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def querying(conn: psycopg.Connection[Any], timeout_ms: int) -> Iterator[tuple[Callable[..., Any], list[str]]]:
    """``query`` on ``conn`` with small caps, as a read-only tenant runs it: yields the caller
    (``call(text, params=None, **limits)``, the result decoded) and the notices PostgreSQL sent;
    afterwards, the canary (a function that raises the notice "canary") must never have sung."""
    from mcp_tenants.postgres import tools
    from mcp_tenants.rawjson import decoded

    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

    def call(text: str, params: list[Any] | None = None, **kwargs: Any) -> Any:
        options: dict[str, Any] = {"max_rows": 100, "max_bytes": 1 << 20, "statement_timeout_ms": timeout_ms}
        return decoded(tools.query(conn, text, params or [], **{**options, **kwargs}))

    yield call, notices
    assert "canary" not in notices
