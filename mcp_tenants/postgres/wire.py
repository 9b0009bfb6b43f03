"""Several statements in one network round trip, through libpq's pipeline mode directly.

psycopg's own pipeline (``conn.pipeline()``) waits on the socket about a dozen times for a
tool call's handful of statements and builds a cursor for each. A tool call knows all its
statements up front, so a ``Batch`` queues them on the connection's libpq handle
(``conn.pgconn``), sends them at once and reads every answer in one wait, through psycopg's
own wait loop (the deadline's cancel from another thread and Ctrl-C work as with a cursor).

Every statement goes on the extended query protocol, where the server accepts exactly one
statement per message whatever the text says. Between two ``sync`` points the statements form
one pipeline segment: after an error the server skips the rest of the segment
(``PIPELINE_ABORTED``) and resumes at the next sync.

Named statements (``Named``) are this package's own constant SQL, prepared on the protocol
level once per connection and then only bound and executed. SQL cannot create a protocol-level
statement (``PREPARE`` marks its statements ``from_sql``), which is how the reset tells ours
from a caller's (``reset``).

Every round trip has a byte budget (``Batch(limit=...)``): before each read of the socket,
``budget.Budget`` counts what arrived and looks at the headers of the messages libpq would read
next, so that an answer or a single message too large for the budget ends the round trip (its
connection closed) before libpq holds it, with ``AnswerTooLarge`` saying what was coming.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.abc import Buffer, PQGen
from psycopg.adapt import PyFormat, Transformer
from psycopg.waiting import Ready, Wait

from mcp_tenants.postgres.budget import AnswerTooLarge, Budget

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]
Result = pq.abc.PGresult

_TEXT, _BINARY = pq.Format.TEXT, pq.Format.BINARY
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_FATAL = pq.ExecStatus.FATAL_ERROR
_COPY = (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH)
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC

#: Budget of a round trip that does not name one: catalog reads, the reset.
DEFAULT_LIMIT = 8 << 20


class Params:
    """Parameter values dumped once by psycopg's adapters, for any number of statements.

    ``text``: dump every value in text format (arrays of text: ``{a,"b c",NULL}``), as a named
    statement whose parameter types are declared expects.
    """

    __slots__ = ("formats", "types", "values")

    def __init__(self, conn: Connection | None, values: Sequence[Any], *, text: bool = False) -> None:
        self.values: Sequence[Buffer | None] | None = None
        self.types: Sequence[int] | None = None
        self.formats: Sequence[pq.Format] | None = None
        if values:
            tx = Transformer(conn)
            self.values = tx.dump_sequence(values, [PyFormat.TEXT if text else PyFormat.AUTO] * len(values))
            self.types = tx.types
            self.formats = tx.formats

    @classmethod
    def texts(cls, values: Sequence[bytes]) -> Params:
        """Values already in PostgreSQL's text form (for a statement that declares their types)."""
        params = cls(None, ())
        params.values = values
        params.formats = [_TEXT] * len(values)
        return params


NO_PARAMS = Params(None, ())


#: The names of every ``Named`` statement: what the reset keeps.
NAMES: set[str] = set()


@dataclass(frozen=True)
class Named:
    """A constant statement of ours, prepared once per connection under ``name``."""

    name: str
    sql: str
    types: tuple[int, ...] = ()  # parameter type oids (0: let the server infer)

    def __post_init__(self) -> None:
        NAMES.add(self.name)


# Names of the statements each connection holds, as far as we know: added when a prepare
# succeeds, replaced by what the reset finds. Each connection is used by one thread at a time
# (the pool's rule); a closed connection drops out on its own.
_held: weakref.WeakKeyDictionary[Connection, set[str]] = weakref.WeakKeyDictionary()


def held(conn: Connection) -> set[str]:
    """The names of our statements ``conn`` holds (a copy)."""
    return set(_held.get(conn, ()))


def set_held(conn: Connection, names: set[str]) -> None:
    """Record that ``conn`` holds exactly these statements of ours."""
    _held[conn] = set(names)


class Batch:
    """Statements sent together and answered in one round trip; ``run`` sends and reads them.

    Each ``query``, ``execute``, ``describe`` and ``sync`` returns the index of its result in
    ``run``'s list (a sync's "result" is None).
    """

    def __init__(self, conn: Connection, *, limit: int = DEFAULT_LIMIT, bounded_rows: bool = False) -> None:
        self.conn = conn
        self.limit = limit  # bytes the answer may have (see the module docstring)
        #: True when the statements' rows are bounded already (``rowjson``): only errors and
        #: notices are looked for before each read.
        self.bounded_rows = bounded_rows
        self._items: list[tuple[str, tuple[Any, ...]]] = []
        self._preparing: set[str] = set()  # named statements this batch prepares

    def __len__(self) -> int:
        return len(self._items)

    def query(self, sql: bytes, params: Params = NO_PARAMS, *, binary: bool = False) -> int:
        """One statement, parsed and run as the unnamed statement; ``binary``: binary results."""
        self._items.append(("query", (sql, params, _BINARY if binary else _TEXT)))
        return len(self._items) - 1

    def execute(self, statement: Named, params: Params = NO_PARAMS) -> int:
        """Run a named statement of ours, preparing it first if the connection lacks it."""
        if statement.name not in _held.get(self.conn, ()) and statement.name not in self._preparing:
            self._items.append(("prepare", (statement,)))
            self._preparing.add(statement.name)
        self._items.append(("execute", (statement.name.encode(), params)))
        return len(self._items) - 1

    def describe(self, sql: bytes, params: Params = NO_PARAMS) -> int:
        """Parse ``sql`` as the unnamed statement and describe its result columns (nothing runs)."""
        self._items.append(("parse", (sql, params)))
        self._items.append(("describe", ()))
        return len(self._items) - 1

    def sync(self) -> int:
        """End the pipeline segment: the statements after it run even if one before it failed."""
        self._items.append(("sync", ()))
        return len(self._items) - 1

    def run(self) -> list[Result | None]:
        """Send everything, read every answer; one result per item (None for a sync).

        Raises psycopg's error when the connection fails, ``AnswerTooLarge`` when the answer passes
        ``limit`` (and then closes the connection: its state is unknown); errors of statements
        are results (``first_error`` raises them).
        """
        if not self._items or self._items[-1][0] != "sync":
            self.sync()
        conn = self.conn
        pgconn = conn.pgconn
        with conn.lock:
            if conn.closed:
                raise psycopg.OperationalError("the connection is closed")
            pgconn.enter_pipeline_mode()
            budget = Budget(pgconn.socket, self.limit, rows=not self.bounded_rows)
            try:
                for kind, args in self._items:
                    _SEND[kind](pgconn, *args)
                results = conn.wait(_communicate(pgconn, [kind == "sync" for kind, _ in self._items], budget))
                pgconn.exit_pipeline_mode()
            except BaseException as exc:
                # Results still pending, or the connection lost: nothing can use it safely now.
                if not conn.closed:
                    if isinstance(exc, AnswerTooLarge):
                        logger.warning("answer larger than %d bytes; closing the connection", self.limit)
                    else:
                        logger.warning("round trip interrupted; closing the connection")
                    conn.close()
                raise

        for (kind, args), res in zip(self._items, results, strict=True):
            if kind == "prepare" and res is not None and res.status == _COMMAND_OK:
                _held.setdefault(conn, set()).add(args[0].name)
        return results

    def first_error(self, results: Sequence[Result | None]) -> psycopg.Error | None:
        """The error of the first statement in ``results`` that failed, or None."""
        for res in results:
            if res is not None and res.status == _FATAL:
                return errors.error_from_result(res, encoding=self.conn.info.encoding)
        return None

    def check(self, results: Sequence[Result | None]) -> None:
        """Raise the error of the first statement in ``results`` that failed."""
        error = self.first_error(results)
        if error is not None:
            raise error


def _send_query(pgconn: Any, sql: bytes, params: Params, fmt: pq.Format) -> None:
    pgconn.send_query_params(sql, params.values, params.types, params.formats, fmt)


def _send_prepare(pgconn: Any, statement: Named) -> None:
    pgconn.send_prepare(statement.name.encode(), statement.sql.encode(), statement.types or None)


def _send_execute(pgconn: Any, name: bytes, params: Params) -> None:
    pgconn.send_query_prepared(name, params.values, params.formats)


def _send_parse(pgconn: Any, sql: bytes, params: Params) -> None:
    pgconn.send_prepare(b"", sql, params.types)


_SEND: dict[str, Callable[..., None]] = {
    "query": _send_query,
    "prepare": _send_prepare,
    "execute": _send_execute,
    "parse": _send_parse,
    "describe": lambda pgconn: pgconn.send_describe_prepared(b""),
    "sync": lambda pgconn: pgconn.pipeline_sync(),
}


def _communicate(pgconn: Any, syncs: list[bool], budget: Budget) -> PQGen[list[Result | None]]:
    """Flush what was queued, then read one result per statement and per sync.

    psycopg's own generators, with the budget counted before every read of the socket."""
    while pgconn.flush() != 0:
        while not (ready := (yield Wait.RW)):
            continue
        if ready & Ready.R:
            budget.before_read()
            pgconn.consume_input()
    results: list[Result | None] = []
    for is_sync in syncs:
        got = yield from _fetch_many(pgconn, budget)
        results.append(None if is_sync or not got else got[-1])
    return results


def _fetch_many(pgconn: Any, budget: Budget) -> PQGen[list[Result]]:
    results: list[Result] = []
    while True:
        try:
            result = yield from _fetch(pgconn, budget)
        except errors.DatabaseError:
            if any(res.status == _FATAL for res in results):
                break  # a connection ended after its error (e.g. an idle timeout): the error says why
            raise
        if not result:
            break
        results.append(result)
        if result.status in _COPY:
            break
        if result.status == _PIPELINE_SYNC:
            break
    return results


def _fetch(pgconn: Any, budget: Budget) -> PQGen[Result | None]:
    if pgconn.is_busy():
        while not (yield Wait.R):
            continue
        while True:
            budget.before_read()
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            while not (yield Wait.R):
                continue
    return pgconn.get_result()
