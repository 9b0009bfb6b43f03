"""Leave nothing of the last caller on a pooled connection, without a round trip of its own.

What ``DISCARD ALL`` does, less two parts that would drop this package's own prepared
statements (``wire.Named``: the settings and the function check, whose plans cost more than
running them): ``DEALLOCATE ALL`` runs only when a prepared statement that is not ours exists,
and ``DISCARD PLANS`` never (it drops cached plans, which hold nothing of a caller). So cursors,
role, session settings, LISTEN registrations, advisory locks, temporary objects and sequence
caches all go, every time. "Ours" is a statement with one of our names that SQL did not create
(``from_sql`` false): a caller can ``DEALLOCATE`` ours and ``PREPARE`` one under the same name,
but only with SQL, and then it is someone else's and goes.

Connections to other servers live in the session too, outside what ``DISCARD ALL`` resets:
postgres_fdw's cache of remote sessions (a read of a foreign table opens one, with its own
settings and locks, for the next caller) and dblink's named connections. The reset asks which of
the two extensions the database has; where one is, every later reset of that connection ends
their connections (``postgres_fdw_disconnect_all()``, PostgreSQL 14 and newer; dblink's named
connections), and the first reset that finds one reports the connection not clean, so that the
pool's reset ends them at once.

The statements go in a ``wire.Batch``: at the end of a tool call's last round trip, after its
ROLLBACK (``queue``), so that the call hands the pool a connection that needs nothing more
(``mark_clean``); or on their own when the pool takes back a connection that is not known to be
clean (``reset_connection``).
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg
from psycopg import pq

from mcp_tenants.postgres.wire import NAMES, Batch, Named, Result, set_held

Connection = psycopg.Connection[Any]

_IDLE = pq.TransactionStatus.IDLE
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
# DISCARD ALL's parts, each on its own (DISCARD ALL refuses to run inside the implicit
# transaction of a pipeline), then the prepared statements that exist.
STATEMENTS = (
    b"CLOSE ALL",
    b"SET SESSION AUTHORIZATION DEFAULT",
    b"RESET ALL",
    b"UNLISTEN *",
    b"SELECT pg_catalog.pg_advisory_unlock_all()",
    b"DISCARD TEMP",
    b"DISCARD SEQUENCES",
)
PREPARED = b"SELECT name, from_sql FROM pg_catalog.pg_prepared_statement()"
#: The extensions whose connections outlive DISCARD ALL, with their schemas and versions
#: (postgres_fdw ends its connections with postgres_fdw_disconnect_all from version 1.1).
EXTENSIONS = Named(
    "mcp_remote_extensions",
    "SELECT e.extname, n.nspname, e.extversion FROM pg_catalog.pg_extension e"
    " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
    " WHERE e.extname OPERATOR(pg_catalog.=) ANY ('{postgres_fdw,dblink}'::pg_catalog.name[])",
)

# Per connection, the statements that end its connections to other servers (see above); a
# connection not in it has not been asked yet. One thread uses a connection at a time.
_remote: weakref.WeakKeyDictionary[Connection, tuple[bytes, ...]] = weakref.WeakKeyDictionary()

# Connections whose last round trip ended with a complete reset and that ran nothing since. A
# tool call marks its connection, which one thread uses at a time (the pool's rule); the pool
# takes the mark when the call gives the connection back (``tenant.TenantPool``), and
# ``reset_connection`` drops it.
_clean: weakref.WeakSet[Connection] = weakref.WeakSet()


def queue(batch: Batch) -> tuple[int, int]:
    """Add the reset to ``batch``, after the statements already in it, in the same pipeline
    segment (it runs only if they all succeeded); (first, last) index of its results."""
    first = len(batch)
    for sql in (*STATEMENTS, *_remote.get(batch.conn, ())):
        batch.query(sql)
    batch.execute(EXTENSIONS)
    return first, batch.query(PREPARED)


def _ends_remote(found: Result | None) -> tuple[bytes, ...]:
    """Statements that end the connections of the extensions ``EXTENSIONS`` found."""
    ends: list[bytes] = []
    for row in range(found.ntuples if found is not None else 0):
        name, schema, version = (found.get_value(row, col) or b"" for col in range(3))  # type: ignore[union-attr]
        quoted = b'"' + schema.replace(b'"', b'""') + b'"'
        if name == b"postgres_fdw" and version != b"1.0":
            ends.append(b"SELECT " + quoted + b".postgres_fdw_disconnect_all()")
        elif name == b"dblink":
            named = b"pg_catalog.unnest(" + quoted + b".dblink_get_connections()) AS c"
            ends.append(b"SELECT " + quoted + b".dblink_disconnect(c) FROM " + named)
    return tuple(ends)


def finish(conn: Connection, batch: Batch, results: list[Result | None], span: tuple[int, int]) -> bool:
    """After ``run``: True when the reset ran and left nothing that needs ``DEALLOCATE ALL``
    or the ending of connections to other servers."""
    first, last = span
    found = results[last]
    if found is None or found.status != _TUPLES_OK or batch.first_error(results[first:last]) is not None:
        return False
    ends = _ends_remote(results[last - 1])
    if ends != _remote.get(conn, ()):
        _remote[conn] = ends  # the next reset ends them (this one did not know of them)
        if ends:
            return False
    ours: set[str] = set()
    others = False
    for row in range(found.ntuples):
        name = (found.get_value(row, 0) or b"").decode()
        if name in NAMES and found.get_value(row, 1) == b"f":
            ours.add(name)
        else:
            others = True
    set_held(conn, set() if others else ours)
    return not others


def run_and_end(batch: Batch) -> list[Result | None]:
    """Run ``batch`` with ROLLBACK and the reset after its statements; raise the first error of
    its own statements. Marks the connection clean when the reset went through: the caller must
    then send nothing more before the connection goes back to its pool."""
    batch.query(b"ROLLBACK")
    span = queue(batch)
    results = batch.run()
    batch.check(results[: span[0]])
    if finish(batch.conn, batch, results, span):
        mark_clean(batch.conn)
    return results


def mark_clean(conn: Connection) -> None:
    """``conn`` was just reset and will run nothing more before it goes back to its pool."""
    _clean.add(conn)


def is_clean(conn: Connection) -> bool:
    """True if ``conn`` was reset at the end of its last call (the mark stays)."""
    return conn in _clean


def take_clean(conn: Connection) -> bool:
    """True (once) if ``conn`` was reset at the end of its last call and is idle."""
    if conn not in _clean:
        return False
    _clean.discard(conn)
    return not conn.closed and conn.info.transaction_status == _IDLE


def reset_connection(conn: Connection) -> None:
    """Pool ``reset`` callback: roll back what is open, then the reset, in one round trip.

    Raises psycopg's error when the reset fails (the pool then discards the connection).
    """
    _clean.discard(conn)
    if conn.closed:
        return
    if conn.read_only is not None:
        conn.read_only = None
    batch = Batch(conn)
    if conn.info.transaction_status != _IDLE:
        batch.query(b"ROLLBACK")
    span = queue(batch)
    results = batch.run()
    batch.check(results)
    if finish(conn, batch, results, span):
        return
    # A prepared statement that is not ours (DEALLOCATE ALL, which takes ours too), or
    # connections to other servers this reset did not know of yet.
    again = Batch(conn)
    again.query(b"DEALLOCATE ALL")
    for sql in _remote.get(conn, ()):
        again.query(sql)
    again.check(again.run())
    set_held(conn, set())
