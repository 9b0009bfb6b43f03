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

Every round trip has a byte budget (``Batch(limit=...)``). libpq keeps a whole protocol message
in memory, three times over, before anyone can look at it, and PostgreSQL quotes whole values in
its messages (``invalid input syntax for type integer: "xxx..."``, 200 MB) and prints folded
constants in plans. So before libpq reads from the socket, the bytes waiting there are looked at
(``MSG_PEEK``): a message longer than half the budget (an error, a notice or a row) is found by
its header, and the round trip is abandoned before libpq reads it, its connection closed, and
``AnswerTooLarge`` says what was coming, with the message's start. The bytes are also counted,
and a round trip whose answer passes its budget in smaller messages ends the same way. What this
cannot see: bytes that arrive while libpq is already reading a long answer (it then reads on
until the socket is empty), and anything through TLS; there the cap on what is copied and
returned (``diagnostics``) still holds, not the bound on libpq's own buffers.
"""

from __future__ import annotations

import fcntl
import logging
import re
import socket
import struct
import termios
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.abc import Buffer, PQGen
from psycopg.adapt import PyFormat, Transformer
from psycopg.waiting import Ready, Wait

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
#: Bytes looked at before each read: more than libpq reads at once with its usual buffer, so the
#: header of the next message is seen before libpq takes it; looking at everything waiting each
#: time would scan a large answer again and again (quadratic).
_PEEK_WINDOW = 256 << 10
# A message header: its type, then its length (4 bytes, big-endian, counting itself) below 1 GB.
_HEADER = re.compile(rb"[DEN][\x00-\x3f]")
# The same for errors and notices only: rows already bounded by the statement (``rowjson``'s
# wrapper cuts every value) need no look, and a scan that stops at every row header costs more
# than the rows themselves.
_HEADER_NO_ROWS = re.compile(rb"[EN][\x00-\x3f]")
_KINDS = {ord("E"): "error", ord("N"): "notice", ord("D"): "row"}
_SEVERITY = re.compile(rb"S[^\x00]{1,32}\x00[VCM]")


class AnswerTooLarge(Exception):
    """PostgreSQL's answer to a round trip was larger than its budget; the connection was closed."""

    def __init__(self, limit: int, kind: str | None = None, length: int = 0, fields: dict[str, str] | None = None):
        self.limit = limit
        self.kind = kind  # "error", "notice" or "row" when the large message was seen, else None
        self.length = length  # bytes of that message
        self.fields = fields or {}  # of an error or notice: "M" message, "C" code, ... (cut); of a row: "text"
        super().__init__(f"PostgreSQL's answer passed the {limit}-byte budget of the round trip")


class _Budget:
    """Looks at the bytes waiting on the socket before each read (see the module docstring)."""

    def __init__(self, fd: int, limit: int, *, rows: bool = True) -> None:
        self.fd = fd
        self.limit = limit
        self.received = 0
        self._header = _HEADER if rows else _HEADER_NO_ROWS
        # The running count adds the bytes waiting before each read; when libpq leaves some
        # unread they are counted again, so it only ever overestimates. Rows bounded by the
        # statement need no count (their total is bounded too), and there the overestimate
        # would stop a legitimate answer.
        self._count = rows

    def before_read(self) -> None:
        waiting = struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        if waiting <= 0:
            return
        # A socket object over libpq's own descriptor, detached after the peek (never closed).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, self.fd)
        try:
            chunk = sock.recv(min(waiting, self.limit, _PEEK_WINDOW), socket.MSG_PEEK)
        except OSError:
            chunk = b""
        finally:
            sock.detach()
        found = self._large_message(chunk)
        if found is not None:
            raise found
        if self._count:
            self.received += waiting
            if self.received > self.limit:
                raise AnswerTooLarge(self.limit)

    def _large_message(self, chunk: bytes) -> AnswerTooLarge | None:
        """A header in ``chunk`` of an error, notice or row longer than half the budget."""
        for found in self._header.finditer(chunk):
            at = found.start()
            length = int.from_bytes(chunk[at + 1 : at + 5], "big")
            if length <= self.limit // 2:
                continue
            body = chunk[at + 5 :]
            kind = _KINDS[chunk[at]]
            if kind == "row":
                # One column (2 bytes), its length (4 bytes: all of the message but 10), its text.
                if body[:2] == b"\x00\x01" and int.from_bytes(body[2:6], "big") == length - 10:
                    return AnswerTooLarge(self.limit, kind, length, {"text": _text(body[6:])})
            elif _SEVERITY.match(body):  # every error and notice starts with its severity
                return AnswerTooLarge(self.limit, kind, length, _fields(body))
        return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "ignore")


def _fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse body (code byte, text, NUL), the last one cut."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(body) and body[at] != 0:
        end = body.find(b"\0", at + 1)
        fields[chr(body[at])] = _text(body[at + 1 : end if end >= 0 else len(body)])
        if end < 0:
            break
        at = end + 1
    return fields


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
            budget = _Budget(pgconn.socket, self.limit, rows=not self.bounded_rows)
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


def _communicate(pgconn: Any, syncs: list[bool], budget: _Budget) -> PQGen[list[Result | None]]:
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


def _fetch_many(pgconn: Any, budget: _Budget) -> PQGen[list[Result]]:
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


def _fetch(pgconn: Any, budget: _Budget) -> PQGen[Result | None]:
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
