"""The transaction every tool call runs in, and the error translation around it.

One rule for every tool: it finds the connection idle and leaves it idle, whether it returns or
raises, and lets no psycopg error escape untranslated.

Every transaction starts with the same settings (``begin_statements``): the timeouts, the value
formats the results depend on, and ``standard_conforming_strings = on`` so that the server scans
string literals exactly as the guard's parser did, whatever the role or database default is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from mcp_tenants.errors import InvalidInput, TenantUnreachable
from mcp_tenants.postgres.deadline import Deadline
from mcp_tenants.postgres.diagnostics import MAX_ERROR_CHARS, answer_too_large, user_error
from mcp_tenants.postgres.wire import AnswerTooLarge, Batch, Named, Params

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

_IDLE = pq.TransactionStatus.IDLE
_LOST = "connection to the database was lost; retry"
_BEGIN = {True: b"BEGIN READ ONLY", False: b"BEGIN READ WRITE", None: b"BEGIN"}
_SETTINGS = (
    "SELECT pg_catalog.set_config('statement_timeout', $1, true),"
    " pg_catalog.set_config('lock_timeout', $2, true),"
    " pg_catalog.set_config('idle_in_transaction_session_timeout', $3, true),"
    " pg_catalog.set_config('standard_conforming_strings', 'on', true),"
    " pg_catalog.set_config('IntervalStyle', 'iso_8601', true),"
    " pg_catalog.set_config('DateStyle', 'ISO, YMD', true)"
)
# PostgreSQL 17 and newer end a transaction that outlives this, wherever it is.
_SETTINGS_17 = _SETTINGS + ", pg_catalog.set_config('transaction_timeout', $4, true)"
#: Grace after the deadline before the server ends a session idle in its transaction.
IDLE_GRACE_MS = 5_000


def begin_statements(
    read_only: bool | None, *, statement_timeout_ms: int, lock_timeout_ms: int, server_version: int
) -> list[tuple[bytes | str, list[str]]]:
    """BEGIN and the transaction's local settings, as (sql, params) for the extended protocol.

    ``read_only=None`` keeps the server's default, so a role that defaults to read-only
    transactions stays read-only.
    """
    for name, value in (("statement_timeout_ms", statement_timeout_ms), ("lock_timeout_ms", lock_timeout_ms)):
        if type(value) is not int or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    params = [str(statement_timeout_ms), str(min(lock_timeout_ms, statement_timeout_ms))]
    params.append(str(statement_timeout_ms + IDLE_GRACE_MS))
    settings = _SETTINGS
    if server_version >= 170_000:
        settings, params = _SETTINGS_17, [*params, str(statement_timeout_ms + IDLE_GRACE_MS)]
    return [(_BEGIN[read_only], []), (settings, params)]


#: The settings statement, prepared once per connection (its text depends on the server version).
SETTINGS = {False: Named("mcp_settings", _SETTINGS, (25, 25, 25)), True: Named("mcp_settings", _SETTINGS_17, (25,) * 4)}


def queue_begin(
    batch: Batch, read_only: bool | None, *, statement_timeout_ms: int, lock_timeout_ms: int, server_version: int
) -> None:
    """Add BEGIN and the settings (``begin_statements``) to ``batch``; the settings go through
    a named statement, so each call only binds and runs it."""
    (begin_sql, _), (_, params) = begin_statements(
        read_only,
        statement_timeout_ms=statement_timeout_ms,
        lock_timeout_ms=lock_timeout_ms,
        server_version=server_version,
    )
    batch.query(begin_sql if isinstance(begin_sql, bytes) else begin_sql.encode())
    batch.execute(SETTINGS[server_version >= 170_000], Params.texts([p.encode() for p in params]))


def begin(conn: Connection, read_only: bool | None, *, deadline: Deadline, lock_timeout_ms: int) -> None:
    """Send BEGIN and the settings in one round trip (for tools that need nothing else with them)."""
    batch = Batch(conn)
    queue_begin(
        batch,
        read_only,
        statement_timeout_ms=deadline.remaining_ms(),
        lock_timeout_ms=lock_timeout_ms,
        server_version=conn.info.server_version,
    )
    batch.check(batch.run())


class Placement:
    """Where the caller's SQL sits in the text PostgreSQL reports positions in; the body moves
    ``offset`` when it sends the statement inside another text (a wrapper)."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


@contextmanager
def transaction(
    conn: Connection,
    *,
    commit: bool,
    deadline: Deadline,
    lock_timeout_ms: int,
    sql: str = "",
    offset: int = 0,
    max_chars: int = MAX_ERROR_CHARS,
) -> Iterator[Placement]:
    """The body sends BEGIN (``begin`` or ``begin_statements``); this ends the transaction.

    Committed only when ``commit`` and nothing failed, else rolled back. Errors become
    ``TenantsError``s: the deadline's timeout, PostgreSQL's own
    message (cut to ``max_chars``) with positions placed in ``sql`` (``offset``: characters the
    tool put before it; the body can move it through the ``Placement`` it gets).
    """
    where = Placement(offset)
    try:
        if conn.info.transaction_status != _IDLE:
            logger.warning("connection handed over inside a transaction; rolling it back")
            conn.rollback()
        # The BEGIN is ours, so that it and its settings share a round trip. Without autocommit
        # psycopg would send a BEGIN of its own first: switch it on while the connection is idle.
        restore_autocommit = not conn.autocommit
        if restore_autocommit:
            conn.autocommit = True
        try:
            yield where
            if commit:
                with psycopg.RawCursor(conn) as cur:
                    cur.execute(b"COMMIT", prepare=False)
        finally:
            _make_idle(conn)
            if restore_autocommit and not conn.closed:
                conn.autocommit = False
    except AnswerTooLarge as exc:
        raise answer_too_large(exc) from None
    except psycopg.Error as exc:
        if deadline.expired:
            raise deadline.error() from exc
        if conn.broken or conn.closed:
            raise TenantUnreachable(_LOST) from exc
        raise user_error(
            exc,
            sql=sql,
            offset=where.offset,
            statement_timeout_ms=deadline.timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            max_chars=max_chars,
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
