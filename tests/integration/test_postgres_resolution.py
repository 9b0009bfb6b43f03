"""The read-only check as PostgreSQL resolves it, against a real server: what a temporary view of
the statement records, the name-based check where no view can be made, function bodies, views
over credentials, foreign tables, parameters, and what a check costs the database.

A volatile plpgsql function raises NOTICE 'canary' when it runs; the connection records notices,
so "it never ran" is checked, not assumed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mcp_tenants.errors import AccessDenied
from mcp_tenants.postgres import resolve, tools
from mcp_tenants.rawjson import decoded
from tests.pgdb import owned_database, querying

TIMEOUT_MS = 5_000

SETUP = """
CREATE SCHEMA evil;
CREATE FUNCTION evil.canary() RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
CREATE FUNCTION evil.text_eq_int(text, int) RETURNS bool VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN $1 OPERATOR(pg_catalog.=) $2::text; END$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = int, FUNCTION = evil.text_eq_int);
CREATE TABLE codes (code text, n int);
INSERT INTO codes VALUES ('1', 1), ('2', 2);
-- non-volatile functions whose bodies are text
CREATE FUNCTION public.sql_calls_canary() RETURNS int STABLE LANGUAGE sql AS 'SELECT evil.canary()';
CREATE FUNCTION public.plpgsql_calls_canary() RETURNS int STABLE LANGUAGE plpgsql
    AS $$BEGIN PERFORM evil.canary(); RETURN 1; END$$;
CREATE FUNCTION public.plpgsql_counts(n int) RETURNS int STABLE LANGUAGE plpgsql
    AS $$DECLARE k int; BEGIN SELECT count(*) INTO k FROM codes WHERE codes.n <= plpgsql_counts.n; RETURN k; END$$;
CREATE FUNCTION public.nested() RETURNS int STABLE LANGUAGE sql AS 'SELECT public.plpgsql_calls_canary()';
-- a view over the credentials of user mappings, and one that only counts them
CREATE VIEW public.mapping_secrets AS SELECT option_value FROM information_schema.user_mapping_options;
CREATE VIEW public.mapping_names AS SELECT foreign_server_name FROM information_schema.user_mappings;
"""


@pytest.fixture(scope="module")
def database(postgres_service: Any) -> Iterator[dict[str, Any]]:
    """A database owned by a plain role (the tenant), with SETUP."""
    with owned_database(postgres_service, "rs", setup=SETUP) as info:
        yield info


@pytest.fixture
def conn(database: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**database, autocommit=True) as conn:
        yield conn


@pytest.fixture
def run(conn: psycopg.Connection[Any]) -> Iterator[Callable[..., dict[str, Any]]]:
    """query on the tenant's connection; afterwards, the canary must never have sung."""
    with querying(conn, TIMEOUT_MS) as (call, notices):
        yield call
    assert not [n for n in notices if n.startswith("event trigger")], "an event trigger fired during a read"


# --- the temporary view: PostgreSQL's own resolution --------------------------------------------


def test_an_operator_chosen_by_argument_types_refuses_only_that_pair(run: Callable[..., Any]) -> None:
    assert run("SELECT n FROM codes WHERE n = 1")["rows"] == [[1]]
    with pytest.raises(AccessDenied, match=r"text_eq_int\(text,integer\) is VOLATILE"):
        run("SELECT code FROM codes WHERE code = 1")


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        ("SELECT code FROM codes WHERE code = $1", [1]),  # a typed parameter: (NULL::pg_catalog.int2)
        ("SELECT $1::text IN (SELECT n FROM codes)", ["x"]),
        ("SELECT code FROM codes WHERE code = ANY (SELECT $1::int)", ["1"]),
    ],
)
def test_parameters_are_resolved_with_the_types_they_are_bound_with(
    run: Callable[..., Any], statement: str, params: list[Any]
) -> None:
    with pytest.raises(AccessDenied, match="text_eq_int"):
        run(statement, params)


def test_an_untyped_parameter_used_twice_is_also_checked_by_names(run: Callable[..., Any]) -> None:
    # $1 takes its type (integer) from its first use; the second use then compares text with it.
    with pytest.raises(AccessDenied, match="text_eq_int"):
        run("SELECT $1 + 0, code = $1 FROM codes", ["1"])


def test_view_sql_puts_typed_nulls_where_the_parameters_are() -> None:
    from mcp_tenants.postgres.sqltree import parse_one

    statement = parse_one("SELECT $1, $2 || 'é', $10")
    text = resolve.view_sql(statement, [20, 0]).decode()
    head = "CREATE TEMP VIEW mcp_check AS SELECT 1 FROM (\n"
    assert text == head + "SELECT (NULL::pg_catalog.\"int8\"), (NULL) || 'é', (NULL)\n) AS q"
    assert resolve.view_sql(parse_one("SELECT $1[1]"), [1007]).decode().count('(NULL::pg_catalog."_int4")[1]') == 1


# --- function bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("SELECT sql_calls_canary()", r"canary\(\) is VOLATILE.*reached through sql_calls_canary\(\)"),
        ("SELECT plpgsql_calls_canary()", r"canary\(\) is VOLATILE"),
        ("SELECT nested()", r"canary\(\) is VOLATILE"),  # a body whose function has a body
    ],
)
def test_volatile_functions_in_the_bodies_of_non_volatile_functions_are_refused(
    run: Callable[..., Any], statement: str, refused: str
) -> None:
    with pytest.raises(AccessDenied, match=refused):
        run(statement)


def test_a_non_volatile_function_whose_body_reads_runs(run: Callable[..., Any]) -> None:
    assert run("SELECT plpgsql_counts(1)")["rows"] == [[1]]


# --- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT rolname FROM pg_authid",
        "SELECT * FROM pg_shadow",
        "SELECT * FROM pg_user_mappings",
        "SELECT * FROM information_schema.user_mapping_options",
        "SELECT * FROM mapping_secrets",  # a view of the tenant's over one
        "SELECT subconninfo FROM pg_subscription",
    ],
)
def test_relations_that_show_credentials_are_refused_by_what_they_select(
    run: Callable[..., Any], statement: str
) -> None:
    with pytest.raises(AccessDenied, match="credentials"):
        run(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) > 0 FROM pg_roles",
        "SELECT count(*) > 0 FROM pg_user",  # over pg_shadow, but its passwd is '********'
        "SELECT count(*) >= 0 FROM pg_stat_activity",
        "SELECT count(*) >= 0 FROM information_schema.user_mappings",
        "SELECT count(*) >= 0 FROM mapping_names",
        "SELECT count(*) > 0 FROM information_schema.columns WHERE table_name = 'codes'",
    ],
)
def test_system_views_that_mask_credentials_can_be_read(run: Callable[..., Any], statement: str) -> None:
    assert run(statement)["rows"] == [[True]]


def test_a_role_read_only_by_default_is_still_checked_through_a_view(
    database: dict[str, Any], postgres_service: Any
) -> None:
    role = sql.Identifier(database["user"])
    postgres_service.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    try:
        with psycopg.connect(**database, autocommit=True) as conn:
            # By names, the volatile text = int would refuse every "="; resolved, only that pair.
            result = tools.query(
                conn, "SELECT n FROM codes WHERE n = 1", [], max_rows=5, max_bytes=1000, statement_timeout_ms=TIMEOUT_MS
            )
            assert decoded(result)["rows"] == [[1]]
            assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
    finally:
        postgres_service.execute(sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(role))


# --- where no view can be made: the name-based check -----------------------------------------------


def test_without_temp_privilege_the_name_based_check_holds(
    database: dict[str, Any], postgres_service: Any, run: Callable[..., Any]
) -> None:
    db, owner = sql.Identifier(database["dbname"]), sql.Identifier(database["user"])
    postgres_service.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC, {}").format(db, owner))
    try:
        with psycopg.connect(**database, autocommit=True) as other:
            assert other.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone() == (False,)
        with pytest.raises(AccessDenied, match="text_eq_int"):
            run("SELECT 'x'::text IN (SELECT 1)")  # the implied "=" of IN, by name
        with pytest.raises(AccessDenied, match="canary"):
            run("SELECT sql_calls_canary()")
        assert run("SELECT count(*) FROM codes")["rows"] == [[2]]
    finally:
        postgres_service.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC, {}").format(db, owner))


def test_event_triggers_never_fire_for_a_read(
    database: dict[str, Any], postgres_service: Any, run: Callable[..., Any]
) -> None:
    # They would: PostgreSQL fires ddl_command_start/end for CREATE TEMP VIEW (checked below).
    admin = {**postgres_service.conninfo(), "dbname": database["dbname"]}
    with psycopg.connect(**admin, autocommit=True) as su:
        su.execute(
            "CREATE FUNCTION public.announce() RETURNS event_trigger LANGUAGE plpgsql"
            " AS $$BEGIN RAISE NOTICE 'event trigger %', tg_tag; END$$"
        )
        su.execute("CREATE EVENT TRIGGER announce ON ddl_command_start EXECUTE FUNCTION public.announce()")
        try:
            fired: list[str] = []
            su.add_notice_handler(lambda diag: fired.append(diag.message_primary or ""))
            su.execute("BEGIN; CREATE TEMP VIEW probe AS SELECT 1; ROLLBACK")
            assert fired == ["event trigger CREATE VIEW"]
            with pytest.raises(AccessDenied, match="text_eq_int"):
                run("SELECT 'x'::text IN (SELECT 1)")
            assert run("SELECT n FROM codes ORDER BY n")["rows"] == [[1], [2]]
        finally:
            su.execute("DROP EVENT TRIGGER announce; DROP FUNCTION public.announce()")


# --- foreign tables ---------------------------------------------------------------------------------


def test_a_foreign_table_on_another_server_is_refused(
    database: dict[str, Any], postgres_service: Any, run: Callable[..., Any]
) -> None:
    if not postgres_service.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgres_fdw'"):
        pytest.skip("postgres_fdw is not installed")
    admin = {**postgres_service.conninfo(), "dbname": database["dbname"]}
    with psycopg.connect(**admin, autocommit=True) as su:
        su.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        su.execute("CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '192.0.2.1', dbname 'x')")
        su.execute(sql.SQL("GRANT USAGE ON FOREIGN SERVER elsewhere TO {}").format(sql.Identifier(database["user"])))
    with psycopg.connect(**database, autocommit=True) as owner:
        owner.execute("CREATE FOREIGN TABLE public.far (n int) SERVER elsewhere")
    with pytest.raises(AccessDenied, match="far is a foreign table"):
        run("SELECT n FROM far")


# --- what a check costs --------------------------------------------------------------------------------


def test_a_checked_statement_consumes_one_transaction_id_and_select_1_none(
    database: dict[str, Any], run: Callable[..., Any]
) -> None:
    with psycopg.connect(**database, autocommit=True) as watcher:

        def next_xid() -> int:
            return int(watcher.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])  # type: ignore[index]

        run("SELECT count(*) FROM codes")  # the connection's first check makes its temporary schema (one more)
        before = next_xid()
        for _ in range(5):
            run("SELECT 1, 'x', $1", [2])
        assert next_xid() == before
        for _ in range(5):
            run("SELECT count(*) FROM codes WHERE n > $1", [0])
        assert next_xid() - before == 5


# --- casts a superuser added between PostgreSQL's own types --------------------------------------


@pytest.fixture(scope="module")
def casts(postgres_service: Any) -> Iterator[dict[str, Any]]:
    """A database where a superuser made numeric -> text and json -> text casts of their own."""
    name = f"rs_casts_{secrets.token_hex(5)}"
    postgres_service.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = {**postgres_service.conninfo(), "dbname": name}
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION public.numeric_text(numeric) RETURNS text VOLATILE LANGUAGE plpgsql
                AS $$BEGIN RAISE NOTICE 'canary'; RETURN pg_catalog.numeric_out($1)::text; END$$;
            CREATE CAST (numeric AS text) WITH FUNCTION public.numeric_text(numeric);
            CREATE FUNCTION public.json_text(json) RETURNS text VOLATILE LANGUAGE plpgsql
                AS $$BEGIN RAISE NOTICE 'canary'; RETURN pg_catalog.textin(pg_catalog.json_out($1)); END$$;
            CREATE CAST (json AS text) WITH FUNCTION public.json_text(json);
        """)
    try:
        yield info
    finally:
        postgres_service.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_rows_wrapper_takes_no_cast_a_superuser_defined(casts: dict[str, Any]) -> None:
    notices: list[str] = []
    with psycopg.connect(**casts, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

        def run(text: str) -> dict[str, Any]:
            return decoded(tools.query(conn, text, [], max_rows=10, max_bytes=2000, statement_timeout_ms=TIMEOUT_MS))

        # Not checked (nothing to resolve): the wrapper must not go through the casts.
        assert run("SELECT 1.5, 12345678901234567890.5")["rows"] == [[1.5, "12345678901234567890.5"]]
        assert run("SELECT 'x'")["rows"] == [["x"]]
        # Checked: the casts a user created are refused wherever they could be used.
        with pytest.raises(AccessDenied, match="numeric_text"):
            run("SELECT 1.5::numeric")
    assert "canary" not in notices
