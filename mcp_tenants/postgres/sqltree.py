"""SQL read by PostgreSQL's own parser: libpg_query, through pglast, never a grammar of ours.

Which parser. pglast 5 embeds the parser of PostgreSQL 15 (``PARSER_VERSION``). A parser and a
server of different versions can disagree, and the dangerous direction is a parser *newer* than
the server: a construct the new grammar reads as special syntax may be a plain function call to
the old server (PostgreSQL 16 reads ``JSON_OBJECT(...)`` as syntax, 15 as a call of a function
``json_object`` that anyone may define). A parser *older* than the server sees at least as many
function calls, and rejects syntax it does not know (a syntax error, never a wrong verdict).
So the parser is the oldest grammar we serve, and:

- servers of version 15 and newer are served as they are;
- servers of 13 and 14 (older than the parser) are served with one added rule: every function
  the PostgreSQL 15 grammar qualifies with ``pg_catalog`` on its own (``EXTRACT``, ``TRIM``,
  ``NORMALIZE``, ``AT TIME ZONE``, ...) is also resolved as an unqualified name, as an older
  grammar might; no other construct of 15 turns a call of 13/14 into syntax;
- servers older than 13 (past end of life) are refused with a clear message.

How the tree is read. libpg_query serializes the tree as JSON; the references the guard needs
(function names, operators, type names, relations, INTO, locking clauses, CTE kinds) are keys of
that machine-written JSON and are found with regular expressions over it. No Python recursion
follows the input's depth, and a key can never be faked from inside a string literal, because a
JSON string cannot contain an unescaped quote. The C parser itself recurses on deep trees, so
large statements are parsed on a thread with a large stack.

What the parser costs. PostgreSQL's scanner (libpg_query's, and the server's own, which reads
the same text again) is quadratic on long runs of operator characters: it matches a whole run,
then gives back all but one character and matches the rest again (``1 ++++...+``, nested
``/*/*...*/*/``). A 40 KB run costs two seconds of CPU, 1 MB would cost half an hour, in the
parser and again in the server, where no timeout interrupts it. ``lexical_cost`` bounds that
work in one linear pass before anything else reads the text: the sum of the squares of the
runs' lengths, counted wherever they are (a run inside a string literal counts too, so the
bound can only refuse, never admit).
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from pglast import parser as pg_parser

from mcp_tenants.errors import AccessDenied, InvalidInput, QueryError
from mcp_tenants.postgres.diagnostics import excerpt

#: PostgreSQL version of the embedded grammar (pglast 5.x: 15).
PARSER_VERSION = 150_000
#: Oldest server served (see the module docstring).
OLDEST_SERVER = 130_000

# The C parser recurses once per level of a left-deep expression ("1+1+...+1"); about 200 bytes
# of stack per level. Statements up to this many characters cannot nest deeper than the default
# thread stack holds; longer ones are parsed on a thread whose stack holds 1 MB of nesting.
_INLINE_CHARS = 4_000
_PARSER_STACK_BYTES = 256 << 20
#: The scanner's worst case, as the sum of the squares of the operator-character runs' lengths:
#: about 40 ms of scanning on this machine, far beyond any statement a person or a tool writes
#: (a run of 3,000 characters, or 1,000 runs of 100).
MAX_LEXICAL_COST = 10_000_000
_OPERATOR_RUN = re.compile(r"[~!@#^&|`?+\-*/%<>=]{2,}")

Name = tuple[str | None, str]  # (schema or None, name)

_STR = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # a JSON string literal (the unrolled form: faster in re)
_RE_NAME_ITEM = re.compile(r'\{"String":\{"sval":(' + _STR + r")\}\}")
# A list of String nodes, its first three names captured on their own (a qualified name has at
# most three) and any further ones together, so that most lists need no second match.
_ITEM = r'\{"String":\{"sval":(' + _STR + r")\}\}"
_LIST = r"\[" + _ITEM + r"(?:," + _ITEM + r")?(?:," + _ITEM + r')?((?:,\{"String":\{"sval":' + _STR + r"\}\})*)\]"


_SMALL_TREE = 1 << 16


class _Found:
    """A pattern with capture groups, searched as one without: ``findall`` then returns whole
    matches as strings (no tuple per match for the garbage collector to track), which are
    deduplicated before the few distinct ones are matched again for their groups."""

    def __init__(self, pattern: str) -> None:
        self.parts = re.compile(pattern)
        self.whole = re.compile(re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern))

    def distinct(self, tree: str) -> set[tuple[str, ...]]:
        if len(tree) < _SMALL_TREE:  # few matches: one pass with the groups is cheaper
            return set(self.parts.findall(tree))
        match = self.parts.match
        return {match(found).groups() for found in set(self.whole.findall(tree))}  # type: ignore[union-attr]


_RE_FUNC = _Found(r'"funcname":' + _LIST)
_RE_AEXPR = _Found(r'"A_Expr":\{"kind":"(\w+)","name":' + _LIST)
# Two patterns with a literal prefix each: one with an alternation at its start is slower than both.
_RE_OPER_NAME = _Found(r'"operName":' + _LIST)
_RE_USE_OP = _Found(r'"useOp":' + _LIST)
_RE_TYPE = _Found(r'"names":' + _LIST)
_RE_METHOD = _Found(r'"method":' + _LIST)
_RE_RANGEVAR = _Found(
    r'"RangeVar":\{(?:"catalogname":' + _STR + r",)?(?:\"schemaname\":(" + _STR + r"),)?\"relname\":(" + _STR + ")"
)
_RE_CTE = re.compile(r'"ctequery":\{"(\w+)":')
_RE_STMT = re.compile(r'\{"stmt":\{"(\w+)":')
_RE_STMT_SPAN = re.compile(r'"stmt_(location|len)":(\d+)')
_SPAN_TAIL = 128  # '},"stmt_location":N,"stmt_len":N}]}' with room to spare
# Constructs that compare with "=" without naming it: CASE x WHEN, NATURAL JOIN, JOIN USING,
# x IN (subquery) and x op ALL/ANY (subquery) (the name-based check adds "=" for them).
_IMPLIED_EQUALS = (
    '"CaseExpr":{"arg":',
    '"isNatural":true',
    '"usingClause":[',
    '"subLinkType":"ANY_SUBLINK"',
    '"subLinkType":"ALL_SUBLINK"',
)
_RE_NODE = re.compile(r'"([A-Z][A-Za-z_]*)":\{')
_RE_PARAM = re.compile(r'"ParamRef":\{"number":(\d+),"location":(\d+)')
_RE_CTE_NAME = re.compile(r'"ctename":(' + _STR + ")")
# A statement built of these alone (constants, parameters, a target list or VALUES, LIMIT)
# reaches nothing PostgreSQL resolves in the catalog: no name, no operator, no sort.
_TRIVIAL_NODES = frozenset({"SelectStmt", "ResTarget", "A_Const", "ParamRef", "List"})
_RE_NOT_TRIVIAL = re.compile(
    r'"(?:distinctClause|sortClause|groupClause|havingClause|whereClause|windowClause|withClause|fromClause|larg|rarg)":'
)
_RE_NAME_TEXT = re.compile(r'"(?:relname|schemaname|aliasname|ctename)":(' + _STR + ")")
#: An identifier this long (in characters) that is not ASCII may be cut at 63 bytes differently
#: by the guard's parser (UTF-8) and by a server whose database encoding is another.
LONG_IDENTIFIER_CHARS = 15
_BETWEEN_OPERATORS = (">=", "<=", "<", ">")


class ParseTimeout(Exception):
    """The parser did not answer within the call's deadline."""


@dataclass(frozen=True)
class References:
    """What a statement names that PostgreSQL resolves in the catalog, as written (unresolved)."""

    functions: frozenset[Name] = frozenset()
    operators: frozenset[Name] = frozenset()
    types: frozenset[Name] = frozenset()
    relations: frozenset[Name] = frozenset()
    #: Every other name: ``a.f`` and ``(x).f`` may call a one-argument function ``f``.
    attributes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.functions or self.operators or self.types or self.relations or self.attributes)

    @classmethod
    def union(cls, found: Iterable[References]) -> References:
        """All the references of ``found`` together."""
        listed = list(found)
        return cls(
            functions=frozenset().union(*(r.functions for r in listed)),
            operators=frozenset().union(*(r.operators for r in listed)),
            types=frozenset().union(*(r.types for r in listed)),
            relations=frozenset().union(*(r.relations for r in listed)),
            attributes=frozenset().union(*(r.attributes for r in listed)),
        )


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its kind, its own text, and what it references."""

    kind: str  # the parse node, e.g. "SelectStmt", "InsertStmt", "TransactionStmt"
    text: str  # the statement alone: no trailing semicolon or whitespace
    tree: str = field(repr=False)  # libpg_query's JSON
    start: int = 0  # where ``text`` starts in the caller's SQL (characters)
    refs: References = References()
    byte_start: int = 0  # where ``text`` starts in the caller's SQL, in UTF-8 bytes

    @property
    def trivial(self) -> bool:
        """True when the statement reaches nothing in the catalog (``SELECT 1``, ``VALUES ($1)``)."""
        return set(_RE_NODE.findall(self.tree)) <= _TRIVIAL_NODES and not _RE_NOT_TRIVIAL.search(self.tree)

    def parameters(self) -> list[tuple[int, int, int]]:
        """(number, start, end) of every ``$n`` in ``text``, as UTF-8 byte offsets, in order."""
        data = self.text.encode()
        found = []
        for number, location in _RE_PARAM.findall(self.tree):
            at = int(location) - self.byte_start
            end = at + 1
            while end < len(data) and data[end : end + 1].isdigit():
                end += 1
            found.append((int(number), at, end))
        return sorted(found, key=lambda item: item[1])

    def cte_names(self) -> set[str]:
        """Names of the statement's CTEs (a reference to one is no relation in the catalog)."""
        return set(_decode_all(set(_RE_CTE_NAME.findall(self.tree))).values())

    def long_identifiers(self) -> list[str]:
        """Identifiers that are not ASCII and may be cut differently by a non-UTF-8 server."""
        found = set(_RE_NAME_TEXT.findall(self.tree)) | set(_RE_NAME_ITEM.findall(self.tree))  # not string constants
        names = _decode_all(found).values()
        return sorted(n for n in names if len(n) >= LONG_IDENTIFIER_CHARS and not n.isascii())

    @property
    def has_into(self) -> bool:
        return '"intoClause":' in self.tree

    @property
    def has_locking(self) -> bool:
        return '"lockingClause":' in self.tree

    @property
    def has_returning(self) -> bool:
        return '"returningList":' in self.tree

    def cte_kinds(self) -> set[str]:
        """Node kinds of every CTE body, at any depth (``SelectStmt`` unless it writes)."""
        return set(_RE_CTE.findall(self.tree))

    def transaction_kind(self) -> str:
        """For a TransactionStmt: BEGIN, COMMIT, ... as PostgreSQL names the kind."""
        found = re.search(r'"kind":"TRANS_STMT_(\w+)"', self.tree)
        return found.group(1) if found else ""


def parse_one(sql: str, *, legacy_server: bool = False, timeout_s: float | None = None) -> Statement:
    """Parse ``sql`` as exactly one statement, or raise with PostgreSQL's own message.

    ``legacy_server``: the server is older than the parser (see the module docstring).
    ``timeout_s``: give up waiting for the parser after this long (``ParseTimeout``).
    """
    tree = _parse_json(sql, timeout_s)
    kinds = _RE_STMT.findall(tree)
    if not kinds:
        raise InvalidInput("sql is empty: give one SQL statement")
    if len(kinds) > 1:
        raise AccessDenied(f"only one statement per call is allowed; found {len(kinds)} statements")
    start, byte_start, text = _statement_text(sql, tree)
    refs = _references(tree, legacy_server)
    return Statement(kind=kinds[0], text=text, tree=tree, start=start, refs=refs, byte_start=byte_start)


def parse_tree(sql: str) -> str:
    """libpg_query's JSON of ``sql`` (any number of statements), or PostgreSQL's syntax error."""
    return _parse_json(sql)


def references(tree: str, legacy_server: bool = False) -> References:
    """Every name the statements of ``tree`` (``parse_tree``) use, as written."""
    return _references(tree, legacy_server)


def lexical_cost(sql: str) -> int:
    """An upper bound of the scanner's extra work on ``sql`` (see the module docstring)."""
    return sum(len(run) ** 2 for run in _OPERATOR_RUN.findall(sql))


def _parse_json(sql: str, timeout_s: float | None = None) -> str:
    if "\x00" in sql:
        raise InvalidInput("sql contains a NUL character, which PostgreSQL does not accept")
    cost = lexical_cost(sql)
    if cost > MAX_LEXICAL_COST:
        longest = max(len(run) for run in _OPERATOR_RUN.findall(sql))
        raise InvalidInput(
            f"sql has runs of operator characters (+-*/<>=~!@#%^&|`?) too long to scan in bounded time "
            f"(the longest has {longest} characters; comments nested thousands deep count too): "
            "shorten them or separate the operators with spaces"
        )
    try:
        if len(sql) <= _INLINE_CHARS:
            return str(pg_parser.parse_sql_json(sql))
        return _BigStackParser.parse(sql, timeout_s)
    except pg_parser.ParseError as exc:
        message, index = (*exc.args, None)[:2] if exc.args else ("syntax error", None)
        text = str(message)
        if "memory exhausted" in text:
            text = f"statement nests too deeply for PostgreSQL's parser ({text})"
        if isinstance(index, int) and 0 <= index <= len(sql):
            raise QueryError(f"{text} (at position {index + 1})\n{excerpt(sql, index + 1)}") from None
        raise QueryError(text) from None


def _statement_text(sql: str, tree: str) -> tuple[int, int, str]:
    """(start, byte start, text) of the statement: libpg_query's byte span, without the
    trailing semicolon.

    The span is the last thing in the tree (RawStmt's fields after its statement), and the only
    node with these keys, so only the tree's tail is searched.
    """
    span = dict(_RE_STMT_SPAN.findall(tree, max(len(tree) - _SPAN_TAIL, 0)))
    data = sql.encode()
    start = int(span.get("location", 0))
    length = int(span.get("len", 0)) or len(data) - start
    return len(data[:start].decode()), start, data[start : start + length].decode().rstrip()


def _qualified(names: list[str]) -> Name:
    # [name], [schema, name] or [catalog, schema, name] (PostgreSQL checks the catalog itself).
    return (names[-2] if len(names) > 1 else None, names[-1])


def _decode_all(literals: set[str]) -> dict[str, str]:
    """JSON string literals (as found in the tree) to their text, all in one ``json.loads``."""
    if not literals:
        return {}
    order = list(literals)
    return dict(zip(order, json.loads("[" + ",".join(order) + "]"), strict=True))


def _references(tree: str, legacy_server: bool) -> References:
    """Every reference of the tree. Each pattern is one pass over the tree at C speed; what it
    finds is deduplicated before any Python work, because names repeat (a 100,000-term
    ``1+1+...`` names "+" 100,000 times), and every distinct name is decoded once."""
    text_of = _decode_all(set(_RE_NAME_ITEM.findall(tree)))  # every String node: all names
    ranges = _RE_RANGEVAR.distinct(tree)
    relation_text = _decode_all({literal for pair in ranges for literal in pair if literal})
    relations = {(relation_text[schema] if schema else None, relation_text[name]) for schema, name in ranges}
    if not text_of:  # every function, operator and type name is a String node: there are none
        equals = {(None, "=")} if any(marker in tree for marker in _IMPLIED_EQUALS) else set()
        return References(operators=frozenset(equals), relations=frozenset(relations))

    def names(found: tuple[str, ...]) -> list[str]:
        first, second, third, rest = found
        listed = [text_of[first]]
        if second:
            listed.append(text_of[second])
            if third:
                listed.append(text_of[third])
                if rest:
                    listed += [text_of[s] for s in _RE_NAME_ITEM.findall(rest)]
        return listed

    called = [names(m) for m in _RE_FUNC.distinct(tree) | _RE_METHOD.distinct(tree)]
    functions = {_qualified(n) for n in called}
    if legacy_server:
        # What PostgreSQL 15's grammar qualifies with pg_catalog, an older one may not.
        functions |= {(None, n[1]) for n in called if len(n) > 1 and n[0] == "pg_catalog"}
    operators: set[Name] = set()
    for kind, *items in _RE_AEXPR.distinct(tree):
        if kind.startswith("AEXPR_BETWEEN") or kind.startswith("AEXPR_NOT_BETWEEN"):
            operators.update((None, op) for op in _BETWEEN_OPERATORS)
        else:
            operators.add(_qualified(names(tuple(items))))
    operators |= {_qualified(names(m)) for m in _RE_OPER_NAME.distinct(tree) | _RE_USE_OP.distinct(tree)}
    if any(marker in tree for marker in _IMPLIED_EQUALS):
        operators.add((None, "="))  # CASE x WHEN, NATURAL JOIN and JOIN USING compare with "="
    types = {_qualified(names(m)) for m in _RE_TYPE.distinct(tree)}
    return References(
        functions=frozenset(functions),
        operators=frozenset(operators),
        types=frozenset(types),
        relations=frozenset(relations),
        attributes=frozenset(text_of.values()),
    )


class _BigStackParser:
    """Threads with a large stack that run libpg_query for long statements (created on first use)."""

    _lock = threading.Lock()
    _jobs: queue.SimpleQueue[tuple[str, Future[str]]] | None = None
    THREADS = 2

    @classmethod
    def parse(cls, sql: str, timeout_s: float | None = None) -> str:
        done: Future[str] = Future()
        cls._queue().put((sql, done))
        try:
            return done.result(timeout_s)
        except TimeoutError:
            done.cancel()  # still queued: never parsed; already running: its thread finishes it
            raise ParseTimeout("the parser did not finish in time") from None

    @classmethod
    def _queue(cls) -> queue.SimpleQueue[tuple[str, Future[str]]]:
        with cls._lock:  # decide and publish only; the threads start here once
            if cls._jobs is None:
                jobs: queue.SimpleQueue[tuple[str, Future[str]]] = queue.SimpleQueue()
                previous = threading.stack_size(_PARSER_STACK_BYTES)
                try:
                    for n in range(cls.THREADS):
                        threading.Thread(target=cls._work, args=(jobs,), name=f"sql-parser-{n}", daemon=True).start()
                finally:
                    threading.stack_size(previous)
                cls._jobs = jobs
            return cls._jobs

    @staticmethod
    def _work(jobs: queue.SimpleQueue[tuple[str, Future[str]]]) -> None:
        while True:
            sql, done = jobs.get()
            if not done.set_running_or_notify_cancel():
                continue  # its caller gave up before it was parsed
            try:
                done.set_result(str(pg_parser.parse_sql_json(sql)))
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)
