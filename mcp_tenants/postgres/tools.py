"""PostgreSQL tool logic: plain synchronous functions over one psycopg connection.

The MCP layer takes a connection from the tenant's ``psycopg_pool.ConnectionPool`` and calls
these. The pool must be built with ``reset=reset_connection``; its connections may be in
autocommit mode or not (``autocommit=True`` and ``prepare_threshold=None`` save work: each call
sends its own ``BEGIN``). Session settings belong in the conninfo, because the reset puts every
setting back; the settings a result depends on are set per transaction (``transactions``).

Every function leaves the connection idle (no open transaction) when it returns and when it
raises, and raises only ``TenantsError`` subclasses. Caller SQL goes to the server on the
extended query protocol only, so the server refuses a second statement whatever the guard
missed, and it is checked first by ``guard`` (PostgreSQL's parser, the function policy). Each
call has one deadline (``deadline``) for checking, running and fetching. ``$1``-style
placeholders reach PostgreSQL unchanged (psycopg's raw cursors), so a literal ``%`` in the SQL
needs no escaping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres import guard, rowjson
from mcp_tenants.postgres.catalog import describe_table, list_schemas, list_tables
from mcp_tenants.postgres.deadline import Deadline
from mcp_tenants.postgres.policy import CHECK_SQL, PREPARE_SQL, STATEMENT, FunctionPolicy, is_prepared, mark_prepared
from mcp_tenants.postgres.transactions import begin, begin_statements, transaction
from mcp_tenants.postgres.values import bind_params, json_size, text_loaders, to_json

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_MS",
    "DEFAULT_POLICY",
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
#: The function policy with the built-in allow list only (the server passes its own).
DEFAULT_POLICY = FunctionPolicy.from_names()

_DESCRIBE_PREFIX = 'DECLARE "mcp_describe" NO SCROLL CURSOR FOR '
_DESCRIBE_FETCH = b'FETCH 0 FROM "mcp_describe"'
_ROWS_PREFIX = 'DECLARE "mcp_rows" NO SCROLL CURSOR FOR '
_ROWS_FETCH = f'FETCH FORWARD {10_000:d} FROM "mcp_rows"'.encode()
_BATCH_ROWS = 10_000
#: Up to this many rows (max_rows + 1) come in one round trip, with ROLLBACK; more via a cursor.
_ONE_SHOT_ROWS = 10_000
_IDLE = pq.TransactionStatus.IDLE
# DISCARD ALL, less DEALLOCATE ALL and DISCARD PLANS; then how many prepared statements are
# someone else's, and whether the guard's is there (all constant SQL, simple protocol).
_RESET = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;"
    " SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;"
    f" SELECT pg_catalog.count(*) FILTER (WHERE name OPERATOR(pg_catalog.<>) '{STATEMENT}'),"
    f" pg_catalog.count(*) FILTER (WHERE name OPERATOR(pg_catalog.=) '{STATEMENT}')"
    " FROM pg_catalog.pg_prepared_statements"
).encode()
_STATUS = {"InsertStmt": "INSERT 0", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}


def query(
    conn: Connection,
    sql: str,
    params: Sequence[Any],
    *,
    max_rows: int,
    max_bytes: int,
    statement_timeout_ms: int,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    policy: FunctionPolicy | None = DEFAULT_POLICY,
) -> dict[str, Any]:
    """Run one read-only statement and return at most ``max_rows`` rows and ``max_bytes`` bytes.

    Result: ``columns`` ([{name, type}]), ``rows`` (lists of JSON values), ``row_count`` (rows
    returned), ``truncated`` (rows were left out, or values cut, because of a cap) and, when a
    value was too wide for the byte cap, ``cut``: the [row, column] cells whose value was
    replaced by the first characters of its text. ``policy``: the function policy (read-only
    tenants); None runs any function (read-write tenants; still a READ ONLY transaction).

    Round trips: one for BEGIN, the settings, the function check and the statement's columns;
    one for the rows (serialized by PostgreSQL, see ``rowjson``) and ROLLBACK; more only for
    types not seen before, or for more than ``_ONE_SHOT_ROWS`` rows (a cursor).
    """
    _positive(max_rows=max_rows, max_bytes=max_bytes, statement_timeout_ms=statement_timeout_ms)
    _positive(lock_timeout_ms=lock_timeout_ms)
    statement = guard.check_query(sql, server_version=conn.info.server_version)
    offset = len(_DESCRIBE_PREFIX) - statement.start
    with Deadline(conn, statement_timeout_ms) as deadline:
        with transaction(
            conn,
            commit=False,
            deadline=deadline,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=offset,
            policy=policy,
        ):
            columns, oids, mods, infos = _describe(conn, statement, params, deadline, lock_timeout_ms, policy)
            envelope = json_size({"columns": columns, "rows": [], "row_count": max_rows, "truncated": True})
            budget = max_bytes - envelope - 16 * len(oids) - 32
            limit = max_rows + 1
            wrapped = rowjson.wrap(statement.text, oids, mods, infos, limit=limit, budget=budget)
            rows, cut, full = _fetch_rows(conn, wrapped, params, limit, deadline)
        truncated = full or len(rows) > max_rows or bool(cut)
    del rows[max_rows:]
    result: dict[str, Any] = {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}
    if cut:
        result["cut"] = [cell for cell in cut if cell[0] < max_rows]
    return result


def _describe(
    conn: Connection,
    statement: guard.Statement,
    params: Sequence[Any],
    deadline: Deadline,
    lock_timeout_ms: int,
    policy: FunctionPolicy | None,
) -> tuple[list[dict[str, str]], list[int], list[int], list[rowjson.TypeInfo]]:
    """One round trip: BEGIN, settings, the function check (which raises on a refusal, so that the
    statement after it never runs) and the statement's columns, from a cursor that is never read."""
    begin = begin_statements(
        True,
        statement_timeout_ms=deadline.remaining_ms(),
        lock_timeout_ms=lock_timeout_ms,
        server_version=conn.info.server_version,
    )
    with (
        psycopg.RawCursor(conn) as setup,
        psycopg.RawCursor(conn) as prepared,
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        with _noting_prepared(conn, prepared), conn.pipeline():
            for text, args in begin:
                setup.execute(text, args, prepare=False)
            if policy is not None and statement.refs:
                _check_functions(conn, setup, prepared, policy, statement)
            # DECLARE on the extended protocol: one statement, $n placeholders passed through.
            cur.execute(_DESCRIBE_PREFIX + statement.text, bind_params(params), prepare=False, binary=True)
            cur.execute(_DESCRIBE_FETCH, prepare=False)
        res = cur.pgresult
        if res is None or not cur.description:
            return [], [], [], []
        keys = [(res.ftype(i), res.fmod(i)) for i in range(res.nfields)]
        names = [col.name for col in cur.description]
    infos = rowjson.type_infos(conn, keys)
    columns = [{"name": name, "type": info.name} for name, info in zip(names, infos, strict=True)]
    return columns, [oid for oid, _ in keys], [mod for _, mod in keys], infos


def _check_functions(
    conn: Connection,
    cur: psycopg.RawCursor[Any],
    prepare: psycopg.RawCursor[Any],
    policy: FunctionPolicy,
    statement: guard.Statement,
) -> None:
    """Queue the function check (raises in the server on a refusal) in the current pipeline."""
    if not is_prepared(conn):
        prepare.execute(PREPARE_SQL, prepare=False)
    cur.execute(policy.execute_sql(conn, statement.refs), prepare=False)


@contextmanager
def _noting_prepared(conn: Connection, prepare: psycopg.RawCursor[Any]) -> Iterator[None]:
    """Record that ``conn`` holds the prepared check once its PREPARE succeeded, even if the
    statements after it fail (a refusal is such a failure)."""
    try:
        yield
    finally:
        result = prepare.pgresult
        if result is not None and result.status == pq.ExecStatus.COMMAND_OK:
            mark_prepared(conn, True)


def _fetch_rows(
    conn: Connection, wrapped: str, params: Sequence[Any], limit: int, deadline: Deadline
) -> tuple[list[list[Any]], list[list[int]], bool]:
    """Rows of the wrapped statement: in one round trip with ROLLBACK, or through a cursor."""
    bound = bind_params(params)
    with psycopg.RawCursor(conn, row_factory=tuple_row) as cur:
        if limit <= _ONE_SHOT_ROWS:
            with conn.pipeline(), psycopg.RawCursor(conn) as end:
                cur.execute(wrapped, bound, prepare=False, binary=True)
                end.execute(b"ROLLBACK", prepare=False)
            return rowjson.decode(cur.fetchall(), 0)
        cur.execute(_ROWS_PREFIX + wrapped, bound, prepare=False, binary=True)
        values: list[list[Any]] = []
        cut: list[list[int]] = []
        while True:
            deadline.remaining_ms()
            cur.execute(_ROWS_FETCH, prepare=False)
            batch = cur.fetchall()
            got, got_cut, full = rowjson.decode(batch, len(values))
            values += got
            cut += got_cut
            if full or len(batch) < _BATCH_ROWS or len(values) >= limit:
                return values, cut, full


def execute(
    conn: Connection,
    sql: str,
    params: Sequence[Any],
    *,
    statement_timeout_ms: int,
    max_rows: int = 1000,
    max_bytes: int = 1 << 20,
) -> dict[str, Any]:
    """Run one statement in its own transaction and commit it (read-write tenants only).

    Result: ``status`` (the command tag, e.g. "INSERT 0 1") and ``rowcount`` (rows affected,
    or None when the command does not report one); with RETURNING also ``columns``, ``rows``
    (at most ``max_rows`` and ``max_bytes``, like query) and ``truncated``. The caller checks
    the tenant's access.
    """
    _positive(statement_timeout_ms=statement_timeout_ms, max_rows=max_rows, max_bytes=max_bytes)
    statement = guard.check_execute(sql)
    with (
        Deadline(conn, statement_timeout_ms) as deadline,
        transaction(
            conn, commit=True, deadline=deadline, lock_timeout_ms=statement_timeout_ms, sql=sql, offset=-statement.start
        ),
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        begin(conn, None, deadline=deadline, lock_timeout_ms=statement_timeout_ms)
        if statement.has_returning:
            text_loaders(cur.adapters)
            result = _returning(cur, statement, params, max_rows=max_rows, max_bytes=max_bytes)
        else:
            _execute_extended(cur, statement.text, params)
            result = {"status": cur.statusmessage, "rowcount": cur.rowcount if cur.rowcount >= 0 else None}
    logger.info("execute: %s", result["status"])
    return result


def _returning(
    cur: psycopg.RawCursor[Any], statement: guard.Statement, params: Sequence[Any], *, max_rows: int, max_bytes: int
) -> dict[str, Any]:
    """Stream the rows of ``... RETURNING``: keep what the caps allow, count the rest."""
    rows: list[list[Any]] = []
    used = 0
    count = 0
    truncated = False
    columns: list[dict[str, str]] = []
    for raw in cur.stream(statement.text, bind_params(params), binary=True):
        if not columns and cur.description:
            columns = [{"name": col.name, "type": col.type_display} for col in cur.description]
            used = json_size({"status": "", "rowcount": 0, "columns": columns, "rows": [], "truncated": True}) + 32
        count += 1
        if truncated:
            continue  # the statement runs to its end; the rows past a cap are only counted
        row = [to_json(value) for value in raw]
        size = json_size(row) + 1
        if len(rows) == max_rows or used + size > max_bytes:
            truncated = True
            continue
        rows.append(row)
        used += size
    tag = _STATUS.get(statement.kind, statement.kind.removesuffix("Stmt").upper())
    return {
        "status": f"{tag} {count}",
        "rowcount": count,
        "columns": columns,
        "rows": rows,
        "truncated": truncated,
    }


def explain_query(
    conn: Connection,
    sql: str,
    *,
    analyze: bool,
    read_only: bool,
    statement_timeout_ms: int,
    policy: FunctionPolicy | None = DEFAULT_POLICY,
) -> dict[str, Any]:
    """Return ``plan``: the list EXPLAIN (FORMAT JSON) produces, one entry per statement.

    With ``analyze`` the statement really runs, inside a transaction that is always rolled back
    (and READ ONLY for a read-only tenant, whose statement passes the function policy like
    query's), so explaining never changes data.
    """
    _positive(statement_timeout_ms=statement_timeout_ms)
    statement = guard.check_explain(sql, read_only=read_only, server_version=conn.info.server_version)
    prefix = "EXPLAIN (FORMAT JSON, ANALYZE) " if analyze else "EXPLAIN (FORMAT JSON) "
    lock_timeout_ms = min(DEFAULT_LOCK_TIMEOUT_MS, statement_timeout_ms)
    checked = policy if read_only else None
    with (
        Deadline(conn, statement_timeout_ms) as deadline,
        transaction(
            conn,
            commit=False,
            deadline=deadline,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=len(prefix) - statement.start,
            policy=checked,
            tool="explain_query",
        ),
        psycopg.RawCursor(conn, row_factory=tuple_row) as cur,
    ):
        statements = begin_statements(
            True if read_only else None,
            statement_timeout_ms=deadline.remaining_ms(),
            lock_timeout_ms=lock_timeout_ms,
            server_version=conn.info.server_version,
        )
        with conn.pipeline():
            for text, args in statements:
                cur.execute(text, args, prepare=False)
            if checked is not None and statement.refs:
                cur.execute(CHECK_SQL, checked.params(statement.refs), prepare=False)
            _execute_extended(cur, prefix + statement.text, [])
        row = cur.fetchone()
    return {"plan": to_json(row[0]) if row else []}


def reset_connection(conn: Connection) -> None:
    """Pool ``reset`` callback: leave nothing of the last caller on the connection.

    Rolls back an open transaction, then what ``DISCARD ALL`` does, but keeping the guard's
    prepared check (``policy.STATEMENT``): cursors, role, session settings, LISTEN
    registrations, advisory locks, temporary objects and sequence caches all go, and any other
    prepared statement goes with ``DEALLOCATE ALL``.
    """
    if conn.closed:
        return
    if conn.info.transaction_status != _IDLE:
        conn.rollback()
    conn.read_only = None
    # These refuse to run inside a transaction block, which autocommit=False would open.
    # prepare=False: psycopg prepares a statement it sees often, and would trip over its own.
    autocommit = conn.autocommit
    if not autocommit:
        conn.autocommit = True
    try:
        cur = conn.execute(_RESET, prepare=False)
        while cur.nextset():
            pass  # to the last result, the counts
        others, ours = cur.fetchone() or (1, 0)
        if others:
            conn.execute(b"DEALLOCATE ALL", prepare=False)
            ours = 0
        mark_prepared(conn, bool(ours))
    finally:
        if not autocommit:
            conn.autocommit = False


def _execute_extended(cur: psycopg.RawCursor[Any], sql: str, params: Sequence[Any]) -> None:
    # Without parameters psycopg would use the simple query protocol, which runs every
    # statement of "a; b". A binary result format forces the extended protocol, where the
    # server accepts exactly one statement; prepare=False keeps it unnamed.
    cur.execute(sql, bind_params(params), prepare=False, binary=True)


def _positive(**limits: int) -> None:
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
