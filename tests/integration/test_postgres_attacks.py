"""Attacks on the read-only ``query`` path, against a real server, as a superuser.

The tenant connects as the superuser on purpose: the worst configuration an operator can choose,
where nothing but the guard and the READ ONLY transaction stands between the SQL and the server.
Every attack must fail with a clear error, change nothing (table t keeps its rows, the sequence
its value), and leave the pooled connection usable and still read-only for the next call. The
pool has one connection, so "the next call" runs on the very connection the attack used.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from mcp_tenants.errors import AccessDenied, QueryError, TenantsError
from mcp_tenants.postgres import guard, tools
from mcp_tenants.rawjson import decoded
from tests.integration.server_pool import server_pool as make_server_pool

TIMEOUT_MS = 5_000


@pytest.fixture(scope="module")
def database(postgres_service: Any) -> Iterator[dict[str, Any]]:
    """A fresh database with table t (3 rows), sequence seq and the dblink extension."""
    name = f"attacks_{secrets.token_hex(6)}"
    postgres_service.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = postgres_service.conninfo(dbname=name)
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2), (3); CREATE SEQUENCE seq; CREATE EXTENSION dblink"
        )
    try:
        yield info
    finally:
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pool(database: dict[str, Any]) -> Iterator[ConnectionPool]:
    pool = ConnectionPool(kwargs=database, min_size=1, max_size=1, reset=tools.reset_connection, open=True)
    yield pool
    pool.close()


@pytest.fixture
def run(pool: ConnectionPool) -> Callable[..., dict[str, Any]]:
    """``query`` on the pooled connection."""

    def call(text: str, timeout_ms: int = TIMEOUT_MS, **kwargs: Any) -> dict[str, Any]:
        with pool.connection() as conn:
            return decoded(
                tools.query(conn, text, [], max_rows=100, max_bytes=1 << 20, statement_timeout_ms=timeout_ms, **kwargs)
            )

    return call


@pytest.fixture
def unharmed(database: dict[str, Any], run: Callable[..., dict[str, Any]]) -> Iterator[None]:
    """After the test: nothing changed, and the next query runs, read-only, on the same pool."""
    yield
    with psycopg.connect(**database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
        assert conn.execute("SELECT last_value, is_called FROM seq").fetchone() == (1, False)
        assert conn.execute("SELECT to_regclass('t2')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)
    after = run(
        "SELECT current_setting('transaction_read_only'),"
        " current_setting('default_transaction_read_only'), count(*) FROM t"
    )
    assert after["rows"] == [["on", "off", 3]]
    with pytest.raises(AccessDenied):
        run("DELETE FROM t")


ATTACKS = [
    "SELECT 1; COMMIT; DROP TABLE t",
    "COMMIT; BEGIN READ WRITE; DELETE FROM t",
    "/*x*/ DELETE FROM t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH a AS (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) SELECT * FROM a",
    "SELECT * INTO t2 FROM t",
    "EXPLAIN ANALYZE DELETE FROM t",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_catalog.pg_read_file('/etc/passwd')",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT pg_catalog . /**/ \"pg_read_file\" ('/etc/passwd')",
    "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')",
    "SELECT 'a\\' , pg_read_file('/etc/passwd') --'",
    "SELECT lo_import('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('.')",
    "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$",
    "PREPARE p AS DELETE FROM t; EXECUTE p",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT nextval('seq')",
    "SELECT setval('seq', 100)",
    "SELECT txid_current()",
    "SELECT pg_advisory_lock(1)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SET ROLE postgres",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "LISTEN x",
    "CREATE TEMP TABLE x (i int)",
    "SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')",
    "SELECT rolpassword FROM pg_authid",
    "SELECT * FROM t FOR UPDATE",
    "TRUNCATE t",
    "VACUUM t",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_refused_and_changes_nothing(run: Callable[..., Any], unharmed: None, attack: str) -> None:
    with pytest.raises(AccessDenied, match=r"allowed|read-only"):
        run(attack)


def test_copy_to_program_runs_nothing(run: Callable[..., Any], unharmed: None, tmp_path: Path) -> None:
    marker = tmp_path / "x"
    with pytest.raises(AccessDenied):
        run(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
    assert not marker.exists()


def test_dblink_to_this_database_is_refused(run: Callable[..., Any], unharmed: None, database: dict[str, Any]) -> None:
    target = " ".join(f"{k}={database[k]}" for k in ("host", "port", "dbname", "user", "password"))
    with pytest.raises(AccessDenied, match=r"dblink_exec.*other servers"):
        run(f"SELECT dblink_exec('{target}', 'DROP TABLE t')")


def test_session_setting_attempt_does_not_reach_the_next_call(run: Callable[..., Any], unharmed: None) -> None:
    with pytest.raises(AccessDenied):
        run("SELECT set_config('default_transaction_read_only', 'off', false)")
    with pytest.raises(AccessDenied):
        run("DELETE FROM t")


def test_explain_analyze_of_a_delete_on_a_read_only_tenant(pool: ConnectionPool, unharmed: None) -> None:
    with pool.connection() as conn, pytest.raises(AccessDenied):
        tools.explain_query(conn, "DELETE FROM t", analyze=True, read_only=True, statement_timeout_ms=TIMEOUT_MS)


def test_long_sleep_is_cancelled_and_the_next_call_works(run: Callable[..., Any], unharmed: None) -> None:
    with pytest.raises(QueryError, match="statement timed out after 500 ms"):
        run("SELECT pg_sleep(600)", timeout_ms=500)
    assert run("SELECT 1")["rows"] == [[1]]


def test_the_server_reads_literals_like_the_guard_whatever_the_role_default(
    database: dict[str, Any], unharmed: None
) -> None:
    # With standard_conforming_strings off, the server would read 'a\' , pg_read_file(...) --'
    # as one literal while the guard's parser (and an attacker) sees a call, or the other way
    # round. The tools force the setting on, so both read the same text: the call is a call.
    info = {**database, "options": "-c standard_conforming_strings=off -c escape_string_warning=off"}
    with psycopg.connect(**info) as conn:
        assert conn.info.parameter_status("standard_conforming_strings") == "off"

        def run(text: str) -> dict[str, Any]:
            return decoded(tools.query(conn, text, [], max_rows=1, max_bytes=1000, statement_timeout_ms=TIMEOUT_MS))

        with pytest.raises(AccessDenied, match="pg_read_file"):
            run(r"SELECT 'a\' , pg_read_file('/etc/passwd') --'")
        assert run(r"SELECT 'a\', E'b\\'''")["rows"] == [["a\\", "b\\'"]]


# --- below the parser: the database layers hold on their own ----------------------------------


def _skip_statement_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let any single statement past the guard's statement rules (the parse still happens)."""
    monkeypatch.setattr(guard, "_require_read", lambda *args, **kwargs: None)


BELOW_THE_GUARD = [
    ("DELETE FROM t", QueryError),  # DECLARE CURSOR and the subquery accept only a query
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", QueryError),
    ("SELECT * INTO t2 FROM t", QueryError),
    ("SELECT nextval('seq')", AccessDenied),  # READ ONLY transaction
    ("SELECT set_config('transaction_read_only', 'off', true)", QueryError),
    (
        "SELECT set_config('default_transaction_read_only', 'off', false),"
        " set_config('work_mem', '77MB', false), 1 / 0",
        QueryError,
    ),
]


@pytest.mark.parametrize(("attack", "expected"), BELOW_THE_GUARD)
def test_without_the_guard_the_database_layers_still_refuse(
    run: Callable[..., Any], unharmed: None, monkeypatch: pytest.MonkeyPatch, attack: str, expected: type[TenantsError]
) -> None:
    _skip_statement_rules(monkeypatch)
    with pytest.raises(expected):
        run(attack, policy=None)


def test_without_the_policy_a_session_setting_dies_with_the_transaction(
    run: Callable[..., Any], unharmed: None
) -> None:
    run(
        "SELECT set_config('default_transaction_read_only', 'off', false), set_config('work_mem', '77MB', false)",
        policy=None,
    )
    assert run("SELECT current_setting('work_mem')")["rows"] != [["77MB"]]


# --- reset_connection: nothing survives into the next checkout --------------------------------


def test_reset_leaves_nothing_of_the_last_caller(
    pool: ConnectionPool, database: dict[str, Any], unharmed: None
) -> None:
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        conn.autocommit = True
        for statement in (
            "SELECT pg_advisory_lock(42)",
            "SET work_mem = '77MB'",
            "SET ROLE pg_monitor",
            "PREPARE leftover AS SELECT 1",
            "CREATE TEMP TABLE leftover (i int)",
            "LISTEN leftover",
            "DECLARE leftover CURSOR WITH HOLD FOR SELECT 1",
        ):
            conn.execute(statement)
        conn.autocommit = False
        conn.execute("SELECT 1")  # and a transaction left open
    with pool.connection() as conn:
        assert conn.info.backend_pid == pid  # the same connection, reset
        row = conn.execute(
            "SELECT current_setting('work_mem'), current_user = session_user,"
            " (SELECT count(*) FROM pg_prepared_statements),"
            " (SELECT count(*) FROM pg_cursors),"
            " (SELECT count(*) FROM pg_listening_channels()),"
            " to_regclass('pg_temp.leftover')"
        ).fetchone()
        conn.rollback()
    assert row == ("4MB", True, 0, 0, 0, None)
    with psycopg.connect(**database) as other:
        assert other.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


# --- the server's own pool: autocommit connections, each call sending its own BEGIN -----------


@pytest.fixture(scope="module")
def server_pool(database: dict[str, Any]) -> Iterator[ConnectionPool]:
    """One connection, in a pool built as the server builds it (``PostgresBackend.open``)."""
    with make_server_pool(database, "attacks") as pool:
        yield pool


@pytest.fixture
def run_on_server_pool(server_pool: ConnectionPool) -> Iterator[Callable[..., dict[str, Any]]]:
    """``query`` on the server's pool; afterwards its connection must still be read-only."""

    def call(text: str, **kwargs: Any) -> dict[str, Any]:
        with server_pool.connection() as conn:
            return decoded(
                tools.query(conn, text, [], max_rows=100, max_bytes=1 << 20, statement_timeout_ms=TIMEOUT_MS, **kwargs)
            )

    yield call
    with server_pool.connection() as conn:
        assert conn.autocommit is True
    after = call(
        "SELECT current_setting('transaction_read_only'),"
        " current_setting('default_transaction_read_only'),"
        " current_setting('work_mem') <> '77MB', count(*) FROM t"
    )
    assert after["rows"] == [["on", "off", True, 3]]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_refused_on_the_servers_pool(
    run_on_server_pool: Callable[..., Any], unharmed: None, attack: str
) -> None:
    with pytest.raises(AccessDenied, match=r"allowed|read-only"):
        run_on_server_pool(attack)


@pytest.mark.parametrize(("attack", "expected"), BELOW_THE_GUARD)
def test_without_the_guard_the_database_layers_hold_on_the_servers_pool(
    run_on_server_pool: Callable[..., Any],
    unharmed: None,
    monkeypatch: pytest.MonkeyPatch,
    attack: str,
    expected: type[TenantsError],
) -> None:
    _skip_statement_rules(monkeypatch)
    with pytest.raises(expected):
        run_on_server_pool(attack, policy=None)


def test_without_the_policy_a_session_setting_dies_with_the_transaction_on_the_servers_pool(
    run_on_server_pool: Callable[..., Any], unharmed: None
) -> None:
    run_on_server_pool(
        "SELECT set_config('default_transaction_read_only', 'off', false), set_config('work_mem', '77MB', false)",
        policy=None,
    )
