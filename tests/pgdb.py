"""Throwaway databases on the suite's PostgreSQL, each owned by a fresh login role."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
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
