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

from mcp_tenants.errors import InvalidInput, TenantUnreachable
from mcp_tenants.postgres.diagnostics import user_error

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

_IDLE = pq.TransactionStatus.IDLE
_LOST = "connection to the database was lost; retry"
_BEGIN = {True: "BEGIN READ ONLY", False: "BEGIN READ WRITE", None: "BEGIN"}


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
    begin = begin_command(read_only, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms)
    try:
        if conn.info.transaction_status != _IDLE:
            logger.warning("connection handed over inside a transaction; rolling it back")
            conn.rollback()
        # The BEGIN is ours, so that it and its settings take one round trip. Without autocommit
        # psycopg would send a BEGIN of its own first, and ours would only warn inside it: switch
        # it on while the connection is idle (the server's pools open connections with it on).
        restore_autocommit = not conn.autocommit
        if restore_autocommit:
            conn.autocommit = True
        try:
            # The simple query protocol runs every statement of this text: it is our own constant
            # SQL with validated integers in it, never anything of the caller's.
            conn.execute(begin, prepare=False)
            yield
            if commit:
                conn.commit()
        finally:
            _make_idle(conn)
            if restore_autocommit and not conn.closed:
                conn.autocommit = False
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            raise TenantUnreachable(_LOST) from exc
        raise user_error(
            exc, sql=sql, offset=offset, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms
        ) from exc


def begin_command(read_only: bool | None, *, statement_timeout_ms: int, lock_timeout_ms: int) -> bytes:
    """``BEGIN`` and the transaction's ``SET LOCAL`` settings as one simple-protocol text.

    SET LOCAL ends with the transaction, committed or not. The timeouts are formatted from
    integers checked here, so nothing but digits reaches the text.
    """
    for name, value in (("statement_timeout_ms", statement_timeout_ms), ("lock_timeout_ms", lock_timeout_ms)):
        if type(value) is not int or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return (
        f"{_BEGIN[read_only]}; SET LOCAL statement_timeout = {statement_timeout_ms:d};"
        f" SET LOCAL lock_timeout = {lock_timeout_ms:d}; SET LOCAL IntervalStyle = iso_8601;"
        " SET LOCAL DateStyle = 'ISO, YMD'"
    ).encode()


def _make_idle(conn: Connection) -> None:
    """Roll back whatever is left open; a connection that cannot is reported lost."""
    if conn.closed or conn.info.transaction_status == _IDLE:
        return
    try:
        conn.rollback()
    except psycopg.Error as exc:
        # Unusable now; the pool discards a closed or broken connection when it comes back.
        raise TenantUnreachable(_LOST) from exc
