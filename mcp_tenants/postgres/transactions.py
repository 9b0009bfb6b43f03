"""The transaction every tool call runs in, and the error translation around it.

One rule for every tool: it finds the connection idle and leaves it idle, whether it returns or
raises, and lets no psycopg error escape untranslated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from mcp_tenants.errors import TenantUnreachable
from mcp_tenants.postgres.diagnostics import user_error

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

_IDLE = pq.TransactionStatus.IDLE
_LOST = "connection to the database was lost; retry"


@contextmanager
def transaction(
    conn: Connection,
    *,
    read_only: bool | None,
    commit: bool,
    statement_timeout_ms: int,
    lock_timeout_ms: int,
    sql: str = "",
    offset: int = 0,
) -> Iterator[None]:
    """One transaction with local timeouts, committed only when ``commit`` and nothing failed.

    ``read_only=True`` begins it READ ONLY; ``None`` keeps the server's default, so a role that
    defaults to read-only transactions stays read-only. ``sql`` and ``offset`` place error
    positions in the caller's text (see ``diagnostics.user_error``).
    """
    try:
        if conn.info.transaction_status != _IDLE:
            logger.warning("connection handed over inside a transaction; rolling it back")
            conn.rollback()
        # psycopg turns this into BEGIN READ ONLY; it may only change while idle.
        conn.read_only = read_only
        try:
            with conn.transaction(force_rollback=not commit):
                # set_config(..., true) is SET LOCAL with bound values: gone at transaction end.
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true),"
                    " set_config('lock_timeout', %s, true),"
                    " set_config('IntervalStyle', 'iso_8601', true),"
                    " set_config('DateStyle', 'ISO, YMD', true)",
                    [str(statement_timeout_ms), str(lock_timeout_ms)],
                    prepare=False,
                )
                yield
        finally:
            _make_idle(conn)
            if not conn.closed and conn.info.transaction_status == _IDLE:
                conn.read_only = None
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise TenantUnreachable(_LOST) from exc
        raise user_error(
            exc, sql=sql, offset=offset, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
        ) from exc


def _make_idle(conn: Connection) -> None:
    """Roll back whatever is left open; a connection that cannot is reported lost."""
    if conn.closed or conn.info.transaction_status == _IDLE:
        return
    try:
        conn.rollback()
    except psycopg.Error as exc:
        # Unusable now; the pool discards a closed or broken connection when it comes back.
        raise TenantUnreachable(_LOST) from exc
