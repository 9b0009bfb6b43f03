"""Turn psycopg errors into this project's errors, with messages a person can act on.

Messages carry PostgreSQL's own primary message, detail and hint (each cut to a share of the
result cap: PostgreSQL quotes whole values in them), and for errors with a position,
the position in the caller's SQL (not in the DECLARE or EXPLAIN wrapper the tools add) with a
short excerpt pointing at it. They never carry a DSN, a password or a stack trace: connection
failures get a fixed message, because libpq's text names hosts and users.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import errors as pg_errors

from mcp_tenants.errors import AccessDenied, QueryError, TenantsError, TenantUnreachable
from mcp_tenants.postgres.wire import AnswerTooLarge

logger = logging.getLogger(__name__)

_EXCERPT_WIDTH = 60
#: Default cap of an error's text (the server passes MCP_RESULT_MAX_BYTES).
MAX_ERROR_CHARS = 1 << 20


def user_error(
    exc: psycopg.Error,
    *,
    sql: str = "",
    offset: int = 0,
    statement_timeout_ms: int | None = None,
    lock_timeout_ms: int | None = None,
    max_chars: int = MAX_ERROR_CHARS,
) -> TenantsError:
    """Return the ``TenantsError`` to raise for ``exc``.

    ``sql`` is the caller's text and ``offset`` the number of characters the tool put in front
    of it, so that PostgreSQL's position can be reported in the caller's terms. The message,
    detail and hint share ``max_chars``.
    """
    diag = exc.diag
    logger.info("postgres error %s (%s)", diag.sqlstate or "-", type(exc).__name__)
    if isinstance(exc, pg_errors.QueryCanceled):
        if "statement timeout" in (diag.message_primary or ""):
            return QueryError(
                f"statement timed out after {statement_timeout_ms} ms; add a filter or a LIMIT, "
                "or ask the operator to raise MCP_STATEMENT_TIMEOUT_MS"
            )
        return QueryError("the statement was cancelled")
    if isinstance(exc, pg_errors.LockNotAvailable):
        return QueryError(
            f"gave up waiting for a lock after {lock_timeout_ms} ms: another session holds a "
            "conflicting lock (for example a running ALTER TABLE); retry later"
        )
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return AccessDenied(
            f"query is read-only and PostgreSQL refused to change data ({cut(diag.message_primary or '', 200)});"
            " use execute on a read-write tenant to change data"
        )
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and not diag.sqlstate:
        # A client-side failure: the server went away, the socket broke, the connection closed.
        return TenantUnreachable("connection to the database was lost; retry")
    if isinstance(exc, (pg_errors.AdminShutdown, pg_errors.CrashShutdown, pg_errors.CannotConnectNow)):
        return TenantUnreachable("connection to the database was lost; retry")
    if diag.message_primary is None:
        # Raised by psycopg itself (e.g. a parameter it cannot adapt); its text names no secret.
        return QueryError(cut(str(exc), max_chars))
    return QueryError(_describe(diag, sql, offset, max_chars))


def answer_too_large(exc: AnswerTooLarge) -> QueryError:
    """The error of a call whose answer from PostgreSQL passed the round trip's budget."""
    closed = "more than the call may receive (MCP_RESULT_MAX_BYTES); the connection was closed"
    if exc.kind in ("error", "notice"):
        what = "error" if exc.kind == "error" else "notice (a function of the statement raised it)"
        text = cut(exc.fields.get("M", ""), 1000) or "(its text could not be read)"
        return QueryError(f"{text}\nPostgreSQL's {what} is {exc.length:,} bytes long, {closed}")
    return QueryError(f"PostgreSQL's answer was larger than {exc.limit:,} bytes, {closed}")


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a note that it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (cut: {len(text):,} characters in all)"


def _describe(diag: psycopg.errors.Diagnostic, sql: str, offset: int, max_chars: int) -> str:
    parts = [cut(diag.message_primary or "PostgreSQL reported an error", max(max_chars // 2, 200))]
    position = _position(diag.statement_position, offset, len(sql))
    if position is not None:
        parts[0] += f" (at position {position})\n{excerpt(sql, position)}"
    if diag.message_detail:
        parts.append(f"Detail: {cut(diag.message_detail, max(max_chars // 4, 200))}")
    if diag.message_hint:
        parts.append(f"Hint: {cut(diag.message_hint, max(max_chars // 8, 200))}")
    return "\n".join(parts)


def _position(raw: str | None, offset: int, length: int) -> int | None:
    """PostgreSQL's 1-based character position, moved into the caller's SQL; None if outside."""
    if not raw or not raw.isdigit():
        return None
    position = int(raw) - offset
    return position if 1 <= position <= length + 1 else None


def excerpt(sql: str, position: int) -> str:
    """Two lines: the part of the line around 1-based ``position``, and a caret under it."""
    index = min(max(position - 1, 0), len(sql))
    line_start = sql.rfind("\n", 0, index) + 1
    line_end = sql.find("\n", index)
    line = sql[line_start : line_end if line_end >= 0 else len(sql)]
    column = index - line_start
    start = max(0, column - _EXCERPT_WIDTH // 2)
    shown = line[start : start + _EXCERPT_WIDTH].replace("\t", " ").replace("\r", " ")
    return f"  {shown}\n  {' ' * (column - start)}^"
