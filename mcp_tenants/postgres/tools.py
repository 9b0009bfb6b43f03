"""PostgreSQL tool logic: plain synchronous functions over one psycopg connection.

The MCP layer takes a connection from the tenant's ``psycopg_pool.ConnectionPool`` and calls
these. The pool must be built with ``reset=reset_connection``; its connections may be in
autocommit mode or not (``autocommit=True`` and ``prepare_threshold=None`` save work: each call
sends its own ``BEGIN``, and ``DISCARD ALL`` drops prepared statements anyway). Session settings
belong in the conninfo (``options="-c ..."``), because ``DISCARD ALL`` in the reset resets
anything a ``configure`` callback SETs; the settings a result depends on are set per transaction.

Every function leaves the connection idle (no open transaction) when it returns and when it
raises, and raises only ``TenantsError`` subclasses. SQL text goes to the server on the extended
query protocol only, so the server refuses a second statement whatever the guard missed.
``$1``-style placeholders reach PostgreSQL unchanged (psycopg's raw cursors), so a literal
``%`` in the SQL needs no escaping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres import guard
from mcp_tenants.postgres.catalog import describe_table, list_schemas, list_tables
from mcp_tenants.postgres.transactions import transaction
from mcp_tenants.postgres.values import bind_params, json_size, text_loaders, to_json

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_MS",
    "describe_table",
    "execute",
    "explain_query",
    "list_schemas",
    "list_tables",
    "query",
    "reset_connection",
]

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

#: How long a query waits for a lock before giving up (never longer than its statement timeout).
DEFAULT_LOCK_TIMEOUT_MS = 5_000

_CURSOR_NAME = "mcp_query"
_DECLARE_PREFIX = f'DECLARE "{_CURSOR_NAME}" CURSOR FOR '
_FIRST_BATCH = 100
_MAX_BATCH = 1_000
_IDLE = pq.TransactionStatus.IDLE

# format_type() names by (server version, oid, typmod), shared by every pool. Only built-in types:
# OIDs below 10000 are assigned in PostgreSQL's own catalogs, the same on every server of a
# version; other types can be renamed, or dropped and their OID reused, so they are looked up
# on every call. Bounded, because typmods (varchar(n), numeric(p, s)) have no end.
# Threads share it without a lock: each get and set is one atomic dict operation.
_BUILTIN_TYPE_NAMES: dict[tuple[int, int, int], str] = {}
_FIRST_UNPINNED_OID = 10_000
_MAX_TYPE_NAMES = 10_000


def query(
    conn: Connection,
    sql: str,
    params: Sequence[Any],
    *,
    max_rows: int,
    max_bytes: int,
    statement_timeout_ms: int,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
) -> dict[str, Any]:
    """Run one read-only statement and return at most ``max_rows`` rows and ``max_bytes`` bytes.

    Result: ``columns`` ([{name, type}]), ``rows`` (lists of JSON values), ``row_count`` (rows
    returned) and ``truncated`` (rows were left out because of either cap). Rows come from a
    server-side cursor in batches, so a huge result is never pulled into memory.
    """
    _positive(
        max_rows=max_rows,
        max_bytes=max_bytes,
        statement_timeout_ms=statement_timeout_ms,
        lock_timeout_ms=lock_timeout_ms,
    )
    guard.check_query(sql, standard_conforming_strings=_standard_strings(conn))
    lock_timeout_ms = min(lock_timeout_ms, statement_timeout_ms)
    with (
        transaction(
            conn,
            read_only=True,
            commit=False,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=len(_DECLARE_PREFIX),
        ),
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        text_loaders(cur.adapters)
        # DECLARE ... CURSOR FOR <sql> on the extended protocol, $n placeholders passed through;
        # DECLARE itself accepts only a SELECT-shaped query. The rows come by FETCH, whose result
        # describes the columns too; ROLLBACK closes the cursor.
        _execute_extended(cur, _DECLARE_PREFIX + sql, params)
        first = _fetch(cur, min(max_rows + 1, _FIRST_BATCH))
        columns = _columns(conn, cur)
        envelope = {"columns": columns, "rows": [], "row_count": max_rows, "truncated": True}
        rows, truncated = _fetch_capped(cur, first, max_rows, max_bytes - json_size(envelope))
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}


def execute(conn: Connection, sql: str, params: Sequence[Any], *, statement_timeout_ms: int) -> dict[str, Any]:
    """Run one statement in its own transaction and commit it (read-write tenants only).

    Result: ``status`` (the command tag, e.g. "INSERT 0 1") and ``rowcount`` (rows affected,
    or None when the command does not report one). The caller checks the tenant's access.
    """
    _positive(statement_timeout_ms=statement_timeout_ms)
    guard.check_execute(sql, standard_conforming_strings=_standard_strings(conn))
    with (
        transaction(
            conn,
            read_only=None,
            commit=True,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=statement_timeout_ms,
            sql=sql,
        ),
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        _execute_extended(cur, sql, params)
        status, rowcount = cur.statusmessage, cur.rowcount
    logger.info("execute: %s", status)
    return {"status": status, "rowcount": rowcount if rowcount >= 0 else None}


def explain_query(
    conn: Connection, sql: str, *, analyze: bool, read_only: bool, statement_timeout_ms: int
) -> dict[str, Any]:
    """Return ``plan``: the list EXPLAIN (FORMAT JSON) produces, one entry per statement.

    With ``analyze`` the statement really runs, inside a transaction that is always rolled back
    (and READ ONLY for a read-only tenant), so explaining never changes data.
    """
    _positive(statement_timeout_ms=statement_timeout_ms)
    guard.check_explain(sql, read_only=read_only, standard_conforming_strings=_standard_strings(conn))
    prefix = "EXPLAIN (FORMAT JSON, ANALYZE) " if analyze else "EXPLAIN (FORMAT JSON) "
    lock_timeout_ms = min(DEFAULT_LOCK_TIMEOUT_MS, statement_timeout_ms)
    with (
        transaction(
            conn,
            read_only=True if read_only else None,
            commit=False,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=len(prefix),
        ),
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        _execute_extended(cur, prefix + sql, [])
        row = cur.fetchone()
    return {"plan": to_json(row[0]) if row else []}


def reset_connection(conn: Connection) -> None:
    """Pool ``reset`` callback: leave nothing of the last caller on the connection.

    Rolls back an open transaction, then ``DISCARD ALL``: session settings, role, prepared
    statements, cursors, temporary objects, LISTEN registrations and advisory locks all go.
    """
    if conn.closed:
        return
    if conn.info.transaction_status != _IDLE:
        conn.rollback()
    conn.read_only = None
    # DISCARD ALL refuses to run inside a transaction block, which autocommit=False would open.
    # prepare=False: psycopg prepares a statement it sees often, and a prepared DISCARD ALL
    # deallocates itself, failing the next reset.
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        conn.execute(b"DISCARD ALL", prepare=False)
    finally:
        if not autocommit:
            conn.autocommit = False


def _execute_extended(cur: psycopg.RawCursor[Any], sql: str, params: Sequence[Any]) -> None:
    # Without parameters psycopg would use the simple query protocol, which runs every
    # statement of "a; b". A binary result format forces the extended protocol, where the
    # server accepts exactly one statement; prepare=False keeps it unnamed.
    cur.execute(sql, bind_params(params), prepare=False, binary=True)


def _fetch(cur: psycopg.RawCursor[Any], count: int) -> list[tuple[Any, ...]]:
    """The next ``count`` rows of the query's cursor (constant SQL: the simple protocol is fine)."""
    cur.execute(f'FETCH FORWARD {count:d} FROM "{_CURSOR_NAME}"'.encode(), prepare=False)
    return cur.fetchall()


def _columns(conn: Connection, cur: psycopg.RawCursor[Any]) -> list[dict[str, str]]:
    """Column names with their SQL type names as format_type() spells them."""
    res = cur.pgresult
    if res is None or not cur.description:
        return []
    version = conn.info.server_version
    keys = [(version, res.ftype(i), res.fmod(i)) for i in range(res.nfields)]
    names = [name for key in keys if (name := _BUILTIN_TYPE_NAMES.get(key)) is not None]
    if len(names) < len(keys):
        names = _format_types(conn, keys)
    return [{"name": col.name, "type": name} for col, name in zip(cur.description, names, strict=True)]


def _format_types(conn: Connection, keys: list[tuple[int, int, int]]) -> list[str]:
    """format_type() of each (server version, oid, typmod); built-in types are remembered."""
    with conn.cursor(row_factory=tuple_row) as types:
        types.execute(
            "SELECT format_type(t.oid, t.mod) FROM unnest(%s::oid[], %s::int[])"
            " WITH ORDINALITY AS t(oid, mod, n) ORDER BY t.n",
            [[oid for _, oid, _ in keys], [mod for _, _, mod in keys]],
            prepare=False,
        )
        names = [name for (name,) in types.fetchall()]
    for key, name in zip(keys, names, strict=True):
        if key[1] < _FIRST_UNPINNED_OID and len(_BUILTIN_TYPE_NAMES) < _MAX_TYPE_NAMES:
            _BUILTIN_TYPE_NAMES[key] = name
    return names


def _fetch_capped(
    cur: psycopg.RawCursor[Any], fetched: list[tuple[Any, ...]], max_rows: int, budget: int
) -> tuple[list[list[Any]], bool]:
    """Convert ``fetched``, then fetch more, until ``max_rows`` or ``budget`` bytes; True if any
    rows were left. ``fetched`` is the first batch, of ``min(max_rows + 1, _FIRST_BATCH)`` rows."""
    rows: list[list[Any]] = []
    used = 0
    batch = min(max_rows + 1, _FIRST_BATCH)
    while True:
        for raw in fetched:
            if len(rows) == max_rows:
                return rows, True
            row = [to_json(value) for value in raw]
            size = json_size(row) + 1  # the comma between rows
            if used + size > budget:
                return rows, True
            rows.append(row)
            used += size
        if len(fetched) < batch:
            return rows, False
        # Size the next batch to what the byte budget can still hold, so wide rows are not
        # fetched by the thousand only to be dropped.
        average = max(used // max(len(rows), 1), 1)
        batch = max(1, min(_MAX_BATCH, (budget - used) // average + 1, max_rows - len(rows) + 1))
        fetched = _fetch(cur, batch)


def _standard_strings(conn: Connection) -> bool:
    # The guard must split string literals exactly as this server will.
    return conn.info.parameter_status("standard_conforming_strings") != "off"


def _positive(**limits: int) -> None:
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
