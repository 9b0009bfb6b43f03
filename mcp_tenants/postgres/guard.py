"""The statement guard: what ``query``, ``explain_query`` and ``execute`` agree to send.

``query`` is read-only for every tenant and cannot be talked out of it. The layers, in order:

1. PostgreSQL's own parser (``sqltree``, libpg_query): the text must be exactly one statement;
   ``query`` takes a SELECT (also VALUES, TABLE, set operations, WITH whose parts are all
   SELECTs) with no INTO and no locking clause anywhere. The server scans the text exactly as
   the parser did: the tools force ``standard_conforming_strings = on`` and UTF-8.
2. The function policy (``policy``), on read-only tenants: every function the statement can
   reach must be non-volatile in the tenant's catalog, or on the allow list; checked by one
   catalog query in the same round trip as BEGIN, before the statement is sent.
3. The extended query protocol (one statement per message, whatever the text says).
4. A ``READ ONLY`` transaction, always rolled back, with one deadline for the whole call
   (``deadline``), local timeouts, and ``idle_in_transaction_session_timeout``.
5. ``reset_connection`` when the connection goes back to the pool.

The protection that holds whatever the SQL is, still, a dedicated role: ``GRANT pg_read_all_data``
(or per-table SELECT) and none of ``pg_read_server_files``, ``pg_write_server_files``,
``pg_execute_server_program``, nor superuser.
"""

from __future__ import annotations

import logging

from mcp_tenants.errors import AccessDenied, InvalidInput
from mcp_tenants.postgres.sqltree import OLDEST_SERVER, PARSER_VERSION, ParseTimeout, Statement, parse_one

__all__ = ["ParseTimeout", "Statement", "check_execute", "check_explain", "check_query", "check_server"]

logger = logging.getLogger(__name__)

_READ_ONLY_HINT = (
    "query is read-only: only one SELECT, WITH, VALUES or TABLE statement is allowed; "
    "use execute on a read-write tenant to change data"
)
#: Statements a read-write tenant may also explain (``analyze`` is rolled back).
WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
_NAMES = {
    **WRITES,
    "ExplainStmt": "EXPLAIN",
    "VariableShowStmt": "SHOW",
    "VariableSetStmt": "SET",
    "TransactionStmt": "transaction control",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "CopyStmt": "COPY",
    "DoStmt": "DO",
    "CallStmt": "CALL",
    "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE",
    "DeclareCursorStmt": "DECLARE",
}


def _kind_name(statement: Statement) -> str:
    kind = statement.kind
    return _NAMES.get(kind) or kind.removesuffix("Stmt").upper()


def check_server(server_version: int) -> bool:
    """Refuse servers the guard's parser cannot speak for; True if the server is older than it."""
    if server_version < OLDEST_SERVER:
        raise AccessDenied(
            f"PostgreSQL {server_version // 10000} is not supported by query and explain_query: the guard "
            f"reads SQL with PostgreSQL {PARSER_VERSION // 10000}'s parser and serves servers from "
            f"{OLDEST_SERVER // 10000} on; upgrade the server"
        )
    return server_version < PARSER_VERSION


def check_query(sql: str, *, server_version: int = PARSER_VERSION, timeout_s: float | None = None) -> Statement:
    """Parse ``sql`` and refuse it unless it is one read-only statement ``query`` may run.

    Raises ``QueryError`` (PostgreSQL's syntax error, with position), ``AccessDenied`` (what was
    refused and why), ``InvalidInput`` (no statement at all, or text too costly to scan) or
    ``ParseTimeout`` (the parser took longer than ``timeout_s``).
    """
    statement = parse_one(sql, legacy_server=check_server(server_version), timeout_s=timeout_s)
    _require_read(statement, _READ_ONLY_HINT)
    return statement


def check_explain(
    sql: str, *, read_only: bool, server_version: int = PARSER_VERSION, timeout_s: float | None = None
) -> Statement:
    """Refuse ``sql`` unless ``explain_query`` may explain it for this tenant.

    A read-only tenant may explain what ``query`` may run; a read-write tenant may also explain
    INSERT, UPDATE, DELETE and MERGE (``analyze`` runs them in a transaction that is rolled back).
    """
    statement = parse_one(sql, legacy_server=check_server(server_version), timeout_s=timeout_s)
    if read_only or statement.kind not in WRITES:
        _require_read(
            statement,
            "explain_query explains one SELECT, WITH, VALUES or TABLE statement"
            + ("" if read_only else ", or one INSERT, UPDATE, DELETE or MERGE"),
        )
    return statement


def check_execute(sql: str) -> Statement:
    """Refuse more than one statement, transaction control, or a plain read in ``execute``."""
    statement = parse_one(sql)
    if statement.kind == "TransactionStmt":
        kind = statement.transaction_kind().replace("_", " ") or "transaction control"
        raise AccessDenied(
            f"execute runs each statement in its own transaction and commits it; {kind} is not allowed here"
        )
    if (statement.kind == "SelectStmt" and not statement.has_into and not statement.has_locking) or (
        statement.kind == "VariableShowStmt"
    ):
        # Reads go through query, whose rows and bytes are capped and whose functions are checked.
        raise InvalidInput(f"execute is for statements that change something; use query to run {_kind_name(statement)}")
    return statement


def _require_read(statement: Statement, hint: str) -> None:
    if statement.kind != "SelectStmt":
        extra = ""
        if statement.kind == "ExplainStmt":
            extra = "; use explain_query to see a plan"
        elif statement.kind == "VariableShowStmt":
            extra = "; use SELECT current_setting('name') instead of SHOW"
        logger.info("guard refused a %s statement", statement.kind)
        raise AccessDenied(f"{hint} (got {_kind_name(statement)}){extra}")
    if statement.has_into:
        raise AccessDenied(f"{hint}: SELECT ... INTO would create a table")
    if statement.has_locking:
        raise AccessDenied(f"{hint}: row locks (FOR UPDATE, FOR SHARE, ...) are not allowed")
    writes = statement.cte_kinds() - {"SelectStmt"}
    if writes:
        names = ", ".join(sorted(_NAMES.get(k, k) for k in writes))
        raise AccessDenied(f"{hint}: a WITH query that runs {names} would change data")
