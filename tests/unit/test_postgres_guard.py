"""The read-only guard and its lexer, without a database.

Each refused text is one an attacker could send through ``query``; each accepted text is a
legitimate query the guard must not break (semicolons, comments, quotes and function names
inside literals are data, not code).
"""

from __future__ import annotations

import pytest

from mcp_tenants.errors import AccessDenied, InvalidInput, QueryError
from mcp_tenants.postgres.guard import check_execute, check_explain, check_query
from mcp_tenants.postgres.lexer import NUMBER, PARAM, PUNCT, QUOTED, STRING, WORD, tokenize

ACCEPTED = [
    "SELECT 1",
    "select 1;",
    "SELECT 1 ;;  -- trailing comment",
    "SELECT ';' AS semi",
    "SELECT 'it''s; fine'",
    "SELECT 'pg_read_file(''/etc/passwd'')'",
    "SELECT $$x; DROP TABLE t$$, $tag$ ; $$ still inside $tag$",
    "SELECT $pg_read_file$ body $pg_read_file$",
    "SELECT E'\\'; DROP TABLE t; --'",
    "SELECT E'a\\\\', 'b'",
    "/* leading */ SELECT 1",
    "/* nested /* comment; DROP TABLE t */ still a comment; */ SELECT 1",
    "-- comment; DELETE FROM t\nSELECT 1",
    "SELECT 1 -- it's a comment; DROP TABLE t",
    "SELECT 1 /* it's */",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "VALUES (1, 'a'), (2, 'b')",
    "TABLE t",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT * FROM t WHERE name LIKE 'x%' AND note LIKE '%%'",
    "SELECT $1::int + $2",
    'SELECT "delete", "insert" FROM t',
    'SELECT "into" FROM t',
    "SELECT pg_sleep(0.1)",
    "SELECT current_setting('work_mem')",
    "SELECT count(*) FROM pg_stat_activity",
    "SELECT a$b FROM t",
    "SELECT U&'\\0041' AS a, U&'!0041' UESCAPE '!' AS b",
    "SELECT x'1F', b'101', n'national'",
    "SELECT now() - interval '1 day'",
    "SELECT 1e-3, .5, 3.14, 10",
    "SELECT '{\"a\": 1}'::jsonb -> 'a'",
    "SELECT lo_get(1)",
    "SELECT txid_current_if_assigned()",
    "  \n\tSELECT 1\n",
]

REFUSED = [
    "SELECT 1; COMMIT; DROP TABLE t",
    "SELECT 1; SELECT 2",
    "SELECT 1\n;\nDROP TABLE t",
    "SELECT $$a$$; DROP TABLE t",
    "SELECT 'a'';'; DROP TABLE t",
    "SELECT E'\\''; DROP TABLE t --'",
    # An identifier may contain $: "x$$" is not the start of a dollar quote.
    "SELECT x$$; DROP TABLE t; --$$",
    "COMMIT; BEGIN READ WRITE; DELETE FROM t",
    "/*x*/ DELETE FROM t",
    "DELETE FROM t",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET i = 1",
    "MERGE INTO t USING s ON t.i = s.i WHEN MATCHED THEN DELETE",
    "TRUNCATE t",
    "DROP TABLE t",
    "GRANT SELECT ON t TO PUBLIC",
    "CREATE TEMP TABLE x (i int)",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH a AS (WITH b AS (UPDATE t SET i = 1 RETURNING *) SELECT * FROM b) SELECT * FROM a",
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
    "SELECT * INTO t2 FROM t",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN SELECT 1",
    "SHOW search_path",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT PG_READ_FILE('/etc/passwd')",
    "SELECT pg_catalog.pg_read_file('/etc/passwd')",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT pg_catalog.\"pg_read_file\"('/etc/passwd')",
    "SELECT \"PG_READ_FILE\"('/etc/passwd')",
    "SELECT pg_read_file/**/('/etc/passwd')",
    "SELECT pg_catalog/* x */./* y */pg_read_file('/etc/passwd')",
    "SELECT U&\"pg_read\\005ffile\"('/etc/passwd')",
    "SELECT u&\"pg!005fread!005ffile\" UESCAPE '!' ('/etc/passwd')",
    "SELECT U&\"\\+000070g_read_file\"('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT pg_stat_file('postgresql.conf')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/x')",
    "SELECT dblink_exec('dbname=x', 'DROP TABLE t')",
    "SELECT * FROM dblink('dbname=x', 'SELECT 1') AS r(a int)",
    "SELECT postgres_fdw_disconnect_all()",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(1)",
    "SELECT pg_reload_conf()",
    "SELECT pg_rotate_logfile()",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_xact_lock(1)",
    "SELECT nextval('seq')",
    "SELECT setval('seq', 100)",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_notify('c', 'x')",
    "SELECT pg_stat_reset()",
    "SELECT query_to_xml('select pg_read_file(''/etc/passwd'')', true, true, '')",
    "SELECT ts_stat('select 1')",
    "SELECT * FROM crosstab('select pg_read_file(1)') AS c(a text)",
    "SELECT rolpassword FROM pg_authid",
    "SELECT * FROM pg_catalog.pg_shadow",
    "SELECT * FROM pg_file_settings",
    "SELECT * FROM pg_hba_file_rules",
    "SELECT pg_switch_wal()",
    "SELECT pg_create_restore_point('x')",
    "SELECT 'a\\' , pg_read_file('/etc/passwd') --'",
    "NOTIFY c",
    "LISTEN c",
    "UNLISTEN *",
    "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$",
    "PREPARE p AS DELETE FROM t; EXECUTE p",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
    "COPY t FROM '/etc/passwd'",
    "CALL p()",
    "DECLARE c CURSOR FOR SELECT 1",
    "FETCH ALL FROM c",
    "LOCK TABLE t",
    "VACUUM t",
    "ANALYZE t",
    "SET ROLE postgres",
    "SET statement_timeout = 0",
    "RESET ALL",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "BEGIN",
    "( DELETE FROM t )",
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_legitimate_queries_are_accepted(sql: str) -> None:
    check_query(sql)


@pytest.mark.parametrize("sql", REFUSED)
def test_attacks_are_refused_with_access_denied(sql: str) -> None:
    with pytest.raises(AccessDenied) as err:
        check_query(sql)
    assert str(err.value)  # says what was refused


def test_refusal_names_the_function_and_why() -> None:
    with pytest.raises(AccessDenied, match=r"pg_read_file \(position 8\).*files"):
        check_query("SELECT pg_read_file('/etc/passwd')")


def test_refusal_of_a_write_points_to_execute() -> None:
    with pytest.raises(AccessDenied, match="use execute on a read-write tenant"):
        check_query("DELETE FROM t")


def test_second_statement_is_reported_with_its_position() -> None:
    with pytest.raises(AccessDenied, match=r"only one statement.*position 9"):
        check_query("SELECT 1; DROP TABLE t")


def test_show_is_refused_with_a_replacement() -> None:
    with pytest.raises(AccessDenied, match="current_setting"):
        check_query("SHOW work_mem")


def test_backslash_quote_depends_on_standard_conforming_strings() -> None:
    # With standard_conforming_strings off the server reads 'a\'...' as one literal ...
    sql = "SELECT 'a\\'; DROP TABLE t; --'"
    check_query(sql, standard_conforming_strings=False)
    # ... and with it on (the default) as 'a\' followed by a second statement.
    with pytest.raises(AccessDenied):
        check_query(sql, standard_conforming_strings=True)


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ; ", "-- only a comment", "/* c */"])
def test_empty_text_is_invalid_input(sql: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        check_query(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 /* unterminated",
        "SELECT 1 /* nested /* once */ but not closed",
        "SELECT 'unterminated",
        "SELECT E'ends with escaped quote\\'",
        "SELECT $a$ unterminated $b$",
        'SELECT "unterminated',
        "SELECT x'unterminated",
        'SELECT U&"\\00zz"',
        "SELECT U&\"a\" UESCAPE '+'",
        'SELECT U&"a" UESCAPE 1',
    ],
)
def test_malformed_text_is_a_query_error_with_position(sql: str) -> None:
    with pytest.raises(QueryError, match="position"):
        check_query(sql)


def test_explain_on_read_only_tenant_allows_only_reads() -> None:
    check_explain("SELECT * FROM t", read_only=True)
    with pytest.raises(AccessDenied):
        check_explain("DELETE FROM t", read_only=True)


def test_explain_on_read_write_tenant_allows_dml_but_not_ddl_or_blocked_functions() -> None:
    for sql in (
        "DELETE FROM t",
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET i = 2",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    ):
        check_explain(sql, read_only=False)
    for sql in (
        "DROP TABLE t",
        "SELECT 1; SELECT 2",
        "SELECT pg_read_file('x')",
        "SELECT dblink_exec('', 'DROP TABLE t')",
    ):
        with pytest.raises(AccessDenied):
            check_explain(sql, read_only=False)


def test_execute_allows_one_statement_of_any_kind() -> None:
    for sql in ("INSERT INTO t VALUES ($1)", "CREATE TABLE x (i int)", "DELETE FROM t;", "UPDATE t SET note = 'a;b'"):
        check_execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1); DELETE FROM t",
        "COMMIT",
        "BEGIN",
        "ROLLBACK",
        "START TRANSACTION",
        "SAVEPOINT s",
        "PREPARE TRANSACTION 'x'",
        "END",
    ],
)
def test_execute_refuses_several_statements_and_transaction_control(sql: str) -> None:
    with pytest.raises(AccessDenied):
        check_execute(sql)


def test_lexer_decodes_quoted_and_unicode_identifiers() -> None:
    tokens = tokenize('SELECT "a""b", U&"d\\0061t\\+000061", U&"x!0041" UESCAPE \'!\', Ab$1')
    assert [(t.kind, t.value) for t in tokens if t.kind in (QUOTED, WORD)] == [
        (WORD, "select"),
        (QUOTED, 'a"b'),
        (QUOTED, "data"),
        (QUOTED, "xA"),
        (WORD, "ab$1"),
    ]


def test_lexer_skips_comments_and_literals_and_keeps_positions() -> None:
    tokens = tokenize("SELECT /* c */ $1, 'x', $q$y$q$, 2 -- z\n;")
    assert [(t.kind, t.pos) for t in tokens] == [
        (WORD, 0),
        (PARAM, 15),
        (PUNCT, 17),
        (STRING, 19),
        (PUNCT, 22),
        (STRING, 24),
        (PUNCT, 31),
        (NUMBER, 33),
        (PUNCT, 40),
    ]


def test_lexer_folds_only_ascii_letters() -> None:
    # PostgreSQL lower-cases A-Z only (in UTF8 databases); "É" stays as typed.
    assert tokenize("SELECT Élan")[1].value == "Élan"


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM t", "(SELECT 1) UNION (SELECT 2)", "VALUES (1)", "TABLE t", "SHOW work_mem"]
)
def test_execute_sends_plain_reads_to_query(sql: str) -> None:
    with pytest.raises(InvalidInput, match="use query"):
        check_execute(sql)


@pytest.mark.parametrize(
    "sql", ["INSERT INTO t VALUES (1) RETURNING *", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x"]
)
def test_execute_still_accepts_writes_that_return_rows(sql: str) -> None:
    check_execute(sql)
