"""How a read-only statement is checked: PostgreSQL resolves it, the catalog says what it reaches.

Predicting PostgreSQL's name resolution from the raw parse tree leaves gaps: constructs that
choose an operator no name in the text stands for (the ``=`` of ``x IN (SELECT ...)``, the sort
operators of ``ORDER BY``, ``DISTINCT`` and ``UNION``), implicit casts in argument coercion,
identifiers cut to 63 bytes of the *database* encoding. So the server resolves the statement
itself, in the call's first round trip, with nothing of it run::

    BEGIN READ WRITE; settings; Parse + Describe of the statement
    (the view guard: no event trigger fires on CREATE VIEW, the role may create temporary objects)
    CREATE TEMP VIEW mcp_check AS SELECT 1 FROM (<the statement>\\n) AS q
    the reach check (``reach.check("exact")``): what pg_depend records for the view's rule, walked
    SET TRANSACTION READ ONLY

The view lives until the call's ROLLBACK (the statement cannot read it: it was described before
the view existed, and a name it cannot resolve is an error). A savepoint rolled back before
``SET TRANSACTION READ ONLY`` would cost a second transaction id per call for nothing. The
session's temporary schema is created once per connection, in a transaction of its own that
commits (a view that the connection's reset drops with the other temporary objects): created
and rolled back in every call, it would change the session's search path twice per call, and
PostgreSQL then plans the prepared check again each time (4 ms instead of none).

The statement's text goes into the view exactly as the parser located it, its ``$n`` replaced
by typed NULLs (``(NULL::pg_catalog.int8)``; an untyped ``(NULL)`` for a parameter sent as
text, which PostgreSQL types from its context the same way). A parameter sent untyped that
the statement uses twice takes its type from its first use, which a NULL cannot do; such a
statement is also checked by names. Creating the view runs PostgreSQL's analysis (and the input
functions of its constants' types), never the statement.

What it costs (measured, PostgreSQL 15): about 0.3 ms of server time per checked statement,
one transaction id (the catalog rows of the view, rolled back) and about 5 KB of WAL; both grow
with the statement's parse tree, so statements longer than ``MAX_VIEW_BYTES`` are checked by
names. Statements that reach nothing in the catalog (``SELECT 1``, ``VALUES ($1)``) are not
checked at all.

Where no view can be created, the check goes by names (``reach.NAMES``, conservative: a name
stands for every object it can resolve to), for that connection for ``NO_VIEW_RETRY_S``: on a
hot standby (no transaction may write), for a role without TEMP on the database, and where an
event trigger would fire on ``CREATE VIEW`` (an event trigger is code of the database's owner:
it must not run for every read, and it may refuse the DDL). A view that fails for another
reason falls back for that call only.

After the first round trip, ``conclude`` turns the check's rows into a verdict; a function body
to inspect (``definitions``) costs one more round trip per level of nesting.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import psycopg
from psycopg.postgres import types as builtin_types

from mcp_tenants.errors import AccessDenied
from mcp_tenants.postgres import definitions, reach
from mcp_tenants.postgres.deadline import Deadline
from mcp_tenants.postgres.policy import FunctionPolicy
from mcp_tenants.postgres.sqltree import References, Statement
from mcp_tenants.postgres.transactions import queue_begin
from mcp_tenants.postgres.wire import Batch, Named, Params, Result

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

#: Longest statement (UTF-8 bytes) checked through a view; longer ones are checked by names.
MAX_VIEW_BYTES = 64 << 10
#: Seconds a connection where no view could be created is checked by names before trying again.
NO_VIEW_RETRY_S = 60.0
#: Levels of function bodies inspected (a body calls a function whose body is inspected, ...).
MAX_BODY_DEPTH = 8

_NO_VIEW = "mcp-no-view"


def _fail(why: str) -> str:
    # concat is STABLE: the planner does not fold the error into the plan, whatever the branch.
    return f"pg_catalog.int4in(pg_catalog.textout(pg_catalog.concat('{_NO_VIEW}: {why}')))"


#: Fails, before the view is made, where it must not be: an event trigger would fire on CREATE
#: VIEW, or the role may not create temporary objects in this database.
GUARD = Named(
    "mcp_view_guard",
    "SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_event_trigger e"
    " WHERE e.evtenabled OPERATOR(pg_catalog.<>) 'D'"
    " AND e.evtevent OPERATOR(pg_catalog.=) ANY ('{ddl_command_start,ddl_command_end}'::pg_catalog.name[])"
    " AND (e.evttags IS NULL OR 'CREATE VIEW' OPERATOR(pg_catalog.=) ANY (e.evttags)))"
    f" THEN {_fail('an event trigger fires on CREATE VIEW')}"
    " WHEN NOT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'TEMPORARY')"
    f" THEN {_fail('the role may not create temporary objects')} END",
)
_READ_ONLY = b"SET TRANSACTION READ ONLY"
_NAMESPACE = b"CREATE TEMP VIEW mcp_namespace AS SELECT 1"
_VIEW_HEAD = b"CREATE TEMP VIEW mcp_check AS SELECT 1 FROM (\n"
_VIEW_TAIL = b"\n) AS q"
_FATAL = psycopg.pq.ExecStatus.FATAL_ERROR
_COMMAND_OK = psycopg.pq.ExecStatus.COMMAND_OK
_TUPLES = psycopg.pq.ExecStatus.TUPLES_OK
# SQLSTATEs of a view that cannot be created on this connection whatever the statement:
# insufficient privilege, read-only transaction, feature not supported (read-write on a standby).
_ENVIRONMENT = {"42501", "25006", "0A000"}

# Connections where no view can be created, until when (monotonic); connections whose session
# has its temporary schema. One thread uses a connection at a time; a closed connection drops out.
_no_views: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
_with_namespace: weakref.WeakSet[Connection] = weakref.WeakSet()


@dataclass
class Check:
    """How one statement is checked, and where its results are in the first round trip."""

    policy: FunctionPolicy
    statement: Statement
    mode: str  # "exact" (a temporary view), "names", or "none" (nothing to resolve)
    also_names: bool = False  # an untyped parameter used twice: names too
    slots: dict[str, int] = field(default_factory=dict)

    @property
    def read_only(self) -> bool:
        """BEGIN READ ONLY (False: READ WRITE until the view is rolled back)."""
        return self.mode != "exact"


def first_round_trip(
    conn: Connection,
    statement: Statement,
    policy: FunctionPolicy | None,
    *,
    bound: Params,
    deadline: Deadline,
    lock_timeout_ms: int,
    limit: int,
    tool: str,
    read_only: bool | None = True,
    describe: bool = True,
) -> tuple[list[Result | None], int | None]:
    """BEGIN, the settings, the statement's Describe and its check, in one round trip (two when
    no view could be made); raises ``AccessDenied`` when the policy refuses the statement, or the
    statement's own error. Returns the results and the index of the Describe's.

    ``policy`` None: no check, and the transaction is ``read_only`` (None: the server's default).
    """
    types = list(bound.types or ())
    check = plan(conn, statement, policy, types) if policy is not None else None
    for attempt in range(2):
        batch = Batch(conn, limit=limit)
        if attempt:
            batch.query(b"ROLLBACK")  # the first attempt's transaction, aborted by the view
        namespace = check is not None and check.mode == "exact" and conn not in _with_namespace
        if namespace:  # a transaction of its own, committed (also for a role read-only by default)
            batch.query(b"BEGIN READ WRITE")
            batch.execute(GUARD)
            batch.query(_NAMESPACE)
            created = batch.query(b"COMMIT")
            batch.sync()
        if check is not None:
            check.slots["begin"] = len(batch)
        queue_begin(
            batch,
            check.read_only if check is not None else read_only,
            statement_timeout_ms=deadline.remaining_ms(),
            lock_timeout_ms=lock_timeout_ms,
            server_version=conn.info.server_version,
        )
        described = batch.describe(statement.text.encode(conn.info.encoding), bound) if describe else None
        if check is not None:
            queue(batch, check, conn, types)
        results = batch.run()
        if namespace and results[created] is not None and results[created].status == _COMMAND_OK:  # type: ignore[union-attr]
            _with_namespace.add(conn)
        if check is not None and view_failed(conn, check, results):
            check = fallback(conn, check)
            continue
        batch.check(results)
        if check is not None:
            conclude(conn, check, results, tool, limit)
        return results, described
    raise AssertionError("unreachable: the second attempt checks by names")


def plan(conn: Connection, statement: Statement, policy: FunctionPolicy, param_types: Sequence[int]) -> Check:
    """How ``statement`` is to be checked on ``conn``."""
    if statement.trivial:
        return Check(policy, statement, "none")
    if _views_unavailable(conn) or len(statement.text.encode()) > MAX_VIEW_BYTES:
        return _names(conn, policy, statement)
    uses: dict[int, int] = {}
    for number, _start, _end in statement.parameters():
        uses[number] = uses.get(number, 0) + 1
    untyped = {n for n in uses if n > len(param_types) or param_types[n - 1] == 0}
    return Check(policy, statement, "exact", also_names=any(uses[n] > 1 for n in untyped))


def queue(batch: Batch, check: Check, conn: Connection, param_types: Sequence[int]) -> None:
    """Add the check's statements to the first round trip, after BEGIN, settings and Describe."""
    version = conn.info.server_version
    refs = check.statement.refs
    if check.mode == "exact":
        check.slots["guard"] = len(batch)  # its prepare, when the connection has not prepared it yet
        batch.execute(GUARD)
        check.slots["view"] = batch.query(view_sql(check.statement, param_types))
        params = check.policy.check_params(conn, refs, kinds="far")
        check.slots["exact"] = batch.execute(reach.check("exact", version), params)
        batch.query(_READ_ONLY)
    if check.mode == "names" or check.also_names:
        params = check.policy.check_params(conn, refs, skip=check.statement.cte_names())
        check.slots["names"] = batch.execute(reach.check("names", version), params)


def view_failed(conn: Connection, check: Check, results: Sequence[Result | None]) -> bool:
    """True when the first round trip failed before the check because no view could be made
    (the connection is then in an aborted transaction): redo it with ``fallback``."""
    if check.mode != "exact":
        return False
    failed = next((i for i, res in enumerate(results) if res is not None and res.status == _FATAL), None)
    if failed is None or not (failed <= check.slots["begin"] or check.slots["guard"] <= failed <= check.slots["view"]):
        return False  # no error, or the statement's own (Describe) or the check's
    res = results[failed]
    assert res is not None
    state = (res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"").decode()
    message = (res.error_field(psycopg.pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode("utf-8", "replace")
    if _NO_VIEW in message or state in _ENVIRONMENT or failed <= check.slots["begin"]:
        _no_views[conn] = monotonic() + NO_VIEW_RETRY_S
        logger.info("no temporary view on this connection (%s): checking by names", message[:200])
    else:
        logger.info("the statement's temporary view failed (%s): checking it by names", message[:200])
    return True


def fallback(conn: Connection, check: Check) -> Check:
    """The same check by names (after ``view_failed``)."""
    return _names(conn, check.policy, check.statement)


def conclude(conn: Connection, check: Check, results: Sequence[Result | None], tool: str, limit: int) -> None:
    """Raise ``AccessDenied`` when the check's rows refuse the statement; inspect function bodies
    (one round trip per level) and views over credentials on the way."""
    rows = [row for slot in ("exact", "names") if slot in check.slots for row in _rows(results[check.slots[slot]])]
    seen: set[str] = set()
    via = ""
    for _depth in range(MAX_BODY_DEPTH + 1):
        _judge(check.policy, rows, tool, via)
        bodies = [(name, lang, body) for _, name, reason, lang, body in rows if reason == "body" and name not in seen]
        if not bodies:
            return
        seen.update(name for name, _, _ in bodies)
        refs = _body_references(check.policy, bodies, tool, conn)
        via = ", ".join(sorted(name for name, _, _ in bodies))
        batch = Batch(conn, limit=limit)
        found = batch.execute(reach.check("bodies", conn.info.server_version), check.policy.check_params(conn, refs))
        answer = batch.run()
        batch.check(answer)
        rows = _rows(answer[found])
    raise AccessDenied(f"{tool} refused the statement: its functions call functions {MAX_BODY_DEPTH} levels deep")


def view_sql(statement: Statement, param_types: Sequence[int]) -> bytes:
    """``CREATE TEMP VIEW`` over the statement's own text, its ``$n`` replaced by typed NULLs."""
    data = statement.text.encode()
    out = bytearray(_VIEW_HEAD)
    at = 0
    for number, start, end in statement.parameters():
        out += data[at:start] + b"(" + _typed_null(param_types, number) + b")"
        at = end
    out += data[at:] + _VIEW_TAIL
    return bytes(out)


def _typed_null(param_types: Sequence[int], number: int) -> bytes:
    oid = param_types[number - 1] if 0 < number <= len(param_types) else 0
    info = builtin_types.get(oid) if oid else None
    if info is None:
        return b"NULL"  # untyped, like the parameter: PostgreSQL types it from its context
    name = info.name if info.oid == oid else f"_{info.name}"
    return b'NULL::pg_catalog."' + name.encode() + b'"'


def _names(conn: Connection, policy: FunctionPolicy, statement: Statement) -> Check:
    encoding = conn.info.parameter_status("server_encoding") or "UTF8"
    if encoding not in ("UTF8", "SQL_ASCII"):
        long = statement.long_identifiers()
        if long:
            raise AccessDenied(
                f"the identifier {long[0]!r} is not ASCII and long enough that the database ({encoding}) may cut it "
                "at 63 bytes elsewhere than the guard's parser does (UTF-8); on this connection the statement "
                "is checked by names, so it cannot be checked: use a shorter name or an alias"
            )
    return Check(policy, statement, "names")


def _views_unavailable(conn: Connection) -> bool:
    until = _no_views.get(conn)
    if until is not None and monotonic() < until:
        return True
    return conn.info.parameter_status("in_hot_standby") == "on"


Row = tuple[str, str, str, str, str]


def _rows(res: Result | None) -> list[Row]:
    if res is None or res.status != _TUPLES:
        return []

    def text(row: int, col: int) -> str:
        return (res.get_value(row, col) or b"").decode("utf-8", "replace")  # type: ignore[union-attr]

    return [(text(r, 0), text(r, 1), text(r, 2), text(r, 3), text(r, 4)) for r in range(res.ntuples)]


def _judge(policy: FunctionPolicy, rows: list[Row], tool: str, via: str) -> None:
    offenders = [(k, n, r, lang) for k, n, r, lang, _ in rows if k in "fr" and r != "body"]
    views = [(name, definition) for kind, name, _, _, definition in rows if kind == "v"]
    if views:
        top = {name for kind, name, reason, _, _ in rows if kind == "v" and reason == "top"}
        offenders += [("r", name, "credentials", "") for name in sorted(definitions.exposing_views(views) & top)]
    refusal = policy.refuse(offenders, tool, via=via)
    if refusal is not None:
        raise refusal


def _body_references(
    policy: FunctionPolicy, bodies: list[tuple[str, str, str]], tool: str, conn: Connection
) -> References:
    legacy = conn.info.server_version < 150_000
    found: list[References] = []
    for name, language, body in bodies:
        try:
            found.append(definitions.inspect_body(language, body, legacy_server=legacy))
        except definitions.Uninspectable as exc:
            raise AccessDenied(
                f"{name} is declared non-volatile but {exc}; {tool} runs such a function only when allowed by "
                "name (MCP_ALLOWED_VOLATILE_FUNCTIONS), or mark it VOLATILE"
            ) from None
        except RecursionError:
            raise AccessDenied(f"{name}: its body nests too deeply to inspect") from None
    return References.union(found)
