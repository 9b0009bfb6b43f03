"""What the guard reads in a statement and in the definitions PostgreSQL stores, without a server:
statements with nothing to resolve, parameters, function bodies, views over credentials."""

from __future__ import annotations

import pytest

from mcp_tenants.postgres.definitions import Uninspectable, exposing_views, inspect_body
from mcp_tenants.postgres.sqltree import parse_one


@pytest.mark.parametrize(
    ("sql", "trivial"),
    [
        ("SELECT 1", True),
        ("SELECT 1, 'a', NULL, true, 1.5 LIMIT 2", True),
        ("VALUES (1, 'a'), (2, $1)", True),
        ("SELECT $1", True),
        ("SELECT DISTINCT 1", False),  # sorts and compares
        ("SELECT 1 UNION SELECT 2", False),
        ("VALUES (1) ORDER BY 1", False),
        ("SELECT 1::int", False),  # names a type
        ("SELECT 1 IN (SELECT 1)", False),  # an implicit "="
        ("SELECT -1", True),  # the parser folds the sign into the constant
        ("SELECT -$1", False),  # the operator "-"
        ("SELECT x FROM t", False),
    ],
)
def test_only_statements_that_reach_nothing_in_the_catalog_are_trivial(sql: str, trivial: bool) -> None:
    assert parse_one(sql).trivial is trivial


def test_parameters_are_located_in_the_statements_own_bytes() -> None:
    statement = parse_one("SELECT 'é', $1, $12 ; ")
    data = statement.text.encode()
    assert [(n, data[a:b]) for n, a, b in statement.parameters()] == [(1, b"$1"), (12, b"$12")]


def test_an_in_subquery_implies_an_equality_for_the_name_based_check() -> None:
    assert (None, "=") in parse_one("SELECT 1 IN (SELECT 1)").refs.operators
    assert (None, "=") in parse_one("SELECT 1 <> ALL (SELECT 1)").refs.operators


def test_sql_bodies_give_the_names_they_use() -> None:
    refs = inspect_body("sql", "SELECT evil.canary(); SELECT count(*) FROM t WHERE x ### 1")
    assert ("evil", "canary") in refs.functions and (None, "count") in refs.functions
    assert (None, "###") in refs.operators and (None, "t") in refs.relations


def test_plpgsql_bodies_give_the_names_of_their_expressions_and_statements() -> None:
    body = """CREATE OR REPLACE FUNCTION public.f(n integer) RETURNS integer LANGUAGE plpgsql STABLE AS $f$
DECLARE k int := g(n);
BEGIN
  PERFORM h();
  k := k + m(n);
  IF k > p() THEN RETURN q(); END IF;
  SELECT count(*) INTO k FROM t WHERE t.n = n;
  RETURN k;
END $f$"""
    refs = inspect_body("plpgsql", body)
    assert {(None, name) for name in ("g", "h", "m", "p", "q", "count")} <= refs.functions
    assert (None, "t") in refs.relations


@pytest.mark.parametrize(
    "statement",
    [
        "EXECUTE 'SELECT ' || x INTO k",
        "FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP",
        "RETURN QUERY EXECUTE 'SELECT 1'",
    ],
)
def test_plpgsql_bodies_that_run_sql_built_at_run_time_are_uninspectable(statement: str) -> None:
    returns = "SETOF integer" if "RETURN QUERY" in statement else "integer"
    body = (
        f"CREATE FUNCTION f(x text) RETURNS {returns} LANGUAGE plpgsql STABLE AS $f$"
        f"DECLARE k int; r record; BEGIN {statement}; RETURN; END $f$"
    ).replace("RETURN; END", "RETURN NULL; END" if returns == "integer" else "RETURN; END")
    with pytest.raises(Uninspectable, match="EXECUTE"):
        inspect_body("plpgsql", body)


def test_views_that_select_a_credential_column_expose_it_through_views_over_them() -> None:
    views = [
        ("pg_shadow", "SELECT pg_authid.rolname AS usename, pg_authid.rolpassword AS passwd FROM pg_authid;"),
        ("pg_user", "SELECT pg_shadow.usename, '********'::text AS passwd FROM pg_shadow;"),
        ("pg_roles", "SELECT pg_authid.rolname, '********'::text AS rolpassword FROM pg_authid;"),
        ("mine", "SELECT s.passwd AS p FROM pg_shadow s;"),
        ("options", "SELECT o.option_value FROM pg_user_mapping um, LATERAL pg_options_to_table(um.umoptions) o;"),
        ("whole", "SELECT a FROM pg_authid a;"),
    ]
    assert exposing_views(views) == {"pg_shadow", "mine", "options", "whole"}
