"""Red team of the read-only promise: attacks that work today, each as the test a user would need.

Every test here fails on the code it was written against (branch ``redsql``); each one states
the behaviour the product promises (README "Read-only that holds", SPEC ``query``), not how to
get there. REDTEAM-SQL.md (not merged) has the analysis of each finding.

Threat model: the MCP caller controls the SQL text only. The database's objects were created by
its owner (a plain role, or a superuser where said), who did not expect a read-only query to
change state. A volatile plpgsql function raises NOTICE 'canary' when it runs; the connection
records notices, so "it never ran" is checked, not assumed.

Calls go through ``tools.query``/``tools.explain_query`` on a pool built exactly as the server
builds its tenants' pools (``PostgresBackend.open``: autocommit, UTF-8, reset on return).
"""

from __future__ import annotations

import json
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mcp_tenants.errors import AccessDenied, InvalidInput, QueryError
from mcp_tenants.postgres import guard, tools
from tests.integration.server_pool import server_pool
from tests.pgdb import owned_database

TIMEOUT_MS = 5_000
MAX_BYTES = 1 << 20  # MCP_RESULT_MAX_BYTES' default
LONG_FUNCTION = "é" * 40  # 40 bytes in LATIN1, 80 in UTF-8
LONG_VIEW = "statistiques_détaillées_des_opérations_par_catégorie_et_année"  # 61 bytes in LATIN1, 66 in UTF-8

HOSTILE = """
CREATE SCHEMA evil;
CREATE FUNCTION evil.canary() RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
-- an equality the owner defined for comparing codes (text) with numbers (int)
CREATE FUNCTION evil.text_eq_int(text, int) RETURNS bool VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN $1 OPERATOR(pg_catalog.=) $2::text; END$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = int, FUNCTION = evil.text_eq_int);
CREATE TABLE codes (code text, n int);
INSERT INTO codes VALUES ('1', 1), ('2', 2);
-- a classic helper, marked STABLE because it only counts
CREATE FUNCTION public.row_count(tbl text) RETURNS bigint STABLE LANGUAGE plpgsql AS $$
DECLARE n bigint; BEGIN EXECUTE 'SELECT count(*) FROM ' || tbl INTO n; RETURN n; END $$;
-- row-level security whose only volatile part guards INSERT, never a SELECT
CREATE FUNCTION public.quota_ok() RETURNS bool LANGUAGE plpgsql AS $$BEGIN RETURN true; END$$;
CREATE TABLE orders (i int);
INSERT INTO orders VALUES (1), (2);
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY orders_read ON orders FOR SELECT USING (true);
CREATE POLICY orders_insert ON orders FOR INSERT WITH CHECK (public.quota_ok());
-- sequences: a ticket counter behind a view, and a serial column
CREATE SEQUENCE tickets;
CREATE FUNCTION public.take_ticket() RETURNS bigint VOLATILE LANGUAGE sql
    AS 'SELECT pg_catalog.nextval(''public.tickets'')';
CREATE VIEW public.next_ticket AS SELECT public.take_ticket() AS n;
CREATE TABLE items (id serial, name text);
INSERT INTO items (name) VALUES ('a');
-- functions with more specific signatures than pg_catalog's (lower(text), unnest(anyarray))
CREATE FUNCTION public.lower(name) RETURNS text VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN pg_catalog.lower($1::text); END$$;
CREATE FUNCTION public.unnest(smallint[]) RETURNS SETOF smallint VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN QUERY SELECT * FROM pg_catalog.unnest($1); END$$;
CREATE TABLE described (id int PRIMARY KEY, ref int REFERENCES described (id));
"""


# --- fixtures ----------------------------------------------------------------------------------


class Tenant:
    """A database, its owner's connection info, and ``query``/``explain_query`` on a server pool."""

    def __init__(self, info: dict[str, Any], pool: Any) -> None:
        self.info = info
        self.pool = pool
        self.notices: list[str] = []

    def _note(self, diag: psycopg.errors.Diagnostic) -> None:
        self.notices.append(diag.message_primary or "")

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.pool.connection() as conn:
            conn.add_notice_handler(self._note)
            try:
                return fn(conn, *args, **kwargs)
            finally:
                conn.remove_notice_handler(self._note)

    def query(self, text: str, **kwargs: Any) -> dict[str, Any]:
        options: dict[str, Any] = {"max_rows": 100, "max_bytes": MAX_BYTES, "statement_timeout_ms": TIMEOUT_MS}
        return self.call(tools.query, text, [], **{**options, **kwargs})

    def explain(self, text: str, *, analyze: bool = True, read_only: bool = True, **kwargs: Any) -> dict[str, Any]:
        options: dict[str, Any] = {"statement_timeout_ms": TIMEOUT_MS}
        return self.call(tools.explain_query, text, analyze=analyze, read_only=read_only, **{**options, **kwargs})

    def owner(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(**self.info, autocommit=True, client_encoding="UTF8") as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def sang(self) -> bool:
        return "canary" in self.notices


def _has_extension(postgres_service: Any, name: str) -> bool:
    return bool(postgres_service.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", [name]))


@pytest.fixture(scope="module")
def hostile(postgres_service: Any) -> Iterator[Tenant]:
    """A database owned by a plain role, full of the owner's objects (HOSTILE), with a
    postgres_fdw server that loops back to the same database."""
    with owned_database(postgres_service, "rt", setup=HOSTILE) as info:
        if _has_extension(postgres_service, "postgres_fdw"):
            su = {**postgres_service.conninfo(), "dbname": info["dbname"]}
            with psycopg.connect(**su, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION postgres_fdw")
                conn.execute(
                    sql.SQL(
                        "CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {}, port {}, dbname {})"
                    ).format(
                        sql.Literal(postgres_service.host),
                        sql.Literal(str(postgres_service.port)),
                        sql.Literal(info["dbname"]),
                    )
                )
                conn.execute(
                    sql.SQL("GRANT USAGE ON FOREIGN SERVER loopback TO {}").format(sql.Identifier(info["user"]))
                )
                conn.execute(
                    sql.SQL("CREATE USER MAPPING FOR {} SERVER loopback OPTIONS (user {}, password {})").format(
                        sql.Identifier(info["user"]), sql.Literal(info["user"]), sql.Literal(info["password"])
                    )
                )
            with psycopg.connect(**info, autocommit=True) as conn:
                conn.execute(
                    "CREATE FOREIGN TABLE public.remote_ticket (n bigint) SERVER loopback"
                    " OPTIONS (schema_name 'public', table_name 'next_ticket')"
                )
                conn.execute(
                    "CREATE FOREIGN TABLE public.remote_codes (code text, n int) SERVER loopback"
                    " OPTIONS (schema_name 'public', table_name 'codes')"
                )
        with server_pool(info, "redteam") as pool:
            yield Tenant(info, pool)


@pytest.fixture
def tenant(hostile: Tenant) -> Iterator[Tenant]:
    """The hostile tenant, with no notice recorded yet."""
    hostile.notices.clear()
    yield hostile


# --- 1. functions reached by a name the guard never sees ---------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'x'::text IN (SELECT 1)",  # x IN (subquery) compares with "=", named nowhere in the text
        "SELECT code FROM codes WHERE code IN (SELECT n FROM codes)",
        "SELECT code FROM codes WHERE code NOT IN (SELECT n FROM codes)",
    ],
)
def test_in_subquery_equality_is_checked_like_any_operator(tenant: Tenant, statement: str) -> None:
    # "SELECT code = 1" is refused (evil.text_eq_int is VOLATILE); the same "=" behind IN must be too.
    with pytest.raises(AccessDenied, match="text_eq_int"):
        tenant.query(statement)
    assert not tenant.sang()


def test_in_subquery_equality_is_checked_by_explain_analyze(tenant: Tenant) -> None:
    with pytest.raises(AccessDenied, match="text_eq_int"):
        tenant.explain("SELECT 'x'::text IN (SELECT 1)", analyze=True)
    assert not tenant.sang()


@pytest.fixture(scope="module")
def shadowed(postgres_service: Any) -> Iterator[Tenant]:
    """The owner put public before pg_catalog in the role's search_path, and defined int = int."""
    with owned_database(
        postgres_service,
        "rt",
        setup="""
        CREATE FUNCTION public.int_eq(int, int) RETURNS bool VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; RETURN $1 OPERATOR(pg_catalog.=) $2; END$$;
        CREATE OPERATOR public.= (LEFTARG = int, RIGHTARG = int, FUNCTION = public.int_eq);
        """,
    ) as info:
        postgres_service.execute(
            sql.SQL("ALTER ROLE {} SET search_path = public, pg_catalog").format(sql.Identifier(info["user"]))
        )
        with server_pool(info, "shadowed") as pool:
            yield Tenant(info, pool)


def test_a_statement_that_names_nothing_still_gets_its_implicit_operator_checked(shadowed: Tenant) -> None:
    shadowed.notices.clear()
    with pytest.raises(AccessDenied, match="int_eq"):
        shadowed.query("SELECT 1 IN (SELECT 1)")  # no name at all: the function check is skipped
    assert not shadowed.sang()


@pytest.fixture(scope="module")
def latin1(postgres_service: Any) -> Iterator[Tenant]:
    """A LATIN1 database (legacy, still common): 'é' is one byte to the server, two to the guard."""
    with (
        owned_database(
            postgres_service,
            "rt",
            encoding="LATIN1",
            setup=f"""
        CREATE FUNCTION public.canary() RETURNS int VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
        CREATE FUNCTION public."{LONG_FUNCTION}"() RETURNS int VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
        CREATE VIEW public."{LONG_VIEW}" AS SELECT public.canary() AS c;
        """,
        ) as info,
        server_pool(info, "latin1") as pool,
    ):
        yield Tenant(info, pool)


def test_long_non_ascii_function_names_in_a_latin1_database(latin1: Tenant) -> None:
    # The guard's parser truncates identifiers to 63 UTF-8 bytes, the server to 63 LATIN1 bytes:
    # the guard looks up a name that does not exist, finds nothing to refuse, and lets it run.
    latin1.notices.clear()
    with pytest.raises(AccessDenied, match="VOLATILE"):
        latin1.query(f'SELECT "{LONG_FUNCTION}"()')
    assert not latin1.sang()


def test_long_non_ascii_view_names_in_a_latin1_database(latin1: Tenant) -> None:
    latin1.notices.clear()
    with pytest.raises(AccessDenied, match="canary"):
        latin1.query(f'SELECT * FROM "{LONG_VIEW}"')
    assert not latin1.sang()


# --- 2. what the function policy trusts -------------------------------------------------------


def test_a_stable_function_cannot_be_made_to_signal_a_backend(tenant: Tenant) -> None:
    # row_count() is STABLE: "taken at its declared volatility". Its argument is SQL, so the
    # caller runs any function through it: here pg_terminate_backend on another session.
    with psycopg.connect(**tenant.info, autocommit=True) as victim:
        pid = victim.info.backend_pid
        with pytest.raises(AccessDenied):
            tenant.query(f"SELECT row_count('pg_stat_activity WHERE pg_catalog.pg_terminate_backend({pid})')")
        assert victim.execute("SELECT 1").fetchone() == (1,)


def test_a_foreign_table_does_not_run_the_remote_views_volatile_functions(tenant: Tenant) -> None:
    # "SELECT * FROM next_ticket" is refused (take_ticket is VOLATILE); a foreign table over the
    # same view is opaque to the guard, and postgres_fdw's remote transaction is READ WRITE.
    if not tenant.owner("SELECT 1 FROM pg_class WHERE relname = 'remote_ticket'"):
        pytest.skip("postgres_fdw is not installed")
    before = tenant.owner("SELECT last_value, is_called FROM tickets")
    with pytest.raises(AccessDenied):
        tenant.query("SELECT n FROM remote_ticket")
    assert tenant.owner("SELECT last_value, is_called FROM tickets") == before


def test_user_mapping_passwords_are_not_readable_through_information_schema(tenant: Tenant) -> None:
    # pg_user_mappings is refused as a credentials catalog; information_schema shows the same options.
    if not tenant.owner("SELECT 1 FROM pg_foreign_server WHERE srvname = 'loopback'"):
        pytest.skip("postgres_fdw is not installed")
    try:
        result = tenant.query("SELECT option_name, option_value FROM information_schema.user_mapping_options")
    except AccessDenied:
        return
    assert ["password", tenant.info["password"]] not in result["rows"]


def test_no_postgres_fdw_connection_outlives_the_call(tenant: Tenant) -> None:
    # A legitimate read of a foreign table leaves postgres_fdw's cached connection (a remote
    # session with its own settings and locks) on the pooled connection, for the next caller.
    if not tenant.owner("SELECT 1 FROM pg_class WHERE relname = 'remote_codes'"):
        pytest.skip("postgres_fdw is not installed")
    assert tenant.query("SELECT count(*) FROM remote_codes")["rows"] == [[2]]
    with tenant.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM postgres_fdw_get_connections()").fetchone() == (0,)


# --- 3. read tools that change state -----------------------------------------------------------


def test_explain_analyze_on_a_read_write_tenant_leaves_sequences_alone(tenant: Tenant) -> None:
    # explain_query is a read tool (readOnlyHint, callable by a reader principal): "always rolled
    # back, so explaining never changes data". Sequences are not rolled back.
    before = tenant.owner("SELECT last_value, is_called FROM items_id_seq")
    tenant.explain("INSERT INTO items (name) VALUES ('b')", analyze=True, read_only=False)
    assert tenant.owner("SELECT last_value, is_called FROM items_id_seq") == before


def test_describe_table_runs_none_of_the_owners_functions(tenant: Tenant) -> None:
    # catalog.py's queries call lower(c.relname) and unnest(conkey) unqualified: the owner's
    # public.lower(name) and public.unnest(smallint[]) are better matches than pg_catalog's.
    with pytest.raises(Exception, match="does not exist"):
        tenant.call(tools.describe_table, "public", "Described")
    tenant.call(tools.describe_table, "public", "described")
    assert not tenant.sang(), "describe_table ran the owner's volatile functions"


# --- 4. bounds: memory, result size, deadline, guard cost ---------------------------------------


def test_error_messages_are_bounded_by_the_result_cap(tenant: Tenant) -> None:
    # PostgreSQL quotes the whole offending value in the message: 64 MB cross the wire into the
    # server process and come back as the tool's error text.
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(QueryError, match="invalid input syntax") as raised:
        tenant.query("SELECT repeat(repeat('x', 1000), 64000)::int", statement_timeout_ms=30_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert len(str(raised.value)) <= MAX_BYTES
    assert grown_mb < 64


def test_explain_plans_are_bounded_by_the_result_cap(tenant: Tenant) -> None:
    # The planner folds the constant and EXPLAIN prints it: 90 characters become a 32 MB plan.
    result = tenant.explain(
        "SELECT g FROM generate_series(1, 2) AS g WHERE g::text <> repeat(repeat('x', 1000), 32000)",
        analyze=False,
        statement_timeout_ms=30_000,
    )
    assert len(json.dumps(result)) <= MAX_BYTES


def test_the_deadline_holds_for_work_postgres_cannot_interrupt(tenant: Tenant) -> None:
    # One row's target list is evaluated without a check for interrupts: the cancel request waits
    # until all 20 md5s of 100 MB are done (about 4 s here; 1664 columns would be 5 minutes).
    columns = ", ".join(["md5(r)"] * 20)
    statement = (
        f"SELECT {columns} FROM (SELECT repeat(repeat('x', 100000), 999 + g) AS r"
        " FROM generate_series(1, 1) AS g OFFSET 0) AS s"
    )
    started = time.monotonic()
    with pytest.raises(QueryError, match="timed out"):
        tenant.query(statement, statement_timeout_ms=300)
    assert time.monotonic() - started < 2.5  # the deadline, plus the cancel's own 2 s at most


def test_the_guards_cost_is_bounded_for_nested_comments() -> None:
    # Nested comments make the scanner quadratic: 40 KB cost 2 s of CPU, 400 KB 4 minutes, 1 MB
    # (the tool's limit) about 25 minutes; all before the deadline starts.
    # A verdict either way counts: the bound may refuse such text (a clear InvalidInput), as long
    # as the check ends quickly. (As first written, only an acceptance set the event.)
    text = "SELECT 1 " + "/*" * 10_000 + "*/" * 10_000
    done = threading.Event()

    def check() -> None:
        try:
            guard.check_query(text)
        except InvalidInput:
            pass
        finally:
            done.set()

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    assert done.wait(0.5), "checking a 40 KB statement took more than 0.5 s"


# --- 5. a superuser owner (tenants that connect as the owner of everything) --------------------


@pytest.fixture(scope="module")
def superuser_owned(postgres_service: Any) -> Iterator[Tenant]:
    with (
        owned_database(
            postgres_service,
            "rt",
            superuser=True,
            setup="""
        CREATE SCHEMA evil;
        -- a default btree operator class so that json can be sorted and made DISTINCT
        CREATE FUNCTION evil.json_cmp(json, json) RETURNS int VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; RETURN pg_catalog.bttextcmp($1::text, $2::text); END$$;
        CREATE FUNCTION evil.json_lt(json, json) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1::text < $2::text';
        CREATE FUNCTION evil.json_le(json, json) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1::text <= $2::text';
        CREATE FUNCTION evil.json_eq(json, json) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1::text = $2::text';
        CREATE FUNCTION evil.json_ge(json, json) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1::text >= $2::text';
        CREATE FUNCTION evil.json_gt(json, json) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1::text > $2::text';
        CREATE OPERATOR evil.< (LEFTARG = json, RIGHTARG = json, FUNCTION = evil.json_lt);
        CREATE OPERATOR evil.<= (LEFTARG = json, RIGHTARG = json, FUNCTION = evil.json_le);
        CREATE OPERATOR evil.= (LEFTARG = json, RIGHTARG = json, FUNCTION = evil.json_eq);
        CREATE OPERATOR evil.>= (LEFTARG = json, RIGHTARG = json, FUNCTION = evil.json_ge);
        CREATE OPERATOR evil.> (LEFTARG = json, RIGHTARG = json, FUNCTION = evil.json_gt);
        CREATE OPERATOR CLASS evil.json_ops DEFAULT FOR TYPE json USING btree AS
            OPERATOR 1 evil.<, OPERATOR 2 evil.<=, OPERATOR 3 evil.=, OPERATOR 4 evil.>=, OPERATOR 5 evil.>,
            FUNCTION 1 evil.json_cmp(json, json);
        -- an implicit cast between two built-in types
        CREATE FUNCTION evil.int_to_text(int) RETURNS text VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; RETURN pg_catalog.textin(pg_catalog.int4out($1)); END$$;
        CREATE CAST (int AS text) WITH FUNCTION evil.int_to_text(int) AS IMPLICIT;
        -- a pg_catalog function that shares its name with an allowed volatile one
        CREATE FUNCTION pg_catalog.pg_sleep(text) RETURNS void VOLATILE LANGUAGE plpgsql
            AS $$BEGIN RAISE NOTICE 'canary'; END$$;
        """,
        ) as info,
        server_pool(info, "superuser") as pool,
    ):
        yield Tenant(info, pool)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT DISTINCT j FROM (VALUES ('{}'::json), ('[]'::json)) AS v(j)",  # the opclass' FUNCTION 1
        "SELECT j FROM (VALUES ('{}'::json), ('[]'::json)) AS v(j) ORDER BY 1",
        "SELECT '[1]'::json UNION SELECT '[2]'::json",
        "SELECT length(42)",  # the implicit cast int -> text
        "SELECT pg_sleep('x')",  # pg_catalog.pg_sleep(text), allowed by name
    ],
)
def test_a_superuser_owners_implicit_functions_are_checked(superuser_owned: Tenant, statement: str) -> None:
    superuser_owned.notices.clear()
    with pytest.raises(AccessDenied):
        superuser_owned.query(statement)
    assert not superuser_owned.sang()


def test_subscription_passwords_are_not_readable(superuser_owned: Tenant) -> None:
    superuser_owned.owner(
        "CREATE SUBSCRIPTION redteam CONNECTION 'host=127.0.0.1 dbname=none user=rep password=s3cret-sub'"
        " PUBLICATION p WITH (connect = false)"
    )
    try:
        try:
            result = superuser_owned.query("SELECT subconninfo FROM pg_subscription")
        except AccessDenied:
            return
        assert "s3cret-sub" not in json.dumps(result)
    finally:
        superuser_owned.owner("ALTER SUBSCRIPTION redteam SET (slot_name = NONE)")
        superuser_owned.owner("DROP SUBSCRIPTION redteam")


# --- 6. legitimate read-only queries refused ----------------------------------------------------


def test_an_equality_for_one_pair_of_types_does_not_block_every_equality(tenant: Tenant) -> None:
    # The owner's "=" (text, int) is VOLATILE; int = int never reaches it, yet "=" is refused
    # on this tenant for every type, because a name stands for every operator it could be.
    assert tenant.query("SELECT n FROM codes WHERE n = 1")["rows"] == [[1]]


def test_rows_under_an_insert_only_volatile_policy_can_be_read(tenant: Tenant) -> None:
    # quota_ok() guards INSERT only; a SELECT never runs it.
    assert tenant.query("SELECT count(*) FROM orders")["rows"] == [[2]]


@pytest.fixture(scope="module")
def with_extensions(postgres_service: Any) -> Iterator[Tenant]:
    if not all(_has_extension(postgres_service, e) for e in ("pgcrypto", "pg_stat_statements")):
        pytest.skip("pgcrypto or pg_stat_statements is not installed")
    with owned_database(postgres_service, "rt") as info:
        su = {**postgres_service.conninfo(), "dbname": info["dbname"]}
        with psycopg.connect(**su, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pgcrypto; CREATE EXTENSION pg_stat_statements")
        with server_pool(info, "extensions") as pool:
            yield Tenant(info, pool)


def test_gen_random_uuid_runs_where_pgcrypto_is_installed(with_extensions: Tenant) -> None:
    # README: gen_random_uuid is allowed. pgcrypto (in most databases) adds public.gen_random_uuid().
    assert with_extensions.query("SELECT gen_random_uuid() IS NOT NULL")["rows"] == [[True]]


def test_pg_stat_statements_can_be_read(with_extensions: Tenant) -> None:
    # The view of the most common tuning question; its C function is declared VOLATILE but only reads.
    try:
        with_extensions.query("SELECT count(*) >= 0 FROM pg_stat_statements")
    except QueryError as exc:  # this test cluster does not preload the library
        assert "shared_preload_libraries" in str(exc)
