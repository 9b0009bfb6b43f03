"""The text definitions PostgreSQL stores, read with its own parser: function bodies and views.

Function bodies. A non-volatile SQL function without ``BEGIN ATOMIC`` and a non-volatile
PL/pgSQL function keep their body as text, parsed only when they run; PostgreSQL runs them with
a read-only snapshot, which stops writes but not volatile functions (``pg_terminate_backend``,
``pg_reload_conf``, dblink). ``inspect_body`` reads the body with libpg_query (pglast's
``parse_plpgsql`` for PL/pgSQL) and gives back the names its SQL uses, which ``reach`` judges
like a statement's, in every schema. A PL/pgSQL body that runs SQL built at run time
(``EXECUTE``, ``FOR ... IN EXECUTE``, ``RETURN QUERY EXECUTE``, ``OPEN ... FOR EXECUTE``)
is refused: no check can see what it will run. So is a body the parser cannot read (pglast's
PL/pgSQL parser does not know cursor variables, for one).

Views over credentials. The catalogs that hold credentials are PostgreSQL's own (pinned):
``pg_depend`` records no view's use of them, so ``reach`` sends back the definitions of the views
on a path to them, and ``exposing_views`` decides which expose a credential column in their
output: a column whose expression mentions ``rolpassword``, ``umoptions`` or ``subconninfo``, or
a column of a view that exposes one, or a whole row of either (by name, so it can only
over-count). ``pg_roles`` and ``pg_user`` (which print ``'********'``) and
``information_schema.user_mappings`` do not; ``pg_shadow``, ``pg_user_mappings`` and
``information_schema.user_mapping_options`` do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pglast import parser as pg_parser

from mcp_tenants.errors import InvalidInput, QueryError
from mcp_tenants.postgres.sqltree import References, parse_tree, references

#: Columns of the credentials catalogs (pg_authid, pg_user_mapping, pg_subscription).
CREDENTIAL_COLUMNS = frozenset({"rolpassword", "umoptions", "subconninfo"})
CREDENTIAL_CATALOGS = frozenset({"pg_authid", "pg_user_mapping", "pg_subscription"})

_DYNAMIC = ('"PLpgSQL_stmt_dynexecute"', '"PLpgSQL_stmt_dynfors"', '"dynquery"')
_RE_QUERY = re.compile(r'"query":("(?:[^"\\]|\\.)*")')
_ASSIGNMENT = re.compile(r'^\s*[\w."$\[\]]+\s*(?::=|=)\s*', re.DOTALL)


class Uninspectable(Exception):
    """A function body that cannot be checked; the message says why."""


def inspect_body(language: str, body: str, *, legacy_server: bool = False) -> References:
    """The names the SQL of a function body uses; raises ``Uninspectable`` when it cannot tell."""
    if language == "sql":
        return _sql_references([body], legacy_server)
    try:
        tree = pg_parser.parse_plpgsql_json(body)
    except pg_parser.ParseError as exc:
        raise Uninspectable(f"PostgreSQL's PL/pgSQL parser (libpg_query) cannot read its body: {exc}") from None
    if any(marker in tree for marker in _DYNAMIC):
        raise Uninspectable("runs SQL built at run time (EXECUTE), which no check can see")
    return _sql_references([json.loads(q) for q in _RE_QUERY.findall(tree)], legacy_server)


def _sql_references(texts: Iterable[str], legacy_server: bool) -> References:
    """The references of SQL texts: statements, or PL/pgSQL expressions (``n > f()``, ``x := g()``)."""
    found: list[References] = []
    for text in texts:
        for candidate in (text, f"SELECT {text}", f"SELECT {_ASSIGNMENT.sub('', text, count=1)}"):
            try:
                found.append(references(parse_tree(candidate), legacy_server))
                break
            except (QueryError, InvalidInput):
                continue
        else:
            raise Uninspectable("PostgreSQL's parser (libpg_query) cannot read the SQL of its body")
    return References.union(found)


def exposing_views(views: Iterable[tuple[str, str]]) -> set[str]:
    """The views among (name, definition) whose output holds a credential column."""
    trees: dict[str, list[Any]] = {}
    for name, definition in views:
        try:
            trees[name] = [raw.stmt for raw in pg_parser.parse_sql(definition)]
        except pg_parser.ParseError:
            trees[name] = []  # not PostgreSQL's SQL: counted as exposing, below
    tainted_columns = set(CREDENTIAL_COLUMNS)
    tainted_relations = set(CREDENTIAL_CATALOGS)
    exposing = {name for name, stmts in trees.items() if not stmts}
    changed = True
    while changed:  # a fixed point: a view that exposes makes the views over it expose
        changed = False
        for name, stmts in trees.items():
            outputs = {c for stmt in stmts for c in _tainted_outputs(stmt, tainted_columns, tainted_relations)}
            if outputs - tainted_columns or (outputs and name not in exposing):
                tainted_columns |= outputs
                exposing.add(name)
                tainted_relations.add(name.rsplit(".", 1)[-1].strip('"'))
                changed = True
    return exposing


def _tainted_outputs(stmt: Any, columns: set[str], relations: set[str]) -> set[str]:
    """Output names of the target entries of every SELECT in ``stmt`` that select a credential:
    a credential column by name, a whole row of a relation that holds one, or any column of a
    function or subquery in FROM that is given one (``LATERAL pg_options_to_table(umoptions)``)."""
    found: set[str] = set()
    for select in _nodes(stmt, "SelectStmt"):
        ranges = [r for r in _nodes(select.fromClause, "RangeVar") if r.relname in relations]
        rows = {r.alias.aliasname if r.alias else r.relname for r in ranges}
        derived: set[str] = set()
        local = set(columns)
        for kind in ("RangeFunction", "RangeSubselect"):
            for item in _nodes(select.fromClause, kind):
                if item.alias and any(_credential(ref, columns, rows, set()) for ref in _nodes(item, "ColumnRef")):
                    derived.add(item.alias.aliasname)
                    local.update(getattr(c, "sval", "") for c in item.alias.colnames or ())
        for target in select.targetList or ():
            if any(_credential(ref, local, rows, derived) for ref in _nodes(target.val, "ColumnRef")):
                found.add(target.name or _last_field(target.val) or "?column?")
    return found


def _credential(ref: Any, columns: set[str], rows: set[str], derived: set[str]) -> bool:
    """Whether a column reference selects a credential (see ``_tainted_outputs``)."""
    fields = [getattr(f, "sval", "*") for f in ref.fields]
    if fields[0] in derived:
        return True
    if fields[-1] == "*":
        return bool(rows)  # t.* or * over a relation that holds credentials
    return fields[-1] in columns or (len(fields) == 1 and fields[0] in rows)


def _last_field(node: Any) -> str | None:
    if type(node).__name__ == "ColumnRef":
        return getattr(node.fields[-1], "sval", None)
    return None


def _nodes(node: Any, kind: str) -> Iterator[Any]:
    """Every node of type ``kind`` in the tree under ``node`` (iterative: no recursion on depth)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, tuple | list):
            stack.extend(current)
        elif hasattr(current, "__slots__") and type(current).__module__.startswith("pglast"):
            if type(current).__name__ == kind:
                yield current
            stack.extend(getattr(current, slot, None) for slot in current.__slots__)
