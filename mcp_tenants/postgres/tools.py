"""PostgreSQL tool logic: plain synchronous functions over one psycopg connection.

The MCP layer takes a connection from the tenant's ``psycopg_pool.ConnectionPool`` and calls
these. The pool must be built with ``reset=reset_connection`` (``reset``); its connections may be in
autocommit mode or not (``autocommit=True`` and ``prepare_threshold=None`` save work: each call
sends its own ``BEGIN``). Session settings belong in the conninfo, because the reset puts every
setting back; the settings a result depends on are set per transaction (``transactions``).

Every function leaves the connection idle (no open transaction) when it returns and when it
raises, and raises only ``TenantsError`` subclasses. Caller SQL goes to the server on the
extended query protocol only, so the server refuses a second statement whatever the guard
missed, and it is checked first by ``guard`` (PostgreSQL's parser, the function policy). Each
call has one deadline (``deadline``) for checking, running and fetching. ``$1``-style
placeholders reach PostgreSQL unchanged (libpq's own parameters, or psycopg's raw cursors), so
a literal ``%`` in the SQL needs no escaping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pydantic_core
from psycopg.rows import tuple_row

from mcp_tenants.errors import InvalidInput
from mcp_tenants.postgres import guard, reset, resolve, rowjson
from mcp_tenants.postgres.catalog import describe_table, list_schemas, list_tables
from mcp_tenants.postgres.deadline import Deadline
from mcp_tenants.postgres.policy import FunctionPolicy
from mcp_tenants.postgres.reset import reset_connection
from mcp_tenants.postgres.transactions import begin, transaction
from mcp_tenants.postgres.values import bind_params, json_size, text_loaders, to_json
from mcp_tenants.postgres.wire import NO_PARAMS, AnswerTooLarge, Batch, Params

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

_ROWS_PREFIX = b'DECLARE "mcp_rows" NO SCROLL CURSOR FOR '
_BATCH_ROWS = 10_000
_ROWS_FETCH = f'FETCH FORWARD {_BATCH_ROWS:d} FROM "mcp_rows"'.encode()
#: Up to this many rows (max_rows + 1) come in one round trip, with ROLLBACK; more via a cursor.
_ONE_SHOT_ROWS = 10_000
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

    Result: ``columns`` ([{name, type}]), ``rows`` (a ``RawJson``: the JSON array of rows, each
    a JSON array of values, as PostgreSQL serialised them, see ``rowjson``), ``row_count`` (rows
    returned), ``truncated`` (rows were left out, or values cut, because of a cap) and, when a
    value was too wide for the byte cap, ``cut``: the [row, column] cells whose value was
    replaced by the first characters of its text. ``policy``: the function policy (read-only
    tenants); None runs any function (read-write tenants; still a READ ONLY transaction).

    Round trips (``wire.Batch``): one for BEGIN, the settings, the function check and the
    statement's columns; one for the rows, ROLLBACK and the connection's reset (``reset``), so
    that the pool takes the connection back without another. More only for types not seen
    before, or for more than ``_ONE_SHOT_ROWS`` rows (a cursor, fetched in batches).
    """
    _positive(max_rows=max_rows, max_bytes=max_bytes, statement_timeout_ms=statement_timeout_ms)
    _positive(lock_timeout_ms=lock_timeout_ms)
    encoding = conn.info.encoding
    with Deadline(conn, statement_timeout_ms) as deadline:
        statement = _parsed(
            deadline,
            lambda timeout_s: guard.check_query(sql, server_version=conn.info.server_version, timeout_s=timeout_s),
        )
        with transaction(
            conn,
            commit=False,
            deadline=deadline,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=-statement.start,
            max_chars=max_bytes // 2,
        ) as where:
            bound = Params(conn, bind_params(params))
            limit = _answer_limit(max_bytes)
            columns, oids, mods, infos = _describe(conn, statement, bound, deadline, lock_timeout_ms, policy, limit)
            shell = {"columns": columns, "rows": [], "row_count": max_rows, "truncated": True}
            envelope = len(pydantic_core.to_json(shell))  # UTF-8 bytes of the result without its rows
            budget = max_bytes - envelope - 16 * len(oids) - 32
            wrapped, at = rowjson.wrap(statement.text, oids, mods, infos, limit=max_rows + 1, budget=budget)
            where.offset = at - statement.start
            texts, cut, full = _fetch_rows(conn, wrapped.encode(encoding), bound, max_rows + 1, deadline, limit)
        truncated = full or len(texts) > max_rows or bool(cut)
    del texts[max_rows:]
    result: dict[str, Any] = {
        "columns": columns,
        "rows": rowjson.raw_rows(texts, encoding),
        "row_count": len(texts),
        "truncated": truncated,
    }
    if cut:
        result["cut"] = [cell for cell in cut if cell[0] < max_rows]
    return result


def _describe(
    conn: Connection,
    statement: guard.Statement,
    bound: Params,
    deadline: Deadline,
    lock_timeout_ms: int,
    policy: FunctionPolicy | None,
    limit: int,
) -> tuple[list[dict[str, str]], list[int], list[int], list[rowjson.TypeInfo]]:
    """One round trip (``resolve``): BEGIN, settings, the statement's columns (parsed and
    described, not run) and the function check, which raises on a refusal."""
    results, described = resolve.first_round_trip(
        conn,
        statement,
        policy,
        bound=bound,
        deadline=deadline,
        lock_timeout_ms=lock_timeout_ms,
        limit=limit,
        tool="query",
    )
    res = results[described] if described is not None else None
    if res is None or not res.nfields:
        return [], [], [], []
    encoding = conn.info.encoding
    keys = [(res.ftype(i), res.fmod(i)) for i in range(res.nfields)]
    names = [(res.fname(i) or b"").decode(encoding) for i in range(res.nfields)]
    infos = rowjson.type_infos(conn, keys)
    columns = [{"name": name, "type": info.name} for name, info in zip(names, infos, strict=True)]
    return columns, [oid for oid, _ in keys], [mod for _, mod in keys], infos


def _fetch_rows(
    conn: Connection, wrapped: bytes, bound: Params, limit: int, deadline: Deadline, answer_limit: int
) -> tuple[list[bytes], list[list[int]], bool]:
    """Rows of the wrapped statement: in one round trip with ROLLBACK and the reset, or, for
    more than ``_ONE_SHOT_ROWS``, through a cursor in batches. Marks the connection clean when
    the reset went through. ``answer_limit``: bytes each round trip may receive."""
    # The wrapper bounds every row (rowjson): the budget looks for errors and notices only.
    batch = Batch(conn, limit=answer_limit, bounded_rows=True)
    if limit <= _ONE_SHOT_ROWS:
        rows = batch.query(wrapped, bound)
        return rowjson.collect(reset.run_and_end(batch)[rows], 0)
    batch.query(_ROWS_PREFIX + wrapped, bound)
    texts: list[bytes] = []
    cut: list[list[int]] = []
    while True:
        fetch = batch.query(_ROWS_FETCH)
        results = batch.run()
        batch.check(results)
        got, got_cut, full = rowjson.collect(results[fetch], len(texts))
        texts += got
        cut += got_cut
        if full or len(got) < _BATCH_ROWS or len(texts) >= limit:
            break
        deadline.remaining_ms()
        batch = Batch(conn, limit=answer_limit, bounded_rows=True)
    reset.run_and_end(Batch(conn, limit=answer_limit, bounded_rows=True))
    return texts, cut, full


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
    max_bytes: int = 1 << 20,
) -> dict[str, Any]:
    """Return ``plan``: the list EXPLAIN (FORMAT JSON) produces, one entry per statement.

    ``read_only``: only what ``query`` may run can be explained; otherwise INSERT, UPDATE,
    DELETE and MERGE too (a read-write tenant, a caller who may write). Those are planned, never
    run: ``analyze`` would advance sequences and fire triggers that no rollback undoes, so their
    plan comes without it and ``note`` says so. Everything else passes the function policy like
    query's (also on read-write tenants: explain_query is a read tool) and, with ``analyze``, runs
    in a READ ONLY transaction that is rolled back. A plan longer than ``max_bytes`` (PostgreSQL
    prints folded constants in full) is not returned: ``plan`` is then empty, ``truncated`` is
    true, ``plan_start`` holds its first characters when they could be read, and ``note`` says why.
    """
    _positive(statement_timeout_ms=statement_timeout_ms, max_bytes=max_bytes)
    lock_timeout_ms = min(DEFAULT_LOCK_TIMEOUT_MS, statement_timeout_ms)
    result: dict[str, Any] = {}
    with Deadline(conn, statement_timeout_ms) as deadline:
        statement = _parsed(
            deadline,
            lambda timeout_s: guard.check_explain(
                sql, read_only=read_only, server_version=conn.info.server_version, timeout_s=timeout_s
            ),
        )
        write = statement.kind in guard.WRITES
        if write and analyze:
            result["note"] = (
                f"{guard.WRITES[statement.kind]} is explained without ANALYZE: running it would advance sequences "
                "and fire triggers that rolling back does not undo; measure it with execute"
            )
        prefix = "EXPLAIN (FORMAT JSON, ANALYZE) " if analyze and not write else "EXPLAIN (FORMAT JSON) "
        limit = _answer_limit(max_bytes)
        with transaction(
            conn,
            commit=False,
            deadline=deadline,
            lock_timeout_ms=lock_timeout_ms,
            sql=sql,
            offset=-statement.start,
            max_chars=max_bytes // 2,
        ) as where:
            resolve.first_round_trip(
                conn,
                statement,
                None if write else policy,
                bound=NO_PARAMS,
                deadline=deadline,
                lock_timeout_ms=lock_timeout_ms,
                limit=limit,
                tool="explain_query",
                read_only=None if write else True,
                describe=False,
            )
            where.offset = len(prefix) - statement.start
            batch = Batch(conn, limit=limit)
            plan = batch.query((prefix + statement.text).encode(conn.info.encoding))
            try:
                found = reset.run_and_end(batch)[plan]
            except AnswerTooLarge as exc:
                if exc.kind != "row":
                    raise
                return {**_plan_too_large(exc.length, exc.fields.get("text", ""), max_bytes), **result}
            text = found.get_value(0, 0) if found is not None and found.ntuples else None
    if text and len(text) > max_bytes:
        start = text[: 16 << 10].decode(conn.info.encoding, "ignore")
        return {**_plan_too_large(len(text), start, max_bytes), **result}
    return {"plan": json.loads(text) if text else [], **result}


def _plan_too_large(length: int, start: str, max_bytes: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "plan": [],
        "truncated": True,
        "note": (
            f"the plan is {length:,} bytes, more than the result cap of {max_bytes:,} bytes "
            "(MCP_RESULT_MAX_BYTES): PostgreSQL prints folded constants and every node in full; "
            "explain a smaller statement or one without large literals"
        ),
    }
    if start:
        result["plan_start"] = start[: min(16 << 10, max_bytes // 4)]
    return result


def _answer_limit(max_bytes: int) -> int:
    """Bytes one round trip of a call may receive: its rows, their envelope, the check, a message."""
    return 2 * max_bytes + (1 << 20)


def _parsed(deadline: Deadline, check: Callable[[float], guard.Statement]) -> guard.Statement:
    """The guard's verdict, within the call's deadline: parsing is part of the call's time."""
    try:
        statement = check(deadline.remaining_ms() / 1000)
    except guard.ParseTimeout:
        deadline.expired = True
        raise deadline.error() from None
    deadline.remaining_ms()  # raises the timeout if parsing used up the call's time
    return statement


def _execute_extended(cur: psycopg.RawCursor[Any], sql: str, params: Sequence[Any]) -> None:
    # Without parameters psycopg would use the simple query protocol, which runs every
    # statement of "a; b". A binary result format forces the extended protocol, where the
    # server accepts exactly one statement; prepare=False keeps it unnamed.
    cur.execute(sql, bind_params(params), prepare=False, binary=True)


def _positive(**limits: int) -> None:
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
