"""A PostgreSQL tenant: the connection pool opened for it on first use (its config: config.py)."""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.errors import TenantBusy, TenantNotFound, TenantUnreachable
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.postgres.reset import is_clean, reset_connection, take_clean
from mcp_tenants.postgres.targets import pinned_connection_class
from mcp_tenants.registry import TenantManager
from mcp_tenants.settings import Settings

Connection = psycopg.Connection[Any]

logger = logging.getLogger(__name__)

#: A pooled connection idle for longer than this gets a round trip when it is checked out.
CHECK_AFTER_IDLE_S = 5.0


# (words in libpq's or the server's message, the cause in a person's words, the setting to fix)
_CAUSES = (
    ("password authentication failed", "the password was refused", "PASSWORD", "password"),
    ("no password supplied", "the server wants a password", "PASSWORD", "password"),
    ("does not exist", "{detail}", "DATABASE", "database"),
    ("role", "{detail}", "USER", "user"),
    ("pg_hba.conf", "the server's pg_hba.conf has no entry for this host, user and database", "HOST", "host"),
    (
        "connection refused",
        "nothing accepts connections there (the database is down, or the port is wrong)",
        "PORT",
        "port",
    ),
    ("could not translate host name", "the host name does not resolve", "HOST", "host"),
    ("name or service not known", "the host name does not resolve", "HOST", "host"),
    ("timeout expired", "no answer within the connect timeout (host down or unreachable)", "HOST", "host"),
    ("ssl", "{detail}", "SSLMODE", "sslmode"),
    ("too many connections", "the server has no free connection slots; retry later", "", ""),
    ("starting up", "the database is starting up; retry in a moment", "", ""),
    ("shutting down", "the database is shutting down", "", ""),
)


def describe_connect_error(config: PostgresTenant, exc: Exception, *, registering: bool = False) -> str:
    """A connection failure as a message that names the cause and what to fix, never the password.

    What to fix depends on where the tenant comes from: the variable of an environment tenant,
    the argument of the registration being checked (``registering``), or registering it again.

    Not masked here: libpq echoes the caller's own user and database names, and masking them with
    every tenant's secrets would be an oracle; the server core masks the call's own secrets."""
    text = str(exc).strip()
    detail = text.splitlines()[-1] if text else type(exc).__name__
    detail = detail.removeprefix("FATAL:").strip()
    where = (
        f"tenant {config.tenant_id!r}: cannot connect to PostgreSQL at {config.host}:{config.port} "
        f"database {config.database!r} as {config.user!r}"
    )
    lowered = text.lower()
    for words, cause, variable, argument in _CAUSES:
        if words in lowered:
            fix = _fix(config, variable, argument, registering) if variable else ""
            return f"{where}: {cause.format(detail=detail)}{fix}"
    return f"{where}: {detail}"


def _fix(config: PostgresTenant, variable: str, argument: str, registering: bool) -> str:
    if config.origin == "env":
        return f"; fix POSTGRES_TENANT_{config.tenant_id.upper()}_{variable} and restart the server"
    if registering:
        return f"; check the {argument} " + ("argument" if config.origin == "tool" else "field")
    how = "register_tenant" if config.origin == "tool" else "mcp-tenants add"
    return f"; register the tenant again ({how}) with the right {argument}"


# When each pooled connection last went idle: connected, or reset after a call. The pool's worker
# thread writes and callers' threads read, each one dict operation (atomic); a connection that is
# closed and collected drops out on its own.
_idle_since: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()


def check_connection(conn: Connection) -> None:
    """Pool ``check``: a round trip only for a connection that may have died while idle.

    A server that ends a connection (restart, crash, ``pg_terminate_backend``, idle timeout)
    sends a FATAL message or at least end-of-file, so an idle connection with something to read
    is suspect; so is one idle for longer than ``CHECK_AFTER_IDLE_S`` (its host may have gone
    without a word). Those get psycopg_pool's check, an empty query, and the pool replaces them
    if it fails; the others are handed out without a round trip.
    """
    idle_since = _idle_since.get(conn)
    if idle_since is None or monotonic() - idle_since > CHECK_AFTER_IDLE_S or _readable(conn):
        ConnectionPool.check_connection(conn)


def _readable(conn: Connection) -> bool:
    # poll, not select: a process with many tenants can hold descriptors past FD_SETSIZE.
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _mark_idle(conn: Connection) -> None:
    """Pool ``configure`` callback: a new connection is idle from now."""
    _idle_since[conn] = monotonic()


def _reset_connection(conn: Connection) -> None:
    """Pool ``reset`` callback: ``reset.reset_connection``, unless the call's own last round trip
    did it (``reset.mark_clean``); then idle from now."""
    if not take_clean(conn):
        reset_connection(conn)
    _idle_since[conn] = monotonic()


class TenantPool(ConnectionPool[psycopg.Connection[Any]]):
    """A connection pool that knows which connections are lent out, so shutdown can cancel them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before the base class starts its workers. The lock guards only the set.
        self._lent: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._lent_lock = threading.Lock()
        # The last attempt to connect failed with this (None: it succeeded). One reference
        # assignment, read and written without a lock.
        self._connect_error: Exception | None = None
        super().__init__(*args, **kwargs)

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        """A connection; when the pool has none yet, or the last attempt to connect failed, and
        none is idle, this thread connects itself, so that the caller gets the real cause at once (not a pool timeout),
        or a connection at once when the database is back (not after the pool's backoff)."""
        first = self._nconns == 0 or self._connect_error is not None
        conn = self._connect_now() if first and not self._pool else None
        if conn is None:
            conn = super().getconn(timeout)
        with self._lent_lock:
            self._lent.add(conn)
        return conn

    def _connect(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        try:
            conn = super()._connect(timeout)
        except Exception as exc:
            self._connect_error = exc
            raise
        self._connect_error = None
        return conn

    def _connect_now(self) -> psycopg.Connection[Any] | None:
        """Connect in the caller's thread; raises the failure. None when the pool is full."""
        conn = self._connect()
        with self._lock:  # the pool's own lock guards its count of connections
            adopt = self._nconns < self.max_size
            if adopt:
                self._nconns += 1
        if not adopt:
            conn.close()
            return None
        return conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        with self._lent_lock:
            self._lent.discard(conn)
        super().putconn(conn)

    def _putconn(self, conn: psycopg.Connection[Any], from_getconn: bool) -> None:
        # A connection the call already reset needs no round trip: it goes back in this thread
        # (the reset callback finds the mark), not through the pool's worker thread.
        if is_clean(conn):
            self._return_connection(conn, from_getconn=from_getconn)
        else:
            super()._putconn(conn, from_getconn)

    def cancel_running(self) -> None:
        """Ask PostgreSQL to cancel whatever the lent connections are running (for shutdown)."""
        with self._lent_lock:
            lent = list(self._lent)
        for conn in lent:  # outside the lock: each cancel is a network round trip
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=2)


class PostgresBackend:
    """Opens, checks and closes PostgreSQL connection pools for the TenantManager."""

    server = "postgres"
    config_type = PostgresTenant

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets = TargetPolicy.from_settings(settings)

    def connection_class(self, config: PostgresTenant) -> type[Connection]:
        """Tool-registered tenants connect only to checked addresses, on every connect."""
        return psycopg.Connection if config.trusted else pinned_connection_class(self.targets)

    def open(self, config: PostgresTenant) -> TenantPool:
        """A pool that connects lazily, checks connections on checkout and resets them on return."""
        return TenantPool(
            # Autocommit: every tool call sends its own BEGIN (see transactions.transaction).
            # No automatic prepared statements: DISCARD ALL drops them on every return.
            kwargs={
                **config.conninfo(connect_timeout=self.settings.connect_timeout_s),
                "autocommit": True,
                "prepare_threshold": None,
            },
            min_size=0,
            max_size=self.settings.pool_max_size,
            # Checking on checkout means a PostgreSQL restart costs a reconnect, not a failed call.
            check=check_connection,
            configure=_mark_idle,
            reset=_reset_connection,
            timeout=self.settings.pool_timeout_ms / 1000,
            max_idle=300,
            num_workers=1,
            name=f"tenant-{config.tenant_id}",
            connection_class=self.connection_class(config),
            open=True,
        )

    def interrupt(self, pool: TenantPool) -> None:
        pool.cancel_running()

    def close(self, pool: TenantPool) -> None:
        pool.close(timeout=5)

    def verify(self, config: PostgresTenant) -> None:
        try:
            conninfo = config.conninfo(connect_timeout=self.settings.connect_timeout_s)
            with self.connection_class(config).connect(**conninfo) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise TenantUnreachable(describe_connect_error(config, exc, registering=True)) from None


@contextmanager
def checkout(
    manager: TenantManager[PostgresTenant, TenantPool], tenant_id: str
) -> Iterator[tuple[PostgresTenant, Connection]]:
    """The tenant's config and a connection from its pool, with failures a person can act on."""
    for _attempt in range(3):
        config, pool = manager.resource(tenant_id)
        try:
            conn = pool.getconn()
        except PoolClosed:
            continue  # evicted or replaced between lookup and checkout: look it up again
        except PoolTimeout:
            raise TenantBusy(
                f"tenant {tenant_id!r} is busy: all {pool.max_size} connections stayed in use for "
                f"{pool.timeout:g} s, or the database cannot be reached; retry later"
            ) from None
        except psycopg.OperationalError as exc:
            raise TenantUnreachable(describe_connect_error(config, exc)) from None
        try:
            yield config, conn
        finally:
            pool.putconn(conn)
        return
    raise TenantNotFound(f"tenant {tenant_id!r} was removed or changed during the call; retry")
