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
search_path must not change what the wrapper runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

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
    as_string = f"{_JSON}({x}::pg_catalog.text)"
    if oid == INT8:
        in_range = f"pg_catalog.int8le({x}, {_MAX_EXACT}) AND pg_catalog.int8ge({x}, -{_MAX_EXACT})"
        return f"CASE WHEN {in_range} THEN {exact} ELSE {as_string} END"
    if oid == NUMERIC:
        return (
            f"CASE WHEN pg_catalog.numeric_eq({x}, 0) OR (pg_catalog.numeric_le(pg_catalog.abs({x}), 1e300)"
            f" AND pg_catalog.numeric_ge(pg_catalog.abs({x}), 1e-300) AND pg_catalog.numeric_eq("
            f"{x}::pg_catalog.float8::pg_catalog.text::pg_catalog.numeric, {x})) THEN {exact} ELSE {as_string} END"
        )
    if oid == BYTEA:
        return f"{_JSON}({_base64(x)})"
    return x if bare else exact


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


def _too_long(x: str, oid: int, info: TypeInfo, cap: int) -> str:
    """True when the value's JSON is longer than ``cap`` bytes (free for text, varchar, bytea)."""
    if oid in _TEXTS:
        return f"coalesce(pg_catalog.int4gt(pg_catalog.octet_length({x}), {cap}), false)"
    length = f"pg_catalog.octet_length(({value_json(x, oid, info)})::pg_catalog.text)"
    return f"coalesce(pg_catalog.int4gt({length}, {cap}), false)"


def _cut(x: str, oid: int, chars: int, *, text: bool = False) -> str:
    """The first ``chars`` characters of the value's text (a bytea's base64), as json (or text)."""
    cut = f'pg_catalog."left"({_text(x, oid)}, {chars})'
    return cut if text else f"{_JSON}({cut})"


def _text(x: str, oid: int) -> str:
    return _base64(x) if oid == BYTEA else f"{x}::pg_catalog.text"


def _array(items: list[str]) -> str:
    """A JSON array (text) of json expressions; json_build_array takes at most 100 arguments."""
    if len(items) <= 100:
        return f"pg_catalog.json_build_array({', '.join(items)})::pg_catalog.text"
    texts = ", ".join(f"coalesce({_JSON}({item})::pg_catalog.text, 'null')" for item in items)
    return f"pg_catalog.concat('[', pg_catalog.array_to_string(ARRAY[{texts}]::pg_catalog.text[], ','), ']')"


def wrap(sql: str, oids: list[int], mods: list[int], infos: list[TypeInfo], *, limit: int | None, budget: int) -> str:
    """The caller's statement ``sql`` (one SELECT, checked) wrapped to return (row JSON, cut).

    ``limit``: rows to return at most (None: no LIMIT, for a cursor); ``budget``: bytes of row
    JSON (with one separator per row) after which rows come back as NULL. A row longer than the
    budget comes with each value longer than ``budget / columns`` cut to its first characters,
    and ``cut`` lists those columns.
    """
    count = len(oids)
    budget = max(budget, 0)
    limit_clause = f" LIMIT {int(limit):d}" if limit is not None else ""
    cols = [f"q.c{i}" for i in range(count)]
    cap = max((budget - 2 - count) // max(count, 1) - 2, 16)
    # Text and bytea longer than the cap are cut in place: their length is known without reading
    # them, so a 100 MB value is never escaped only to be dropped.
    row = _array(
        [
            f"CASE WHEN pg_catalog.int4le(pg_catalog.octet_length({c}), {cap})"
            f" THEN {value_json(c, oid, info, bare=True)}"
            f" ELSE {_cut(c, oid, cap // 2, text=oid != BYTEA)} END"
            if oid in _TEXTS
            else value_json(c, oid, info, bare=True, mod=mod)
            for c, oid, info, mod in zip(cols, oids, infos, mods, strict=True)
        ]
    )
    wide = " OR ".join(
        f"pg_catalog.int4gt(pg_catalog.octet_length(w.c{i}), {cap})" for i, oid in enumerate(oids) if oid in _TEXTS
    )
    outer = [f"w.c{i}" for i in range(count)]
    long = [_too_long(c, oid, info, cap) for c, oid, info in zip(outer, oids, infos, strict=True)]
    cut_row = _array(
        [
            f"CASE WHEN {flag} THEN {_cut(c, oid, cap // 2)} ELSE {value_json(c, oid, info)} END"
            for c, oid, info, flag in zip(outer, oids, infos, long, strict=True)
        ]
    )
    sized = f"CASE WHEN pg_catalog.int4le(s.len, {budget:d}) THEN s.len ELSE {count * (cap + 2) + 2:d} END"
    cut_list = ", ".join(f"CASE WHEN {flag} THEN '{i}' END" for i, flag in enumerate(long))
    cut_columns = f"pg_catalog.array_to_string(ARRAY[{cut_list}]::pg_catalog.text[], ',')" if count else "''"
    aliases = f"({', '.join(c[2:] for c in cols)})" if count else ""
    source = f"(SELECT * FROM (\n{sql}\n) AS q{aliases}{limit_clause})"
    # OFFSET 0 keeps each row's JSON computed once (no subquery pull-up copying the expression).
    return (
        f"SELECT CASE WHEN pg_catalog.int8le(pg_catalog.int84pl(w.pos, w.size), {budget:d}::pg_catalog.int8)"
        f" THEN CASE WHEN pg_catalog.int4le(w.len, {budget:d}) THEN w.r ELSE {cut_row} END END,"
        f" CASE WHEN pg_catalog.int4gt(w.len, {budget:d}){' OR ' + wide if wide else ''} THEN {cut_columns} END"
        f" FROM (SELECT s.*, pg_catalog.int4pl({sized}, 1) AS size, coalesce(pg_catalog.sum("
        f"pg_catalog.int4pl({sized}, 1)) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS pos"
        f" FROM (SELECT q.*, t.r, pg_catalog.octet_length(t.r) AS len FROM {source} AS q"
        f" CROSS JOIN LATERAL (SELECT {row} AS r) AS t OFFSET 0) AS s) AS w"
    )


def decode(rows: list[tuple[str | None, str]], first_index: int) -> tuple[list[list[Any]], list[list[int]], bool]:
    """Rows of ``wrap`` as JSON values: (rows, cut cells [row, column], budget reached)."""
    texts: list[str] = []
    cut: list[list[int]] = []
    full = False
    for text, cut_columns in rows:
        if text is None:
            full = True
            break
        if cut_columns:  # a row longer than the budget: some of its values were cut
            row = first_index + len(texts)
            cut.extend([row, int(col)] for col in cut_columns.split(","))
        texts.append(text)
    values = json.loads("[" + ",".join(texts) + "]") if texts else []
    return values, cut, full
