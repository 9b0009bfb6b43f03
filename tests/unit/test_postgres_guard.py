"""The read-only guard without a database: PostgreSQL's parser, the statement rules, references.

The function policy itself needs the tenant's catalog: tests/integration/test_postgres_attacks.py
and test_postgres_guard_differential.py run it against a real server.
"""

from __future__ import annotations

import re
import time

import pytest

from mcp_tenants.errors import AccessDenied, InvalidInput, QueryError
from mcp_tenants.postgres.guard import check_execute, check_explain, check_query
from mcp_tenants.postgres.policy import ALLOW_VARIABLE, FunctionPolicy
from mcp_tenants.postgres.sqltree import parse_one

ACCEPTED = [
    "SELECT 1",
    "select 1;",
    "SELECT 1 ;  -- trailing comment",
    "SELECT ';' AS semi",
    "SELECT 'it''s; fine'",
    "SELECT $$x; DROP TABLE t$$, $tag$ ; $$ still inside $tag$",
    "SELECT E'\\'; DROP TABLE t; --'",
    "/* nested /* comment; DROP TABLE t */ still a comment; */ SELECT 1",
    "-- comment; DELETE FROM t\nSELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "VALUES (1, 'a'), (2, 'b')",
    "TABLE t",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT $1::int + $2",
    'SELECT "delete", "insert" FROM t',
    "SELECT U&'\\0041' AS a, U&'!0041' UESCAPE '!' AS b",
    "SELECT x'1F', b'101', n'national'",
]

REFUSED = [
    "DELETE FROM t",
    "/*x*/ DELETE FROM t",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET i = 1",
    "MERGE INTO t USING s ON t.i = s.i WHEN MATCHED THEN DELETE",
    "TRUNCATE t",
    "DROP TABLE t",
    "CREATE TEMP TABLE x (i int)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH a AS (WITH b AS (UPDATE t SET i = 1 RETURNING *) SELECT * FROM b) SELECT * FROM a",
    "SELECT * FROM (WITH b AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM b) s",
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
    "SELECT * INTO t2 FROM t",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM (SELECT * FROM t FOR SHARE) s",
    "SELECT (SELECT i FROM t FOR KEY SHARE)",
    "EXPLAIN ANALYZE DELETE FROM t",
    "SHOW search_path",
    "SET ROLE postgres",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "DO $$BEGIN NULL; END$$",
    "SELECT 1; SELECT 2",
    "SELECT 1; COMMIT; DROP TABLE t",
    "SELECT $$a$$; DROP TABLE t",
    "SELECT E'\\''; DROP TABLE t --'",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_legitimate_queries_are_accepted(sql: str) -> None:
    assert check_query(sql).kind == "SelectStmt"


@pytest.mark.parametrize("sql", REFUSED)
def test_statements_that_are_not_one_plain_read_are_refused(sql: str) -> None:
    with pytest.raises(AccessDenied):
        check_query(sql)


def test_refusal_of_a_write_points_to_execute() -> None:
    with pytest.raises(AccessDenied, match=r"use execute on a read-write tenant.*\(got DELETE\)"):
        check_query("DELETE FROM t")


def test_show_is_refused_with_a_replacement() -> None:
    with pytest.raises(AccessDenied, match=r"current_setting"):
        check_query("SHOW work_mem")


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("SELEC 1", 'syntax error at or near "SELEC"', 1),
        ("SELECT 'unterminated", "unterminated quoted string", 8),
        ("SELECT 1 /* open", "unterminated /* comment", 10),
        ("SELECT $a$ x", "unterminated dollar-quoted string", 8),
    ],
)
def test_text_that_does_not_parse_gets_postgres_own_message(sql: str, message: str, position: int) -> None:
    with pytest.raises(QueryError, match=rf"{re.escape(message)}.*\(at position {position}\)") as err:
        check_query(sql)
    assert "^" in str(err.value)


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ; ", "-- only a comment", "/* c */"])
def test_empty_text_is_invalid_input(sql: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        check_query(sql)


def test_literals_are_data_not_references() -> None:
    refs = parse_one("SELECT 'pg_read_file(1)', $$pg_terminate_backend(1)$$, E'\\' , pg_sleep(1) --'").refs
    assert not refs.functions


def test_statement_text_drops_the_trailing_semicolon_and_keeps_its_start() -> None:
    statement = parse_one("SELECT 1; ")
    assert (statement.start, statement.text) == (0, "SELECT 1")
    statement = parse_one("  SELECT 'é' ;  -- done")
    assert statement.text.strip() == "SELECT 'é'"


def test_references_cover_every_way_to_call_a_function() -> None:
    refs = parse_one(
        'SELECT public.f(1), "Weird Name"(2), U&"\\0070g_sleep"(0), a.b, (t).attr, x OPERATOR(s.+) 1,'
        " 1 + 2 BETWEEN 0 AND 5, y IN (1, 2), '1'::mytype, CAST(x AS s.dom), date '2020-01-01',"
        " CASE z WHEN 1 THEN 2 END FROM s.v AS v TABLESAMPLE bernoulli(1) JOIN u USING (i)"
        " ORDER BY 1 USING ~<~"
    ).refs
    assert {("public", "f"), (None, "Weird Name"), (None, "pg_sleep"), (None, "bernoulli")} <= refs.functions
    assert {("s", "+"), (None, "+"), (None, ">="), (None, "<="), (None, "="), (None, "~<~")} <= refs.operators
    assert {(None, "mytype"), ("s", "dom"), (None, "date")} <= refs.types
    assert {("s", "v"), (None, "u")} <= refs.relations
    assert {"b", "attr"} <= refs.attributes


def test_names_repeated_thousands_of_times_are_each_found_once() -> None:
    sql = (
        "SELECT "
        + " + ".join(f"f{i % 50}(x)" for i in range(5_000))
        + ', s."Quoted ""Name"""(1), g(1)::t, é(2) OPERATOR(s.===) 3 FROM r, s."Rel ation"'
    )
    refs = parse_one(sql).refs
    assert refs.functions == {(None, f"f{i}") for i in range(50)} | {("s", 'Quoted "Name"'), (None, "g"), (None, "é")}
    assert refs.operators == {(None, "+"), ("s", "===")}
    assert refs.types == {(None, "t")}
    assert refs.relations == {(None, "r"), ("s", "Rel ation")}


def test_a_statement_without_names_still_reports_its_relations_and_implied_equals() -> None:
    refs = parse_one("SELECT * FROM a NATURAL JOIN b").refs
    assert (refs.relations, refs.operators, refs.functions) == ({(None, "a"), (None, "b")}, {(None, "=")}, set())


def test_select_1_references_nothing_so_the_catalog_is_not_asked() -> None:
    assert not parse_one("SELECT 1, 'x', NULL, true").refs


def test_older_servers_resolve_syntax_functions_by_search_path_too() -> None:
    sql = "SELECT extract(year FROM x), normalize(y)"
    assert (None, "extract") not in parse_one(sql).refs.functions
    assert {(None, "extract"), (None, "normalize")} <= check_query(sql, server_version=140_000).refs.functions


def test_servers_older_than_13_are_refused_clearly() -> None:
    with pytest.raises(AccessDenied, match=r"PostgreSQL 12 is not supported.*upgrade"):
        check_query("SELECT 1", server_version=120_000)


def test_huge_statements_are_checked_quickly_and_without_recursion() -> None:
    cases = [
        "SELECT 1 WHERE x IN (" + ",".join(str(i) for i in range(150_000)) + ")",  # ~1 MB
        "SELECT '" + "x" * 1_000_000 + "'",
        "SELECT " + ",".join(f'U&"\\0061{i}"' for i in range(400)),
        "SELECT " + "+".join(["1"] * 50_000),  # 50,000 levels deep
    ]
    for sql in cases:
        started = time.perf_counter()
        check_query(sql)
        assert time.perf_counter() - started < 30  # a sanity bound for a shared machine, not a benchmark


def test_nesting_beyond_the_parser_limit_is_a_clear_error() -> None:
    with pytest.raises(QueryError, match="nests too deeply"):
        check_query("SELECT " + "(" * 100_000 + "1" + ")" * 100_000)


def test_explain_on_read_only_tenant_allows_only_reads() -> None:
    check_explain("SELECT 1", read_only=True)
    with pytest.raises(AccessDenied):
        check_explain("DELETE FROM t", read_only=True)


def test_explain_on_read_write_tenant_allows_dml_but_not_ddl() -> None:
    for sql in ("DELETE FROM t", "INSERT INTO t VALUES (1)", "UPDATE t SET i = 2", "SELECT 1"):
        check_explain(sql, read_only=False)
    with pytest.raises(AccessDenied):
        check_explain("DROP TABLE t", read_only=False)


@pytest.mark.parametrize("sql", ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT a", "PREPARE TRANSACTION 'x'"])
def test_execute_refuses_transaction_control(sql: str) -> None:
    with pytest.raises(AccessDenied, match="own transaction"):
        check_execute(sql)


@pytest.mark.parametrize("sql", ["SELECT 1", "TABLE t", "VALUES (1)", "SHOW work_mem"])
def test_execute_sends_plain_reads_to_query(sql: str) -> None:
    with pytest.raises(InvalidInput, match="use query"):
        check_execute(sql)


def test_execute_accepts_writes_and_reports_returning() -> None:
    assert check_execute("INSERT INTO t VALUES (1) RETURNING *").has_returning
    assert check_execute("CREATE TABLE x (i int)").kind == "CreateStmt"
    assert check_execute("SELECT * INTO t2 FROM t").has_into


def test_policy_refusal_names_the_function_why_and_how_to_allow_it() -> None:
    policy = FunctionPolicy.from_names(["public.my_volatile", "evil.f(integer,text)", "pg_catalog.lo_export"])
    refusal = policy.refuse([("f", "pg_terminate_backend(integer,bigint)", "volatile", "internal")], "query")
    assert refusal is not None
    text = str(refusal)
    assert "pg_terminate_backend(integer,bigint) is VOLATILE" in text
    assert ALLOW_VARIABLE in text and "random" in text
    assert "public.my_volatile" in policy.allowed and "pg_catalog.pg_sleep" in policy.allowed
    assert policy.refuse([], "query") is None


def test_the_allow_list_matches_postgres_own_functions_by_name_and_the_operators_by_signature() -> None:
    policy = FunctionPolicy.from_names(["public.my_volatile", "evil.f(integer,text)", "pg_catalog.lo_export"])
    assert "pg_sleep" in policy.builtin and "lo_export" in policy.builtin
    assert policy.qualified == ("public.my_volatile",)
    assert policy.signatures == ("evil.f(integer, text)",)  # as pg_catalog.oidvectortypes writes them
    assert "pg_stat_statements.pg_stat_statements" in policy.extensions


def test_refusals_say_why_for_every_reason() -> None:
    policy = FunctionPolicy.from_names()
    found = [
        ("f", "public.row_count(text)", "language", "plperl"),
        ("f", "query_to_xml(text,boolean,boolean,text)", "denied", "internal"),
        ("r", "pg_authid", "credentials", ""),
        ("r", "public.remote", "foreign", ""),
    ]
    text = str(policy.refuse(found, "query"))
    assert "written in plperl" in text and "runs SQL given as text" in text
    assert "pg_authid is not allowed: it holds credentials" in text and "public.remote is a foreign table" in text
