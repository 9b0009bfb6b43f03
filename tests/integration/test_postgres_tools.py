"""The PostgreSQL tool functions against a real server, through a real psycopg_pool pool.

One database per module (a fresh owner role, like a tenant's), built once: a schema with
foreign keys both ways, indexes, views, a sequence, a function, an enum and many column types.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql
from psycopg_pool import ConnectionPool

from mcp_tenants.errors import AccessDenied, InvalidInput, QueryError, TenantUnreachable
from mcp_tenants.postgres import tools
from mcp_tenants.rawjson import decoded
from tests.integration.server_pool import server_pool as make_server_pool

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_numbers;
CREATE SCHEMA sales;
CREATE TABLE customers (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text DEFAULT 'anonymous'
);
COMMENT ON COLUMN customers.email IS 'login address';
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    total numeric(12, 2), placed date, created timestamp, seen timestamptz, wait interval,
    ref uuid, meta json, doc jsonb, blob bytea, qty int[], tags text[], feeling mood, note text,
    big bigint, ratio double precision, during tstzrange, addr inet
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE TABLE order_lines (order_id bigint REFERENCES orders (id), line int, item text,
                          PRIMARY KEY (order_id, line));
CREATE TABLE line_notes (id int PRIMARY KEY, order_id bigint, line int, body text,
                         CONSTRAINT line_notes_line_fk FOREIGN KEY (line, order_id)
                             REFERENCES order_lines (line, order_id));
CREATE UNIQUE INDEX order_lines_item_idx ON order_lines (lower(item));
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders
    GROUP BY customer_id;
CREATE TABLE events (at date NOT NULL, what text) PARTITION BY RANGE (at);
CREATE TABLE "Mixed Case" (id int);
CREATE TABLE sales.regions (code text PRIMARY KEY);
CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + 1';
INSERT INTO customers (email, name) VALUES ('ann@example.com', 'Ann'), ('bob@example.com', NULL);
INSERT INTO orders (customer_id, total, placed, created, seen, wait, ref, meta, doc, blob, qty,
                    tags, feeling, note, big, ratio, during, addr)
VALUES (1, 1234.50, '2024-02-29', '2024-02-29 13:14:15.5', '2024-02-29 13:14:15+02',
        '1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"k": [1, 2]}', '{"b": true, "n": null}', '\\xdeadbeef', '{1,2,3}', '{a,"b c"}',
        'happy', 'it''s 50% off; really', 9007199254740993, 'NaN',
        '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '192.168.0.1/24'),
       (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL);
INSERT INTO order_lines VALUES (1, 1, 'apple'), (1, 2, 'pear');
ANALYZE customers;
"""

TIMEOUT_MS = 5_000


@pytest.fixture(scope="module")
def database(postgres_service: Any) -> Iterator[dict[str, Any]]:
    """A fresh database owned by a fresh login role, with SCHEMA loaded; dropped afterwards."""
    suffix = secrets.token_hex(6)
    owner, name, password = f"owner_{suffix}", f"tools_{suffix}", secrets.token_urlsafe(16)
    outsider = f"outsider_{suffix}"
    for role in (owner, outsider):
        postgres_service.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
    postgres_service.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    info = {**postgres_service.conninfo(), "dbname": name, "user": owner, "password": password}
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(SCHEMA)
    try:
        yield {"owner": info, "outsider": {**info, "user": outsider}}
    finally:
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in (owner, outsider):
            postgres_service.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def make_pool(conninfo: dict[str, Any]) -> ConnectionPool:
    # One connection: every call reuses it, so whatever a call leaves behind, the next one sees.
    return ConnectionPool(kwargs=conninfo, min_size=1, max_size=1, reset=tools.reset_connection, open=True)


@pytest.fixture(scope="module")
def owner_pool(database: dict[str, Any]) -> Iterator[ConnectionPool]:
    pool = make_pool(database["owner"])
    yield pool
    pool.close()


@pytest.fixture
def call(owner_pool: ConnectionPool) -> Callable[..., Any]:
    """Run a tool function on a pooled connection and check that it leaves the connection idle."""

    def run(fn: Callable[..., Any], *args: Any, pool: ConnectionPool = owner_pool, **kwargs: Any) -> Any:
        with pool.connection() as conn:
            try:
                return fn(conn, *args, **kwargs)
            finally:
                assert conn.info.transaction_status == pq.TransactionStatus.IDLE

    return run


def query(
    call: Callable[..., Any],
    text: str,
    params: list[Any] | None = None,
    *,
    max_rows: int = 1000,
    max_bytes: int = 1 << 20,
    timeout_ms: int = TIMEOUT_MS,
    **kwargs: Any,
) -> dict[str, Any]:
    result = call(
        tools.query,
        text,
        params or [],
        max_rows=max_rows,
        max_bytes=max_bytes,
        statement_timeout_ms=timeout_ms,
        **kwargs,
    )
    return decoded(result)


# --- query: values and columns ---------------------------------------------------------------


def test_query_returns_every_column_type_as_json(call: Callable[..., Any]) -> None:
    result = query(call, "SELECT * FROM orders ORDER BY id")
    row = dict(zip([c["name"] for c in result["columns"]], result["rows"][0], strict=True))
    assert row == {
        "id": 1,
        "customer_id": 1,
        "total": 1234.5,
        "placed": "2024-02-29",
        "created": "2024-02-29T13:14:15.5",
        "seen": "2024-02-29T11:14:15+00:00",
        "wait": "P1Y2M3DT4H5M6S",
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "meta": {"k": [1, 2]},
        "doc": {"b": True, "n": None},
        "blob": "3q2+7w==",
        "qty": [1, 2, 3],
        "tags": ["a", "b c"],
        "feeling": "happy",
        "note": "it's 50% off; really",
        "big": "9007199254740993",
        "ratio": "NaN",
        "during": {
            "lower": "2024-01-01T00:00:00+00:00",
            "upper": "2024-02-01T00:00:00+00:00",
            "bounds": "[)",
            "empty": False,
        },
        "addr": "192.168.0.1/24",
    }
    assert all(value is None for value in result["rows"][1][2:])
    json.dumps(result, allow_nan=False)  # strictly valid JSON


def test_query_reports_sql_type_names(call: Callable[..., Any]) -> None:
    result = query(call, "SELECT total, seen, qty, feeling, wait, add_one(1) AS n FROM orders")
    assert result["columns"] == [
        {"name": "total", "type": "numeric(12,2)"},
        {"name": "seen", "type": "timestamp with time zone"},
        {"name": "qty", "type": "integer[]"},
        {"name": "feeling", "type": "mood"},
        {"name": "wait", "type": "interval"},
        {"name": "n", "type": "integer"},
    ]


def test_values_python_cannot_hold_keep_postgres_text(call: Callable[..., Any]) -> None:
    result = query(
        call,
        "SELECT 'infinity'::date, '-infinity'::timestamptz, '0044-03-15 BC'::date,"
        " 'NaN'::numeric, 0.1::numeric, 12345678901234567890.5::numeric,"
        " '-1 day -02:00'::interval",
    )
    assert result["rows"] == [
        ["infinity", "-infinity", "0044-03-15 BC", "NaN", 0.1, "12345678901234567890.5", "P-1DT-2H"]
    ]


def test_query_binds_dollar_params_and_keeps_percent_literal(call: Callable[..., Any]) -> None:
    result = query(
        call,
        "SELECT $1::int + 1 AS n, 'a%b' AS pct, email FROM customers WHERE email LIKE $2 || '%' AND name = $3",
        [41, "ann@", "Ann"],
    )
    assert result["rows"] == [[42, "a%b", "ann@example.com"]]


def test_query_params_of_every_json_type(call: Callable[..., Any]) -> None:
    result = query(
        call,
        "SELECT $1::text, $2::int, $3::float8, $4::bool, $5::text IS NULL, $6::int[], ($7::jsonb)->>'k'",
        ["s", 7, 1.5, True, None, [1, 2], {"k": "v"}],
    )
    assert result["rows"] == [["s", 7, 1.5, True, True, [1, 2], "v"]]


def test_trailing_semicolon_and_comment_are_accepted(call: Callable[..., Any]) -> None:
    assert query(call, "SELECT 1 AS one; -- done")["rows"] == [[1]]


def test_query_with_no_rows_still_describes_columns(call: Callable[..., Any]) -> None:
    result = query(call, "SELECT id, email FROM customers WHERE false")
    assert result == {
        "columns": [{"name": "id", "type": "integer"}, {"name": "email", "type": "text"}],
        "rows": [],
        "row_count": 0,
        "truncated": False,
    }


def test_query_runs_read_only_with_its_settings_and_keeps_autocommit(
    database: dict[str, Any], call: Callable[..., Any]
) -> None:
    text = (
        "SELECT current_setting('transaction_read_only'), current_setting('statement_timeout'),"
        " current_setting('lock_timeout'), current_setting('IntervalStyle'),"
        " current_setting('DateStyle')"
    )
    expected = ["on", "iso_8601", "ISO, YMD"]

    def settings(result: dict[str, Any]) -> list[Any]:
        (read_only, statement_timeout, lock_timeout, *formats), *_ = result["rows"]
        # The statement gets what is left of the call's deadline: at most the limit.
        for timeout in (statement_timeout, lock_timeout):
            assert timeout == "5s" or 4000 < int(timeout.removesuffix("ms")) < 5000
        return [read_only, *formats]

    assert settings(query(call, text)) == expected  # a connection in a transaction-per-call mode
    for autocommit in (False, True):
        with psycopg.connect(**database["owner"], autocommit=autocommit) as conn:
            result = decoded(tools.query(conn, text, [], max_rows=1, max_bytes=1000, statement_timeout_ms=TIMEOUT_MS))
            assert settings(result) == expected
            assert conn.autocommit is autocommit
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE


def test_type_names_are_the_same_when_remembered(call: Callable[..., Any]) -> None:
    text = "SELECT 'x'::varchar(7) AS v, 1.5::numeric(4, 1) AS n, now() AS t, '{}'::int[] AS a"
    first, second = query(call, text)["columns"], query(call, text)["columns"]
    assert (
        first
        == second
        == [
            {"name": "v", "type": "character varying(7)"},
            {"name": "n", "type": "numeric(4,1)"},
            {"name": "t", "type": "timestamp with time zone"},
            {"name": "a", "type": "integer[]"},
        ]
    )


def test_a_renamed_type_is_reported_by_its_new_name(call: Callable[..., Any]) -> None:
    # Only built-in type names are remembered: a type of the database's own can change.
    def run(text: str) -> Any:
        return call(tools.execute, text, [], statement_timeout_ms=TIMEOUT_MS)

    run("CREATE TYPE shade AS ENUM ('dark')")
    try:
        assert query(call, "SELECT 'dark'::shade")["columns"][0]["type"] == "shade"
        run("ALTER TYPE shade RENAME TO tone")
        assert query(call, "SELECT 'dark'::tone")["columns"][0]["type"] == "tone"
    finally:
        run("DROP TYPE IF EXISTS shade, tone")


# --- query: caps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_rows", "count", "truncated"), [(10, 10, True), (50, 50, False), (51, 50, False), (1, 1, True)]
)
def test_query_row_cap_sets_truncated(call: Callable[..., Any], max_rows: int, count: int, truncated: bool) -> None:
    result = query(call, "SELECT g FROM generate_series(1, 50) g", max_rows=max_rows)
    assert (result["row_count"], result["truncated"]) == (count, truncated)
    assert result["rows"] == [[g] for g in range(1, count + 1)]


def test_query_byte_cap_keeps_the_result_under_max_bytes(call: Callable[..., Any]) -> None:
    result = query(call, "SELECT g, repeat('x', 1000) FROM generate_series(1, 100) g", max_bytes=10_000)
    assert result["truncated"] is True
    assert 5 <= result["row_count"] < 10
    assert len(json.dumps(result, separators=(",", ":"))) <= 10_000


def test_query_value_wider_than_the_byte_cap_comes_back_cut_and_marked(call: Callable[..., Any]) -> None:
    result = query(call, "SELECT 1 AS n, repeat('x', 5000) AS wide", max_bytes=1000)
    assert result["truncated"] is True
    assert result["cut"] == [[0, 1]]
    (n, wide), *_ = result["rows"]
    assert n == 1 and 0 < len(wide) < 1000 and set(wide) == {"x"}
    assert len(json.dumps(result, separators=(",", ":"))) <= 1000


def test_query_streams_a_huge_result_instead_of_materializing_it(call: Callable[..., Any]) -> None:
    # Ten billion rows: any client-side or server-side materialization would hit the timeout.
    result = query(call, "SELECT generate_series(1, 10000000000) AS g", max_rows=1000, timeout_ms=10_000)
    assert (result["row_count"], result["truncated"]) == (1000, True)
    assert result["rows"][-1] == [1000]


def test_more_rows_than_one_round_trip_carries_come_through_a_cursor_capped_the_same(call: Callable[..., Any]) -> None:
    text = "SELECT g, repeat('x', 10) FROM generate_series(1, 25000) g"
    result = query(call, text, max_rows=20_000)
    assert (result["row_count"], result["truncated"]) == (20_000, True)
    assert result["rows"][0] == [1, "x" * 10] and result["rows"][-1] == [20_000, "x" * 10]
    small = query(call, text, max_rows=25_000, max_bytes=100_000)
    assert small["truncated"] is True and 0 < small["row_count"] < 25_000
    assert len(json.dumps(small, separators=(",", ":"))) <= 100_000
    after = query(
        call,
        "SELECT (SELECT count(*) FROM pg_cursors WHERE name = 'mcp_rows'), current_setting('transaction_read_only')",
    )
    assert after["rows"] == [[0, "on"]]  # the cursor went with the transaction; the next call is clean


# --- query: errors -----------------------------------------------------------------------------


def test_syntax_error_shows_position_and_excerpt(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError) as err:
        query(call, "SELECT id\nFORM customers")
    message = str(err.value)
    assert 'syntax error at or near "customers" (at position 16)' in message
    assert "  FORM customers\n       ^" in message
    assert "DECLARE" not in message


def test_unknown_table_and_column_are_named(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match='relation "nope" does not exist'):
        query(call, "SELECT * FROM nope")
    with pytest.raises(QueryError, match='column "nope" does not exist'):
        query(call, "SELECT nope FROM customers")


def test_wrong_number_of_params_is_a_query_error(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError):
        query(call, "SELECT $1::int, $2::int", [1])


def test_permission_denied_for_a_role_without_grants(database: dict[str, Any], call: Callable[..., Any]) -> None:
    pool = make_pool(database["outsider"])
    try:
        with pytest.raises(QueryError, match="permission denied for table customers"):
            query(call, "SELECT * FROM customers", pool=pool)
        assert query(call, "SELECT 1", pool=pool)["rows"] == [[1]]
    finally:
        pool.close()


def test_statement_timeout_is_reported_and_the_connection_serves_the_next_call(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match="statement timed out after 200 ms"):
        query(call, "SELECT pg_sleep(5)", timeout_ms=200)
    assert query(call, "SELECT current_setting('statement_timeout')")["rows"] != [["200ms"]]
    assert query(call, "SELECT 1")["rows"] == [[1]]


def test_runtime_error_is_a_query_error(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match="division by zero"):
        query(call, "SELECT 1 / 0")


@pytest.mark.parametrize("limits", [{"max_rows": 0}, {"max_bytes": -1}, {"timeout_ms": 0}])
def test_nonpositive_limits_are_invalid_input(call: Callable[..., Any], limits: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        query(call, "SELECT 1", **limits)


def test_lost_connection_is_tenant_unreachable(database: dict[str, Any], postgres_service: Any) -> None:
    with psycopg.connect(**database["owner"]) as conn:
        pid = conn.info.backend_pid
        postgres_service.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(TenantUnreachable) as err:
            tools.query(conn, "SELECT 1", [], max_rows=1, max_bytes=1000, statement_timeout_ms=TIMEOUT_MS)
    assert str(err.value) == "connection to the database was lost; retry"


# --- execute -----------------------------------------------------------------------------------


def test_execute_commits_and_reports_the_command_tag(call: Callable[..., Any]) -> None:
    result = call(
        tools.execute,
        "INSERT INTO customers (email) VALUES ($1), ($2)",
        ["c1@example.com", "50%@example.com"],
        statement_timeout_ms=TIMEOUT_MS,
    )
    assert result == {"status": "INSERT 0 2", "rowcount": 2}
    result = call(
        tools.execute,
        "DELETE FROM customers WHERE email LIKE 'c1@%' OR email = $1",
        ["50%@example.com"],
        statement_timeout_ms=TIMEOUT_MS,
    )
    assert result == {"status": "DELETE 2", "rowcount": 2}
    assert query(call, "SELECT count(*) FROM customers")["rows"] == [[2]]


def test_execute_ddl_has_no_rowcount(call: Callable[..., Any]) -> None:
    result = call(tools.execute, "CREATE TABLE scratch (i int)", [], statement_timeout_ms=TIMEOUT_MS)
    assert result == {"status": "CREATE TABLE", "rowcount": None}
    call(tools.execute, "DROP TABLE scratch", [], statement_timeout_ms=TIMEOUT_MS)


def test_execute_failure_commits_nothing(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match=r"(?s)duplicate key.*Detail: Key \(email\)"):
        call(
            tools.execute,
            "INSERT INTO customers (email) VALUES ('new@example.com'), ('ann@example.com')",
            [],
            statement_timeout_ms=TIMEOUT_MS,
        )
    assert query(call, "SELECT count(*) FROM customers")["rows"] == [[2]]


def test_execute_runs_exactly_one_statement(call: Callable[..., Any]) -> None:
    with pytest.raises(AccessDenied, match="one statement"):
        call(
            tools.execute, "UPDATE customers SET name = 'x'; DROP TABLE customers", [], statement_timeout_ms=TIMEOUT_MS
        )
    assert query(call, "SELECT count(*) FROM customers WHERE name = 'x'")["rows"] == [[0]]


def test_execute_sends_reads_to_query(call: Callable[..., Any]) -> None:
    with pytest.raises(InvalidInput, match="use query"):
        call(tools.execute, "SELECT * FROM customers", [], statement_timeout_ms=TIMEOUT_MS)


def test_execute_statement_timeout(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match="timed out after 100 ms"):
        call(tools.execute, "DO $$BEGIN PERFORM pg_sleep(5); END$$", [], statement_timeout_ms=100)


def test_many_commits_in_a_row_keep_the_pooled_connection(call: Callable[..., Any]) -> None:
    # psycopg prepares a statement it has seen five times; a prepared DISCARD ALL in the reset
    # would deallocate itself, fail the next reset, and cost the pool its connection.
    # (A query in between would hide it: psycopg forgets its counts on ROLLBACK.)
    pid = query(call, "SELECT pg_backend_pid()")["rows"][0][0]
    for _ in range(8):
        call(tools.execute, "UPDATE customers SET name = name WHERE false", [], statement_timeout_ms=TIMEOUT_MS)
    assert query(call, "SELECT pg_backend_pid()")["rows"] == [[pid]]


# --- explain_query -----------------------------------------------------------------------------


def test_explain_returns_the_json_plan(call: Callable[..., Any]) -> None:
    plan = call(
        tools.explain_query,
        "SELECT * FROM orders WHERE customer_id = 1",
        analyze=False,
        read_only=True,
        statement_timeout_ms=TIMEOUT_MS,
    )["plan"]
    assert isinstance(plan, list) and "Plan" in plan[0]
    assert "Actual Rows" not in plan[0]["Plan"]


def test_explain_analyze_measures(call: Callable[..., Any]) -> None:
    plan = call(
        tools.explain_query, "SELECT * FROM customers", analyze=True, read_only=True, statement_timeout_ms=TIMEOUT_MS
    )["plan"]
    assert plan[0]["Plan"]["Actual Rows"] == 2


def test_explain_analyze_of_a_write_is_rolled_back_on_a_read_write_tenant(call: Callable[..., Any]) -> None:
    plan = call(
        tools.explain_query, "DELETE FROM order_lines", analyze=True, read_only=False, statement_timeout_ms=TIMEOUT_MS
    )["plan"]
    assert plan[0]["Plan"]["Operation"] == "Delete"
    assert query(call, "SELECT count(*) FROM order_lines")["rows"] == [[2]]


def test_explain_syntax_error_position_is_in_the_callers_sql(call: Callable[..., Any]) -> None:
    with pytest.raises(QueryError, match=r"\(at position 10\)"):
        call(tools.explain_query, "SELECT * FORM t", analyze=False, read_only=True, statement_timeout_ms=TIMEOUT_MS)


# --- catalog -----------------------------------------------------------------------------------


def test_list_schemas_hides_system_schemas_unless_asked(call: Callable[..., Any]) -> None:
    assert call(tools.list_schemas) == {"schemas": ["public", "sales"]}
    schemas = call(tools.list_schemas, include_system=True)["schemas"]
    assert {"information_schema", "pg_catalog", "public", "sales"} <= set(schemas)
    assert not any(s.startswith(("pg_toast", "pg_temp")) for s in schemas)


def test_list_tables_kinds_and_estimates(call: Callable[..., Any]) -> None:
    tables = {t["name"]: t for t in call(tools.list_tables, "public")["tables"]}
    assert {name: t["kind"] for name, t in tables.items()} == {
        "Mixed Case": "table",
        "big_orders": "view",
        "customers": "table",
        "events": "partitioned table",
        "line_notes": "table",
        "order_lines": "table",
        "order_totals": "materialized view",
        "orders": "table",
    }
    assert tables["customers"]["estimated_rows"] == 2  # analyzed
    assert tables["big_orders"]["estimated_rows"] is None
    assert call(tools.list_tables, "sales")["tables"] == [{"name": "regions", "kind": "table", "estimated_rows": None}]


def test_list_tables_of_unknown_schema_is_invalid_input(call: Callable[..., Any]) -> None:
    with pytest.raises(InvalidInput, match='schema "nope" does not exist'):
        call(tools.list_tables, "nope")


def test_describe_table_columns_keys_indexes(call: Callable[..., Any]) -> None:
    desc = call(tools.describe_table, "public", "customers")
    assert desc["columns"] == [
        {
            "name": "id",
            "type": "integer",
            "nullable": False,
            "default": "nextval('customers_id_seq'::regclass)",
            "comment": None,
        },
        {"name": "email", "type": "text", "nullable": False, "default": None, "comment": "login address"},
        {"name": "name", "type": "text", "nullable": True, "default": "'anonymous'::text", "comment": None},
    ]
    assert desc["primary_key"] == ["id"]
    assert [(i["name"], i["unique"], i["primary"]) for i in desc["indexes"]] == [
        ("customers_pkey", True, True),
        ("customers_email_key", True, False),
    ]
    assert desc["foreign_keys"] == []
    assert desc["referenced_by"] == [
        {
            "name": "orders_customer_id_fkey",
            "schema": "public",
            "table": "orders",
            "columns": ["customer_id"],
            "referenced_columns": ["id"],
            "definition": "FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE",
        }
    ]


def test_describe_table_composite_foreign_keys_keep_column_order(call: Callable[..., Any]) -> None:
    desc = call(tools.describe_table, "public", "line_notes")
    assert desc["foreign_keys"] == [
        {
            "name": "line_notes_line_fk",
            "columns": ["line", "order_id"],
            "references": {"schema": "public", "table": "order_lines", "columns": ["line", "order_id"]},
            "definition": "FOREIGN KEY (line, order_id) REFERENCES order_lines(line, order_id)",
        }
    ]
    lines = call(tools.describe_table, "public", "order_lines")
    assert lines["primary_key"] == ["order_id", "line"]
    assert [fk["table"] for fk in lines["referenced_by"]] == ["line_notes"]
    assert "lower(item)" in next(i["definition"] for i in lines["indexes"] if i["name"] == "order_lines_item_idx")


def test_describe_identity_column_and_view(call: Callable[..., Any]) -> None:
    orders = call(tools.describe_table, "public", "orders")
    assert orders["columns"][0]["default"] == "GENERATED ALWAYS AS IDENTITY"
    assert call(tools.describe_table, "public", "big_orders")["kind"] == "view"
    assert call(tools.describe_table, "public", "Mixed Case")["columns"][0]["name"] == "id"


def test_describe_unknown_table_suggests_the_stored_name(call: Callable[..., Any]) -> None:
    with pytest.raises(
        InvalidInput,
        match=r'"public"\."Customers" does not exist; did you '
        r'mean "customers"',
    ):
        call(tools.describe_table, "public", "Customers")
    with pytest.raises(InvalidInput, match='schema "nope" does not exist'):
        call(tools.describe_table, "nope", "customers")


# --- the server's pool (PostgresBackend.open) ---------------------------------------------------


@pytest.fixture
def server_pool(database: dict[str, Any]) -> Iterator[ConnectionPool]:
    """A pool built as the server builds it: autocommit, no prepared statements, cheap checks."""
    with make_server_pool(database["owner"], "tools") as pool:
        yield pool


def test_server_pool_runs_every_tool_and_stays_read_only(call: Callable[..., Any], server_pool: ConnectionPool) -> None:
    for _ in range(8):  # past psycopg's prepare threshold
        result = query(
            call, "SELECT current_setting('transaction_read_only'), count(*) FROM customers", pool=server_pool
        )
        assert result["rows"] == [["on", 2]]
        with pytest.raises(AccessDenied):
            query(call, "SELECT nextval('invoice_numbers')", pool=server_pool)
        with pytest.raises(QueryError, match="division by zero"):
            query(call, "SELECT 1 / 0", pool=server_pool)
        call(tools.execute, "UPDATE customers SET name = name", [], pool=server_pool, statement_timeout_ms=TIMEOUT_MS)
        assert call(tools.list_schemas, pool=server_pool) == {"schemas": ["public", "sales"]}
    assert query(call, "SELECT last_value, is_called FROM invoice_numbers")["rows"] == [[1, False]]
    with server_pool.connection() as conn:
        assert conn.autocommit is True


def test_server_pool_replaces_a_connection_the_server_ended_while_idle(
    call: Callable[..., Any], server_pool: ConnectionPool, postgres_service: Any
) -> None:
    # Checked out again at once: no round-trip check is due, so the pool must notice the FATAL
    # message waiting on the socket, and hand out a new connection instead of an error.
    pid = query(call, "SELECT pg_backend_pid()", pool=server_pool)["rows"][0][0]
    assert postgres_service.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]) == [(True,)]
    new_pid = query(call, "SELECT pg_backend_pid()", pool=server_pool)["rows"][0][0]
    assert new_pid != pid


def test_execute_returning_gives_the_rows_capped_like_query(call: Callable[..., Any]) -> None:
    result = call(
        tools.execute,
        "INSERT INTO order_lines (order_id, line, item) SELECT 1, g, 'item ' || g FROM generate_series(10, 14) g"
        " RETURNING line, item",
        [],
        statement_timeout_ms=TIMEOUT_MS,
        max_rows=3,
    )
    try:
        assert result["status"] == "INSERT 0 5" and result["rowcount"] == 5
        assert result["columns"] == [{"name": "line", "type": "int4"}, {"name": "item", "type": "text"}]
        assert result["rows"] == [[10, "item 10"], [11, "item 11"], [12, "item 12"]]
        assert result["truncated"] is True
    finally:
        call(tools.execute, "DELETE FROM order_lines WHERE line >= 10", [], statement_timeout_ms=TIMEOUT_MS)
