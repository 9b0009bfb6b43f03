"""Rows serialized to JSON by PostgreSQL itself, cut to the byte budget before they cross the wire.

``query`` wraps the caller's statement (already checked by the guard) in ``wrap``: each row
arrives as one text, the JSON array of its values, built by PostgreSQL's C code with the value
rules of ``values`` (the SPEC's):

- bigint beyond +-2**53 and numeric that a double cannot hold exactly: a JSON string of the
  exact decimal; NaN and infinities: "NaN", "Infinity", "-Infinity";
- bytea: base64; date, time and timestamps: ISO 8601 (``to_json``); intervals: ISO 8601
  durations (the transaction sets ``IntervalStyle = iso_8601``);
- ranges: ``{"lower", "upper", "bounds", "empty"}``; arrays of bigint/numeric/bytea: elements
  by the same rules (arrays of more than one dimension: elements as strings);
- json/jsonb, composite values (objects), and everything else as ``to_json`` gives it.

Memory. A window sum over the rows' sizes makes PostgreSQL send a NULL instead of any row past
the budget, and every value whose JSON is longer than ``budget / columns`` bytes is replaced by
a JSON string of the first characters of its text (the base64 text for bytea) and reported in
the row's ``cut`` column. So one call never holds much more than its budget, however wide the
values: a 100 MB value costs the server's memory, never ours.

Every function and operator in the wrapper is qualified with ``pg_catalog``: the tenant's
search_path must not change what the wrapper runs. Values of the types a statement that is not
checked can return (constants: integer, bigint, numeric, text, boolean) and the rows' JSON are
turned into text by output functions called by name, never by a cast, which a superuser could
have defined (``CREATE CAST (numeric AS text) WITH FUNCTION ...``); casts of other types go
through the check, which looks at every cast a user created (``reach``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from mcp_tenants.rawjson import RawJson

Connection = psycopg.Connection[Any]

INT8, NUMERIC, BYTEA = 20, 1700, 17
_SPECIAL = (INT8, NUMERIC, BYTEA)
_TEXTS = (25, 1043, BYTEA)  # text, varchar, bytea: octet_length is free
_MAX_EXACT = 9007199254740992
_FIRST_UNPINNED_OID = 10_000
_MAX_CACHED = 10_000


@dataclass(frozen=True)
class TypeInfo:
    """What the wrapper needs to know of a column type."""

    name: str  # format_type(oid, typmod)
    typtype: str  # b base, c composite, d domain, e enum, p pseudo, r range, m multirange
    elem: int  # element type of an array, else 0
    subtype: int  # subtype of a range or multirange, else 0


# TypeInfo by (server version, oid, typmod), for built-in types only (the same on every server
# of a version). Threads share it without a lock: each get and set is one dict operation.
_BUILTIN: dict[tuple[int, int, int], TypeInfo] = {}

_TYPES_SQL = """
SELECT pg_catalog.format_type(t.oid, m.mod), t.typtype, t.typelem,
       coalesce(r.rngsubtype, mr.rngsubtype, 0)
FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.int4[]))
  WITH ORDINALITY AS m(oid, mod, n)
JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) m.oid
LEFT JOIN pg_catalog.pg_range r ON r.rngtypid OPERATOR(pg_catalog.=) t.oid
LEFT JOIN pg_catalog.pg_range mr ON mr.rngmultitypid OPERATOR(pg_catalog.=) t.oid
ORDER BY m.n
"""


def type_infos(conn: Connection, keys: list[tuple[int, int]]) -> list[TypeInfo]:
    """TypeInfo of each (oid, typmod) of a result; built-in types are looked up once."""
    version = conn.info.server_version
    found = [_BUILTIN.get((version, oid, mod)) for oid, mod in keys]
    if all(info is not None for info in found):
        return found  # type: ignore[return-value]
    with psycopg.RawCursor(conn, row_factory=tuple_row) as cur:
        cur.execute(_TYPES_SQL, [[oid for oid, _ in keys], [mod for _, mod in keys]], prepare=False)
        infos = [TypeInfo(name, typtype, int(elem), int(sub)) for name, typtype, elem, sub in cur.fetchall()]
    for (oid, mod), info in zip(keys, infos, strict=True):
        if oid < _FIRST_UNPINNED_OID and len(_BUILTIN) < _MAX_CACHED:
            _BUILTIN[(version, oid, mod)] = info
    return infos


_JSON = "pg_catalog.to_json"


def _scalar(x: str, oid: int, *, bare: bool = False) -> str:
    """A json expression for the value ``x`` of built-in type ``oid`` (SQL NULL stays NULL).

    ``bare``: the value may stay as it is, because the caller converts it (json_build_array).
    """
    exact = f"{_JSON}({x})"
    as_string = f"{_JSON}({_text(x, oid)})"
    if oid == INT8:
        in_range = f"pg_catalog.int8le({x}, {_MAX_EXACT}) AND pg_catalog.int8ge({x}, -{_MAX_EXACT})"
        return f"CASE WHEN {in_range} THEN {exact} ELSE {as_string} END"
    if oid == NUMERIC:
        return (
            f"CASE WHEN pg_catalog.numeric_eq({x}, 0) OR (pg_catalog.numeric_le(pg_catalog.abs({x}), 1e300)"
            f" AND pg_catalog.numeric_ge(pg_catalog.abs({x}), 1e-300) AND pg_catalog.numeric_eq("
            f"pg_catalog.numeric_in(pg_catalog.float8out(pg_catalog.float8({x})), '0', -1), {x}))"
            f" THEN {exact} ELSE {as_string} END"
        )
    if oid == BYTEA:
        return f"{_JSON}({_base64(x)})"
    return x if bare else exact


# Output functions of the types whose text the wrapper takes without a cast (see the docstring).
_OUTPUT = {INT8: "pg_catalog.int8out", NUMERIC: "pg_catalog.numeric_out", 23: "pg_catalog.int4out"}


def _text(x: str, oid: int) -> str:
    """The text of value ``x`` of type ``oid``."""
    if oid in (25, 1043):  # text, varchar: text already
        return f"{x}::pg_catalog.text"
    if oid in _OUTPUT:
        return f"pg_catalog.textin({_OUTPUT[oid]}({x}))"
    return f"{x}::pg_catalog.text"


def _json_text(x: str) -> str:
    """The text of json ``x``."""
    return f"pg_catalog.textin(pg_catalog.json_out({x}))"


def _base64(x: str) -> str:
    return f"pg_catalog.translate(pg_catalog.encode({x}, 'base64'), E'\\n', '')"


def _range(x: str, subtype: int) -> str:
    bounds = (
        f"pg_catalog.concat(CASE WHEN pg_catalog.lower_inc({x}) THEN '[' ELSE '(' END,"
        f" CASE WHEN pg_catalog.upper_inc({x}) THEN ']' ELSE ')' END)"
    )
    lower, upper = _scalar(f"pg_catalog.lower({x})", subtype), _scalar(f"pg_catalog.upper({x})", subtype)
    return (
        f"CASE WHEN pg_catalog.isempty({x}) THEN pg_catalog.json_build_object('lower', NULL, 'upper', NULL,"
        f" 'bounds', NULL, 'empty', true) ELSE pg_catalog.json_build_object('lower', {lower}, 'upper', {upper},"
        f" 'bounds', {bounds}, 'empty', false) END"
    )


def value_json(x: str, oid: int, info: TypeInfo, *, bare: bool = False, mod: int = -1) -> str:
    """A json expression for column expression ``x`` (NULL for SQL NULL); see ``_scalar``.

    ``mod``: the column's typmod; numeric(p, s) with p <= 15 always fits a double exactly.
    """
    if oid == NUMERIC and bare and mod >= 4 and (mod - 4) >> 16 <= 15:
        return x
    if info.typtype == "r":
        return f"CASE WHEN {x} IS NOT NULL THEN {_range(x, info.subtype)} END"
    if info.typtype == "m":
        return (
            f"CASE WHEN {x} IS NOT NULL THEN (SELECT coalesce(pg_catalog.json_agg({_range('u.r', info.subtype)}),"
            f" '[]') FROM pg_catalog.unnest({x}) AS u(r)) END"
        )
    if info.elem in _SPECIAL:
        return (
            f"CASE WHEN pg_catalog.array_ndims({x}) IS NULL"
            f" THEN CASE WHEN {x} IS NOT NULL THEN '[]'::pg_catalog.json END"
            f" WHEN pg_catalog.int4eq(pg_catalog.array_ndims({x}), 1) THEN (SELECT pg_catalog.json_agg("
            f"{_scalar('u.e', info.elem)} ORDER BY u.n) FROM pg_catalog.unnest({x}) WITH ORDINALITY AS u(e, n))"
            f" ELSE {_JSON}({x}::pg_catalog.text[]) END"
        )
    return _scalar(x, oid, bare=bare)


# Longest JSON (bytes, quotes included) a value of these built-in types can have, whatever the
# value: such columns need no length check. Types not listed (text, json, arrays, ...) can be
# as long as PostgreSQL allows.
_FIXED_JSON = {
    16: 5,  # boolean
    18: 8,  # "char"
    19: 6 * 63 + 2,  # name
    20: 22,  # bigint (beyond 2**53 as a string)
    21: 6,  # smallint
    23: 11,  # integer
    26: 10,  # oid
    700: 20,  # real
    701: 26,  # double precision
    829: 19,  # macaddr
    774: 25,  # macaddr8
    869: 52,  # inet
    650: 52,  # cidr
    1082: 20,  # date
    1083: 20,  # time
    1266: 32,  # time with time zone
    1114: 40,  # timestamp
    1184: 48,  # timestamp with time zone
    1186: 64,  # interval
    2950: 38,  # uuid
}
_NUMERIC_MAX_CHARS = 131_072 + 16_383 + 16  # numeric's text: digits before and after the point
_SEPARATOR = 2  # json_build_array writes ", " between values


def _json_bound(oid: int, mod: int, info: TypeInfo) -> int | None:
    """The longest JSON a value of this column can have, or None when there is no such bound."""
    if oid in _FIXED_JSON:
        return _FIXED_JSON[oid]
    if oid == NUMERIC:
        return max((mod - 4) >> 16, 5) + 6 if mod >= 4 else _NUMERIC_MAX_CHARS + 2
    if oid in (1042, 1043) and mod >= 4:  # char(n), varchar(n): n characters, each escaped to 6 bytes at most
        return 6 * (mod - 4) + 2
    if info.typtype == "e":  # enum labels have at most 63 bytes
        return 6 * 63 + 2
    return None


def _cut(x: str, oid: int, chars: int) -> str:
    """The first ``chars`` characters of the value's text (of a bytea: base64 of its first bytes)."""
    if oid == BYTEA:
        return _base64(f"pg_catalog.substr({x}, 1, {chars * 3 // 4:d})")
    return f'pg_catalog."left"({_text(x, oid)}, {chars:d})'


def _array(items: list[str]) -> str:
    """A JSON array (text) of json expressions; json_build_array takes at most 100 arguments."""
    if len(items) <= 100:
        return _json_text(f"pg_catalog.json_build_array({', '.join(items)})")
    texts = ", ".join(f"coalesce({_json_text(f'{_JSON}({item})')}, 'null')" for item in items)
    return f"pg_catalog.concat('[', pg_catalog.array_to_string(ARRAY[{texts}]::pg_catalog.text[], ','), ']')"


def wrap(
    sql: str, oids: list[int], mods: list[int], infos: list[TypeInfo], *, limit: int | None, budget: int
) -> tuple[str, int]:
    """The caller's statement ``sql`` (one SELECT, checked) wrapped to return rows as JSON, and
    where ``sql`` starts in the wrapper.

    Each row comes as (row JSON, cut columns): ``limit`` rows at most (None: no LIMIT, for a
    cursor); rows after the first whose running total of bytes (with one separator per row)
    passes ``budget`` come back as NULL. Every value whose JSON is longer than its share of the
    budget (``budget / columns``) is replaced by a JSON string of its first characters, and its
    column is listed in "cut columns" (comma-separated, else NULL).

    When the column types bound every row so that ``limit`` rows cannot pass the budget (``SELECT
    1``, counts, ids, timestamps...), the wrapper is one plain SELECT with one column: nothing
    can be cut and no running total is needed.
    """
    count = len(oids)
    budget = max(budget, 0)
    limit_clause = f" LIMIT {int(limit):d}" if limit is not None else ""
    aliases = f"({', '.join(f'c{i}' for i in range(count))})" if count else ""
    cap = max((budget - 2 - count) // max(count, 1) - _SEPARATOR, 16)
    bounds = [_json_bound(oid, mod, info) for oid, mod, info in zip(oids, mods, infos, strict=True)]
    if limit is not None and all(b is not None for b in bounds):
        row_bound = 2 + sum(b or 0 for b in bounds) + _SEPARATOR * max(count - 1, 0) + 1
        if limit * row_bound + 2 <= budget:
            row = _array(
                [
                    value_json(f"q.c{i}", oid, info, bare=True, mod=mod)
                    for i, (oid, mod, info) in enumerate(zip(oids, mods, infos, strict=True))
                ]
            )
            head = f"SELECT {row} FROM (\n"
            return head + sql + f"\n) AS q{aliases}{limit_clause}", len(head)
    values: list[str] = []
    checks: list[str] = []  # per column: the condition that it was cut, or ""
    measured: list[str] = []  # json of the columns measured after their JSON is built
    for i, (oid, mod, info, bound) in enumerate(zip(oids, mods, infos, bounds, strict=True)):
        c = f"q.c{i}"
        if bound is not None and bound <= cap:
            values.append(value_json(c, oid, info, bare=True, mod=mod))
            checks.append("")
        elif oid in _TEXTS:
            # Text and bytea are measured before their JSON is built: their length is known
            # without reading them, so a 100 MB value is never escaped only to be dropped.
            long = f"pg_catalog.int4gt(pg_catalog.octet_length({c}), {cap:d})"
            short = value_json(c, oid, info, bare=True)
            cut = _cut(c, oid, cap // 2)
            values.append(f"CASE WHEN {long} THEN {cut if oid != BYTEA else f'{_JSON}({cut})'} ELSE {short} END")
            checks.append(long)
        else:
            j = f"v.j{i}"
            measured.append(f"{value_json(c, oid, info)} AS j{i}")
            long = f"pg_catalog.int4gt(pg_catalog.octet_length({_json_text(j)}), {cap:d})"
            values.append(f"CASE WHEN {long} THEN {_JSON}({_cut(c, oid, cap // 2)}) ELSE {j} END")
            checks.append(long)
    flagged = [(i, check) for i, check in enumerate(checks) if check]
    if flagged:
        listed = ", ".join(f"CASE WHEN {check} THEN '{i}' END" for i, check in flagged)
        cut_columns = (
            f"CASE WHEN {' OR '.join(check for _, check in flagged)} THEN"
            f" pg_catalog.array_to_string(ARRAY[{listed}]::pg_catalog.text[], ',') END"
        )
    else:
        cut_columns = "NULL::pg_catalog.text"
    # LIMIT (or OFFSET 0) keeps the level that builds each row's JSON from being pulled up into
    # the window's level, which names it twice; OFFSET 0 does the same for the measured values.
    lateral = f" CROSS JOIN LATERAL (SELECT {', '.join(measured)} OFFSET 0) AS v" if measured else ""
    head = (
        "SELECT CASE WHEN pg_catalog.int8le(pg_catalog.sum(pg_catalog.int4pl(pg_catalog.octet_length(s.r), 1))"
        f" OVER (ROWS UNBOUNDED PRECEDING), {budget:d}::pg_catalog.int8) THEN s.r END, s.cut"
        f" FROM (SELECT {_array(values)} AS r, {cut_columns} AS cut FROM (\n"
    )
    tail = f"\n) AS q{aliases}{lateral}{limit_clause or ' OFFSET 0'}) AS s"
    return head + sql + tail, len(head)


def collect(result: Any, first_index: int) -> tuple[list[bytes], list[list[int]], bool]:
    """Rows of ``wrap`` from a libpq result (text format): (row JSON texts, cut cells
    [row, column], budget reached)."""
    if result is None:
        return [], [], False
    count = result.ntuples
    get = result.get_value
    values: list[bytes | None] = [get(i, 0) for i in range(count)]
    full = None in values  # rows past the budget come as NULL, and so do all after them
    if full:
        del values[values.index(None) :]
    texts: list[bytes] = values  # type: ignore[assignment]  # no None left
    cut: list[list[int]] = []
    if result.nfields < 2:  # the plain wrapper: nothing can be cut
        return texts, cut, full
    for i in range(len(texts)):
        columns = get(i, 1)
        if columns:  # a row longer than the budget: some of its values were cut
            cut.extend([first_index + i, int(col)] for col in columns.split(b","))
    return texts, cut, full


def raw_rows(texts: list[bytes], encoding: str) -> RawJson:
    """The JSON array of the rows' texts, without parsing them.

    PostgreSQL escapes line breaks inside strings; one outside a string (whitespace kept in a
    json value) becomes a space, so the text fits in one line of the stdio transport.
    """
    text = b"[" + b",".join(texts) + b"]"
    if b"\n" in text or b"\r" in text:
        text = text.replace(b"\n", b" ").replace(b"\r", b" ")
    return RawJson(text.decode(encoding))
