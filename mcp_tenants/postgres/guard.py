"""The statement guard: what ``query``, ``explain_query`` and ``execute`` agree to send.

``query`` is read-only for every tenant. The guard is one layer of several, in this order:

1. this lexical check (see ``lexer``): exactly one statement; it starts with SELECT, WITH,
   VALUES or TABLE; no data-modifying keyword (INSERT, UPDATE, DELETE, MERGE, SELECT ... INTO);
   no function or catalog that reaches outside the transaction (files, programs, other
   connections, other backends, configuration, advisory locks, sequences, transaction ids,
   notifications, SQL-in-a-string executors such as ``query_to_xml``);
2. the extended query protocol, which makes the server itself refuse a second statement;
3. the statement runs as ``DECLARE CURSOR``, which accepts only a SELECT/VALUES-shaped query;
4. a ``READ ONLY`` transaction, always rolled back, with ``statement_timeout`` and
   ``lock_timeout`` set locally;
5. ``DISCARD ALL`` when the connection goes back to the pool (``tools.reset_connection``).

A lexical guard cannot know what a user-defined function does. The protection that holds
whatever the SQL is a dedicated role: ``GRANT pg_read_all_data`` (or per-table SELECT) and no
``pg_read_server_files``, ``pg_write_server_files`` or ``pg_execute_server_program``.
"""

from __future__ import annotations

import logging

from mcp_tenants.errors import AccessDenied, InvalidInput
from mcp_tenants.postgres.lexer import PUNCT, QUOTED, WORD, Token, tokenize

logger = logging.getLogger(__name__)

#: Statements ``query`` runs, by first keyword.
READ_KEYWORDS = frozenset({"select", "with", "values", "table"})
#: Statements a read-write tenant may also explain (``analyze`` is rolled back).
WRITE_KEYWORDS = frozenset({"insert", "update", "delete", "merge"})
#: First keywords ``execute`` refuses: each call already is one committed transaction.
TRANSACTION_KEYWORDS = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare"}
)

# Exact names (functions, views, catalogs), compared lower-cased, with the reason shown to the
# user. Names are refused wherever they appear as an identifier, quoted or not, qualified or not:
# a column that happens to share one of these names must be quoted differently or aliased.
_BLOCKED_NAMES: dict[str, str] = {}
_BLOCKED_PREFIXES: dict[str, str] = {}


def _block(reason: str, names: str = "", prefixes: str = "") -> None:
    _BLOCKED_NAMES.update(dict.fromkeys(names.split(), reason))
    _BLOCKED_PREFIXES.update(dict.fromkeys(prefixes.split(), reason))


_block(
    "reads or writes files on the database server",
    "pg_stat_file pg_logdir_ls pg_current_logfile lo_import lo_export",
    "pg_read_ pg_ls_ pg_file_",
)
_block("changes large objects", "lo_create lo_creat lo_unlink lo_put lo_from_bytea lo_truncate lo_truncate64 lowrite")
_block("opens connections to other servers", "", "dblink postgres_fdw_")
_block(
    "signals other server processes",
    "pg_cancel_backend pg_terminate_backend pg_reload_conf pg_rotate_logfile "
    "pg_rotate_logfile_old pg_log_backend_memory_contexts pg_promote",
)
_block("changes server configuration", "set_config")
_block("takes advisory locks that outlive the transaction", "", "pg_advisory pg_try_advisory")
_block("changes a sequence outside the transaction", "nextval setval")
_block("consumes a transaction id", "txid_current pg_current_xact_id")
_block("sends notifications", "pg_notify")
_block(
    "runs SQL given as a string, out of the guard's sight",
    "query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml "
    "cursor_to_xmlschema ts_stat ts_rewrite connectby xpath_table",
    "crosstab",
)
_block("resets statistics", "pg_stat_statements_reset", "pg_stat_reset")
_block(
    "controls replication, WAL or backups",
    "pg_switch_wal pg_switch_xlog pg_start_backup pg_stop_backup pg_import_system_collations",
    "pg_backup_ pg_wal_replay_ pg_create_ pg_drop_ pg_copy_ pg_replication_ pg_logical_ binary_upgrade_",
)
_block(
    "exposes credentials or server configuration files",
    "pg_authid pg_shadow pg_user_mapping pg_user_mappings pg_hba_file_rules pg_ident_file_mappings",
)

_READ_ONLY_HINT = (
    "query is read-only: only one SELECT, WITH, VALUES or TABLE statement is allowed; "
    "use execute on a read-write tenant to change data"
)


def check_query(sql: str, *, standard_conforming_strings: bool = True) -> None:
    """Refuse ``sql`` unless it is one read-only statement ``query`` may run.

    Raises ``AccessDenied`` (what was refused, and why), ``InvalidInput`` for empty text, or
    ``QueryError`` for text that cannot be scanned (an unterminated literal or comment).
    """
    tokens = _one_statement(sql, standard_conforming_strings)
    first = _first_keyword(tokens)
    if first == "explain":
        raise AccessDenied(f"{_READ_ONLY_HINT}; use explain_query to see a plan")
    if first == "show":
        raise AccessDenied(f"{_READ_ONLY_HINT}; use SELECT current_setting('name') instead of SHOW")
    if first not in READ_KEYWORDS:
        raise AccessDenied(f"{_READ_ONLY_HINT} (got {first.upper() or 'no keyword'})")
    _refuse_writes(tokens)
    _refuse_blocked_names(tokens)


def check_explain(sql: str, *, read_only: bool, standard_conforming_strings: bool = True) -> None:
    """Refuse ``sql`` unless ``explain_query`` may explain it for this tenant.

    A read-only tenant may explain what ``query`` may run; a read-write tenant may also explain
    INSERT, UPDATE, DELETE and MERGE (``analyze`` runs them in a transaction that is rolled back).
    """
    if read_only:
        check_query(sql, standard_conforming_strings=standard_conforming_strings)
        return
    tokens = _one_statement(sql, standard_conforming_strings)
    first = _first_keyword(tokens)
    if first not in READ_KEYWORDS | WRITE_KEYWORDS:
        raise AccessDenied(
            "explain_query explains one SELECT, WITH, VALUES, TABLE, INSERT, UPDATE, DELETE or "
            f"MERGE statement (got {first.upper() or 'no keyword'})"
        )
    _refuse_blocked_names(tokens)


def check_execute(sql: str, *, standard_conforming_strings: bool = True) -> None:
    """Refuse more than one statement, transaction control, or a plain read in ``execute``."""
    tokens = _one_statement(sql, standard_conforming_strings)
    first = _first_keyword(tokens)
    if first in TRANSACTION_KEYWORDS:
        raise AccessDenied(
            f"execute runs each statement in its own transaction and commits it; {first.upper()} is not allowed here"
        )
    if first in ("select", "values", "table", "show"):
        # execute fetches a statement's whole result into memory: reads go through query, whose
        # rows and bytes are capped and streamed.
        raise InvalidInput(f"execute is for statements that change something; use query to run {first.upper()}")


def _one_statement(sql: str, scs: bool) -> list[Token]:
    """Tokenize and return the tokens of the only statement, trailing semicolons dropped."""
    tokens = tokenize(sql, standard_conforming_strings=scs)
    while tokens and tokens[-1][:2] == (PUNCT, ";"):
        tokens.pop()
    if not tokens:
        raise InvalidInput("sql is empty: give one SQL statement")
    for tok in tokens:
        if tok[:2] == (PUNCT, ";"):
            logger.info("guard refused a multi-statement text")
            raise AccessDenied(
                f"only one statement per call is allowed; found a second statement after the "
                f"';' at position {tok.pos + 1}"
            )
    return tokens


def _first_keyword(tokens: list[Token]) -> str:
    # "(SELECT 1) UNION (SELECT 2)" is a SELECT: skip the opening parentheses.
    for tok in tokens:
        if tok[:2] != (PUNCT, "("):
            return tok.value if tok.kind == WORD else ""
    return ""


def _refuse_writes(tokens: list[Token]) -> None:
    for i, tok in enumerate(tokens):
        if tok.kind != WORD:
            continue
        if tok.value in WRITE_KEYWORDS:
            before = tokens[i - 1].value if i else ""
            if tok.value == "update" and before in ("for", "key"):
                raise AccessDenied(
                    f"{_READ_ONLY_HINT}: row locks (FOR UPDATE) are not allowed (position {tok.pos + 1})"
                )
            raise AccessDenied(f"{_READ_ONLY_HINT}: {tok.value.upper()} at position {tok.pos + 1} would change data")
        if tok.value == "into":
            raise AccessDenied(f"{_READ_ONLY_HINT}: SELECT ... INTO at position {tok.pos + 1} would create a table")


def _refuse_blocked_names(tokens: list[Token]) -> None:
    for tok in tokens:
        if tok.kind not in (WORD, QUOTED):
            continue
        # Quoted names are case-sensitive in PostgreSQL, but "PG_READ_FILE" is refused too:
        # nothing legitimate needs it, and it closes the door on look-alike wrappers.
        name = tok.value.lower()
        reason = _BLOCKED_NAMES.get(name) or next(
            (why for prefix, why in _BLOCKED_PREFIXES.items() if name.startswith(prefix)), None
        )
        if reason is not None:
            logger.info("guard refused %s", name)
            raise AccessDenied(f"{name} (position {tok.pos + 1}) is not allowed: it {reason}")
