"""The read-only promise against a real server, class by class: functions by what they do (in
other schemas, behind operators, casts, views, policies, aggregates), index maintenance, one
deadline per call, memory bounded whatever the value widths, huge statements.

The tenant role owns the database, so every object here is its own: the worst case for a guard
that trusted names. A volatile plpgsql function raises a NOTICE when it runs (the canary); the
tenant connection records notices, so "it never ran" is checked, not assumed.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from mcp_tenants.errors import AccessDenied, QueryError
from mcp_tenants.postgres import tools
from mcp_tenants.postgres.policy import FunctionPolicy
from mcp_tenants.rawjson import decoded
from tests.pgdb import owned_database, querying

TIMEOUT_MS = 5_000

SCHEMA = """
CREATE SCHEMA evil;
CREATE FUNCTION evil.canary() RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
CREATE FUNCTION evil.vol2(int, int) RETURNS bool VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN true; END$$;
CREATE FUNCTION evil.vol1(int) RETURNS bool VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN true; END$$;
CREATE FUNCTION public.harmless(int) RETURNS int STABLE LANGUAGE sql AS 'SELECT $1 + 1';
CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.vol2);
CREATE DOMAIN public.checked AS int CHECK (evil.vol1(VALUE));
CREATE TABLE t (i int, body text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;
CREATE VIEW public.v AS SELECT evil.canary() AS c;
CREATE VIEW public.vv AS SELECT * FROM public.v;
CREATE TABLE secured (i int);
ALTER TABLE secured ENABLE ROW LEVEL SECURITY;
ALTER TABLE secured FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON secured USING (evil.canary() > 0);
CREATE FUNCTION evil.sfunc(int, int) RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN $1 + $2; END$$;
CREATE AGGREGATE public.evil_sum(int) (SFUNC = evil.sfunc, STYPE = int, INITCOND = '0');
CREATE FUNCTION public.wrapper() RETURNS int STABLE LANGUAGE sql BEGIN ATOMIC SELECT evil.canary(); END;
CREATE FUNCTION evil.attr(t) RETURNS int VOLATILE LANGUAGE plpgsql
    AS $$BEGIN RAISE NOTICE 'canary'; RETURN 1; END$$;
CREATE TABLE brin_t (i int);
INSERT INTO brin_t SELECT generate_series(1, 1000);
CREATE INDEX brin_t_i ON brin_t USING brin (i) WITH (pages_per_range = 1, autosummarize = off);
"""


@pytest.fixture(scope="module")
def tenant(postgres_service: Any) -> Iterator[dict[str, Any]]:
    """A database owned by a fresh role whose search_path includes schema evil."""
    with owned_database(postgres_service, "ro", setup=SCHEMA, role_settings={"search_path": "public, evil"}) as info:
        yield info


@pytest.fixture
def conn(tenant: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**tenant, autocommit=True) as conn:
        yield conn


@pytest.fixture
def run(conn: psycopg.Connection[Any]) -> Iterator[Callable[..., dict[str, Any]]]:
    """query as a read-only tenant; afterwards, the canary must never have sung."""
    with querying(conn, TIMEOUT_MS) as (call, _notices):
        yield call


@pytest.mark.parametrize(
    ("statement", "function"),
    [
        ("SELECT evil.canary()", "canary()"),
        ("SELECT canary()", "canary()"),  # unqualified, found through the role's search_path
        ('SELECT "evil"."canary"()', "canary()"),
        ('SELECT U&"\\0063anary"()', "canary()"),
        ("SELECT 1 ### 2", "vol2(integer,integer)"),
        ("SELECT 1 OPERATOR(public.###) 2", "vol2(integer,integer)"),
        ("SELECT 1::checked", "vol1(integer)"),
        ("SELECT CAST(1 AS public.checked)", "vol1(integer)"),
        ("SELECT * FROM v", "canary()"),
        ("SELECT * FROM vv", "canary()"),  # a view on a view
        ("SELECT * FROM secured", "canary()"),  # a row-level-security policy
        ("SELECT evil_sum(i) FROM t", "sfunc(integer,integer)"),  # an aggregate's support function
        ("SELECT wrapper()", "canary()"),  # a STABLE SQL function with a BEGIN ATOMIC body
        ("SELECT t.attr FROM t", "attr(t)"),  # attribute notation calls attr(t)
        ("SELECT x FROM (SELECT evil.canary() AS x) s WHERE false", "canary()"),
        ("WITH c AS (SELECT evil.canary()) SELECT 1", "canary()"),
    ],
)
def test_volatile_functions_are_refused_however_they_are_reached(
    run: Callable[..., Any], statement: str, function: str
) -> None:
    with pytest.raises(AccessDenied, match=rf"{function.replace('(', '[(]').replace(')', '[)]')} is VOLATILE"):
        run(statement)


def test_explain_analyze_runs_the_same_policy(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(AccessDenied, match=r"canary.*VOLATILE"):
        tools.explain_query(conn, "SELECT * FROM v", analyze=True, read_only=True, statement_timeout_ms=TIMEOUT_MS)


def test_non_volatile_functions_and_the_allow_list_run(run: Callable[..., Any]) -> None:
    assert run("SELECT harmless(1), upper('a'), now() IS NOT NULL, random() < 2")["rows"] == [[2, "A", True, True]]
    assert run("SELECT count(*) FROM t, pg_sleep(0), gen_random_uuid()")["rows"] == [[100]]


def test_an_operator_extends_the_allow_list(conn: psycopg.Connection[Any]) -> None:
    policy = FunctionPolicy.from_names(["evil.canary"])
    result = decoded(
        tools.query(
            conn, "SELECT evil.canary()", [], max_rows=1, max_bytes=1000, statement_timeout_ms=TIMEOUT_MS, policy=policy
        )
    )
    assert result["rows"] == [[1]]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT brin_summarize_new_values('brin_t_i')",
        "SELECT brin_desummarize_range('brin_t_i', 0)",
        "SELECT gin_clean_pending_list('brin_t_i')",
    ],
)
def test_index_maintenance_is_refused_as_volatile_not_by_name(run: Callable[..., Any], statement: str) -> None:
    with pytest.raises(AccessDenied, match="is VOLATILE"):
        run(statement)


def test_trickling_rows_are_stopped_by_one_deadline_and_leave_no_lock(
    run: Callable[..., Any], tenant: dict[str, Any]
) -> None:
    with pytest.raises(QueryError, match="timed out after 1000 ms"):
        run("SELECT pg_sleep(0.05), i FROM t", statement_timeout_ms=1000)  # 5 s of rows, 50 ms each
    with psycopg.connect(**tenant) as other, other.transaction():
        other.execute("SET LOCAL lock_timeout = '1s'")
        other.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # no lock of the call is left


def test_wide_values_are_cut_by_postgres_and_memory_stays_bounded(run: Callable[..., Any]) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run("SELECT repeat('x', 50000000) FROM generate_series(1, 4)", statement_timeout_ms=60_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert result["truncated"] is True and result["cut"] == [[0, 0]]
    assert result["row_count"] == 1 and 0 < len(result["rows"][0][0]) < 1 << 20
    assert grown_mb < 64  # 200 MB of values crossed no wire into this process


def test_a_one_megabyte_statement_runs(run: Callable[..., Any]) -> None:
    text = "SELECT count(*) FROM t WHERE i IN (" + ",".join(str(i) for i in range(150_000)) + ")"
    assert run(text)["rows"] == [[100]]
