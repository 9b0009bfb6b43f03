"""What a statement can reach in the tenant's catalog, and what of it the function policy refuses.

One catalog query, in three forms that differ only in where the walk starts:

- ``EXACT``: from PostgreSQL's own resolution. The statement was just analysed into a temporary
  view (``resolve``), and ``pg_depend`` holds every object the analysis chose, by OID: the
  functions and operators it resolved, also the ones no name in the text stands for (the ``=``
  of ``x IN (SELECT ...)``, the sort and group operators of ``ORDER BY``, ``DISTINCT``,
  ``UNION``, the casts of argument coercion), relations, types. Objects PostgreSQL creates in
  its own bootstrap are "pinned" and never recorded; the only ones a statement can use to
  change state are functions called by name (``pg_terminate_backend``, ``nextval``), so those
  are added by the names the statement uses, restricted to PostgreSQL's own (OID below 16384).
- ``NAMES``: from names, for servers where no temporary view can be created (a hot standby, a
  role without TEMP, a database with event triggers on DDL): every object a name can resolve to
  in ``current_schemas(true)`` (or the schema given), whatever the argument types.
- ``BODIES``: from the names in function bodies (``definitions``), in every schema.

Every form also starts from the machinery PostgreSQL calls without any name, for the objects a
user created (OID 16384 and above): the functions of casts, and the support functions and
member operators of btree and hash operator classes (sorting, grouping, hashing, comparing
arrays and rows, ``GREATEST``). Only a superuser creates these; when one is volatile, every
statement that is checked is refused, naming it.

The walk follows, for the objects a user created: functions to what ``pg_depend`` records for
them (``BEGIN ATOMIC`` bodies, argument and result types) and to their aggregate support
functions; operators to their functions; types to their input and output functions, base and
element types, range functions and domain ``CHECK``\\s; relations to the rules of views (also
PostgreSQL's own views, there only to further relations), to their row-level security policies
for ``SELECT`` and ``ALL`` (not ``INSERT``-only ones), to their inheritance children, to the
support functions of their indexes' operator classes, and, for a foreign table of postgres_fdw
that points back at this very database, to the relation it reads there.

Rows out (``kind, name, reason, language, detail``):

- ``f``: a function refused: ``volatile``, ``denied`` (second layer, by name), ``language``
  (non-volatile in a language whose body cannot be inspected), ``large`` (a body too long to
  inspect), ``credentials`` (a ``BEGIN ATOMIC`` body that reads a credentials catalog); or, with
  reason ``body``, a non-volatile SQL or PL/pgSQL function of the tenant's whose body is text:
  ``detail`` is the body (PL/pgSQL: its whole definition), for ``definitions`` to inspect;
- ``r``: a relation refused: ``credentials`` (a catalog that holds passwords), ``denied``
  (second layer, by name), ``foreign`` (a foreign table whose remote side cannot be checked);
- ``v``: a view on a path to a credentials catalog: ``reason`` says whether the statement reads
  it directly, ``detail`` is its definition, for ``definitions`` to see whether it exposes them.

Every function and operator here is qualified with ``pg_catalog``: the tenant's search_path must
not change what this query means.
"""

from __future__ import annotations

from mcp_tenants.postgres.wire import Named

FIRST_USER_OID = 16384  # FirstNormalObjectId: below it, objects made by initdb
#: The catalogs that hold credentials (fixed OIDs): pg_authid, pg_user_mapping, pg_subscription.
CREDENTIAL_CATALOGS = (1260, 1418, 6100)
#: Longest function body or view definition sent back for inspection.
MAX_DEFINITION_BYTES = 256 << 10

_U = FIRST_USER_OID
_EQ = "OPERATOR(pg_catalog.=)"
_USER = f"OPERATOR(pg_catalog.>=) {_U}::pg_catalog.oid"  # created by a user (not initdb)
_OWN = f"OPERATOR(pg_catalog.<) {_U}::pg_catalog.oid"  # created by initdb
_BTREE_HASH = "ANY ('{btree,hash}'::pg_catalog.name[])"

# Name references: kind f (function), a (attribute notation: a one-argument function), o
# (operator), t (type), r (relation); $1 kinds, $2 schemas (NULL: the search path), $3 names.
_NAMED = f"""
refs(kind, sch, name) AS (
  SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
    pg_catalog.unnest($3::pg_catalog.text[]))),
spaces(kind, name, nsp) AS (
  SELECT r.kind, r.name, n.oid FROM refs r JOIN pg_catalog.pg_namespace n ON CASE
    WHEN r.sch IS NULL THEN {{unqualified}}
    WHEN r.sch {_EQ} 'pg_temp' THEN n.oid {_EQ} pg_catalog.pg_my_temp_schema()
    ELSE n.nspname {_EQ} r.sch END),
named(cls, obj) AS (
  SELECT 1255::pg_catalog.oid, p.oid FROM spaces s JOIN pg_catalog.pg_proc p
    ON p.pronamespace {_EQ} s.nsp AND p.proname {_EQ} s.name
    WHERE s.kind {_EQ} 'f' OR (s.kind {_EQ} 'a' AND (p.provariadic OPERATOR(pg_catalog.<>) 0
      OR (p.pronargs OPERATOR(pg_catalog.>=) 1 AND p.pronargs OPERATOR(pg_catalog.-) p.pronargdefaults
          OPERATOR(pg_catalog.<=) 1)))
  UNION ALL SELECT 2617, o.oid FROM spaces s JOIN pg_catalog.pg_operator o
    ON o.oprnamespace {_EQ} s.nsp AND o.oprname {_EQ} s.name WHERE s.kind {_EQ} 'o'
  UNION ALL SELECT 1247, t.oid FROM spaces s JOIN pg_catalog.pg_type t
    ON t.typnamespace {_EQ} s.nsp AND t.typname {_EQ} s.name WHERE s.kind {_EQ} 't'
  UNION ALL SELECT 1259, c.oid FROM spaces s JOIN pg_catalog.pg_class c
    ON c.relnamespace {_EQ} s.nsp AND c.relname {_EQ} s.name WHERE s.kind {_EQ} 'r'),"""

# What PostgreSQL calls without a name, for objects a user created (OIDs from 16384: an index
# range scan on each catalog's OID).
_IMPLICIT = f"""
implicit(cls, obj) AS (
  SELECT 1255::pg_catalog.oid, c.castfunc FROM pg_catalog.pg_cast c
    WHERE c.oid {_USER} AND c.castfunc OPERATOR(pg_catalog.<>) 0
  UNION ALL SELECT 1255, a.amproc::pg_catalog.oid FROM pg_catalog.pg_amproc a
    JOIN pg_catalog.pg_opfamily f ON f.oid {_EQ} a.amprocfamily JOIN pg_catalog.pg_am m ON m.oid {_EQ} f.opfmethod
    WHERE a.oid {_USER} AND m.amname {_EQ} {_BTREE_HASH}
  UNION ALL SELECT 1255, f.fn FROM pg_catalog.pg_amop o JOIN pg_catalog.pg_am m ON m.oid {_EQ} o.amopmethod
    JOIN pg_catalog.pg_operator r ON r.oid {_EQ} o.amopopr CROSS JOIN LATERAL (VALUES
      (r.oprcode::pg_catalog.oid), (r.oprrest::pg_catalog.oid), (r.oprjoin::pg_catalog.oid)) f(fn)
    WHERE o.oid {_USER} AND m.amname {_EQ} {_BTREE_HASH} AND f.fn OPERATOR(pg_catalog.<>) 0),"""

_STARTS = {
    # pg_depend of the temporary view's rule, PostgreSQL's own functions and relations by name.
    "exact": f"""
checked(oid) AS (SELECT c.oid FROM pg_catalog.pg_class c
  WHERE c.relnamespace {_EQ} pg_catalog.pg_my_temp_schema() AND c.relname {_EQ} 'mcp_check'),
start(cls, obj, sub, top, walk) AS (
  SELECT d.refclassid, d.refobjid, d.refobjsubid, true, true FROM checked v
    JOIN pg_catalog.pg_rewrite w ON w.ev_class {_EQ} v.oid
    JOIN pg_catalog.pg_depend d ON d.classid {_EQ} 2618 AND d.objid {_EQ} w.oid
    WHERE d.refclassid {_EQ} ANY ('{{1255,2617,1247,1259}}'::pg_catalog.oid[])
      AND d.refobjid OPERATOR(pg_catalog.<>) v.oid
  UNION SELECT cls, obj, 0, true, true FROM named WHERE obj {_OWN}
  UNION SELECT cls, obj, 0, false, false FROM implicit),""",
    "names": """
start(cls, obj, sub, top, walk) AS (
  SELECT cls, obj, 0, true, true FROM named
  UNION SELECT cls, obj, 0, false, false FROM implicit),""",
    "bodies": """
start(cls, obj, sub, top, walk) AS (SELECT cls, obj, 0, true, true FROM named),""",
}
_UNQUALIFIED = {
    "exact": "n.nspname OPERATOR(pg_catalog.=) ANY (pg_catalog.current_schemas(true))",
    "names": "n.nspname OPERATOR(pg_catalog.=) ANY (pg_catalog.current_schemas(true))",
    "bodies": "true",  # a body runs with the caller's or its own search_path: any schema
}

# The walk. sys: reached through one of PostgreSQL's own views, whose functions are trusted
# and which are followed only to further relations (for the credentials). walk: expand this row.
_WALK = f"""
reach(cls, obj, sub, top, sys, walk) AS (
  SELECT cls, obj, sub, top, false, walk FROM start
  UNION
  SELECT e.cls, e.obj, e.sub, false, e.sys, e.walk FROM reach r CROSS JOIN LATERAL (
    -- a function, operator, type or constraint of the tenant's: what pg_depend records for it
    SELECT d.refclassid AS cls, d.refobjid AS obj, d.refobjsubid AS sub, false AS sys, true AS walk
      FROM pg_catalog.pg_depend d
      WHERE NOT r.sys AND r.obj {_USER}
        AND r.cls {_EQ} ANY ('{{1255,2606}}'::pg_catalog.oid[])
        AND d.classid {_EQ} r.cls AND d.objid {_EQ} r.obj
        AND d.refclassid {_EQ} ANY ('{{1255,2617,1247,1259}}'::pg_catalog.oid[])
    UNION ALL SELECT 1255, f.fn, 0, false, true FROM pg_catalog.pg_aggregate a CROSS JOIN LATERAL (VALUES
        (a.aggtransfn::pg_catalog.oid), (a.aggfinalfn::pg_catalog.oid), (a.aggcombinefn::pg_catalog.oid),
        (a.aggserialfn::pg_catalog.oid), (a.aggdeserialfn::pg_catalog.oid), (a.aggmtransfn::pg_catalog.oid),
        (a.aggminvtransfn::pg_catalog.oid), (a.aggmfinalfn::pg_catalog.oid)) f(fn)
      WHERE NOT r.sys AND r.cls {_EQ} 1255 AND r.obj {_USER}
        AND a.aggfnoid {_EQ} r.obj AND f.fn OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT 1255, f.fn, 0, false, true FROM pg_catalog.pg_operator o CROSS JOIN LATERAL (VALUES
        (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), (o.oprjoin::pg_catalog.oid)) f(fn)
      WHERE NOT r.sys AND r.cls {_EQ} 2617 AND r.obj {_USER}
        AND o.oid {_EQ} r.obj AND f.fn OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT f.cls, f.obj, 0, false, true FROM pg_catalog.pg_type t CROSS JOIN LATERAL (VALUES
        (1255::pg_catalog.oid, t.typinput::pg_catalog.oid), (1255, t.typoutput::pg_catalog.oid),
        (1255, t.typreceive::pg_catalog.oid), (1255, t.typsend::pg_catalog.oid),
        (1247, t.typbasetype), (1247, t.typelem)) f(cls, obj)
      WHERE NOT r.sys AND r.cls {_EQ} 1247 AND r.obj {_USER}
        AND t.oid {_EQ} r.obj AND f.obj OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT 2606, con.oid, 0, false, true FROM pg_catalog.pg_constraint con
      WHERE NOT r.sys AND r.cls {_EQ} 1247 AND r.obj {_USER}
        AND con.contypid {_EQ} r.obj
    UNION ALL SELECT f.cls, f.obj, 0, false, true FROM pg_catalog.pg_range g CROSS JOIN LATERAL (VALUES
        (1255::pg_catalog.oid, g.rngcanonical::pg_catalog.oid), (1255, g.rngsubdiff::pg_catalog.oid),
        (1247, g.rngsubtype)) f(cls, obj)
      WHERE NOT r.sys AND r.cls {_EQ} 1247 AND r.obj {_USER}
        AND g.rngtypid {_EQ} r.obj AND f.obj OPERATOR(pg_catalog.<>) 0
    -- a view: its rule; one of PostgreSQL's own, only to further relations
    UNION ALL SELECT d.refclassid, d.refobjid, d.refobjsubid, r.sys OR r.obj {_OWN}, true
      FROM pg_catalog.pg_rewrite w JOIN pg_catalog.pg_depend d ON d.classid {_EQ} 2618 AND d.objid {_EQ} w.oid
      WHERE r.cls {_EQ} 1259 AND w.ev_class {_EQ} r.obj AND w.ev_type {_EQ} '1'::pg_catalog."char"
        AND d.refobjid OPERATOR(pg_catalog.<>) r.obj AND (d.refclassid {_EQ} 1259 OR (NOT r.sys
          AND r.obj {_USER}
          AND d.refclassid {_EQ} ANY ('{{1255,2617,1247}}'::pg_catalog.oid[])))
    -- row-level security: the policies a SELECT applies
    UNION ALL SELECT d.refclassid, d.refobjid, d.refobjsubid, false, true FROM pg_catalog.pg_policy pol
        JOIN pg_catalog.pg_depend d ON d.classid {_EQ} 3256 AND d.objid {_EQ} pol.oid
      WHERE NOT r.sys AND r.cls {_EQ} 1259 AND pol.polrelid {_EQ} r.obj
        AND pol.polcmd {_EQ} ANY ('{{r,*}}'::pg_catalog."char"[]) AND d.refobjid OPERATOR(pg_catalog.<>) r.obj
        AND d.refclassid {_EQ} ANY ('{{1255,2617,1247,1259}}'::pg_catalog.oid[])
    -- inheritance and partition children: scanned with their parent
    UNION ALL SELECT 1259, i.inhrelid, 0, false, true FROM pg_catalog.pg_inherits i
      WHERE NOT r.sys AND r.cls {_EQ} 1259 AND i.inhparent {_EQ} r.obj
    -- indexes: the support functions of their operator classes run in index scans
    UNION ALL SELECT 1255, a.amproc::pg_catalog.oid, 0, false, false FROM pg_catalog.pg_index x
        CROSS JOIN LATERAL pg_catalog.unnest(x.indclass::pg_catalog.oid[]) AS k(opc)
        JOIN pg_catalog.pg_opclass c ON c.oid {_EQ} k.opc
        JOIN pg_catalog.pg_amproc a ON a.amprocfamily {_EQ} c.opcfamily
      WHERE NOT r.sys AND r.cls {_EQ} 1259 AND r.obj {_USER}
        AND x.indrelid {_EQ} r.obj AND c.opcfamily {_USER}
    -- a foreign table of postgres_fdw on this very database: the relation it reads there
    UNION ALL SELECT 1259, there.oid, 0, false, true FROM loopback l
        JOIN pg_catalog.pg_namespace n ON n.nspname {_EQ} l.sch
        JOIN pg_catalog.pg_class there ON there.relnamespace {_EQ} n.oid AND there.relname {_EQ} l.rel
      WHERE NOT r.sys AND r.cls {_EQ} 1259 AND l.ftrelid {_EQ} r.obj
  ) e WHERE r.walk),"""

# Foreign tables of postgres_fdw whose server is the address, port and database this session
# is connected to, with the schema and name of the relation they read there.
_LOOPBACK = f"""
loopback(ftrelid, sch, rel) AS (
  SELECT ft.ftrelid,
    COALESCE((SELECT o.option_value FROM pg_catalog.pg_options_to_table(ft.ftoptions) o
      WHERE o.option_name {_EQ} 'schema_name'), n.nspname::pg_catalog.text)::pg_catalog.name,
    COALESCE((SELECT o.option_value FROM pg_catalog.pg_options_to_table(ft.ftoptions) o
      WHERE o.option_name {_EQ} 'table_name'), c.relname::pg_catalog.text)::pg_catalog.name
  FROM pg_catalog.pg_foreign_table ft
  JOIN pg_catalog.pg_class c ON c.oid {_EQ} ft.ftrelid
  JOIN pg_catalog.pg_namespace n ON n.oid {_EQ} c.relnamespace
  JOIN pg_catalog.pg_foreign_server s ON s.oid {_EQ} ft.ftserver
  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid {_EQ} s.srvfdw
  JOIN pg_catalog.pg_proc h ON h.oid {_EQ} w.fdwhandler
  WHERE h.proname {_EQ} 'postgres_fdw_handler'
    AND (SELECT pg_catalog.array_agg(pg_catalog.concat(o.option_name, '=', o.option_value) ORDER BY o.option_name)
         FROM pg_catalog.pg_options_to_table(s.srvoptions) o
         WHERE o.option_name {_EQ} ANY ('{{host,port,dbname}}'::pg_catalog.text[]))
      {_EQ} ARRAY[pg_catalog.concat('dbname=', pg_catalog.current_database()),
                  pg_catalog.concat('host=', pg_catalog.host(pg_catalog.inet_server_addr())),
                  pg_catalog.concat('port=', pg_catalog.inet_server_port())]),"""

# $4 PostgreSQL's own volatile functions allowed (pg_catalog, OID below 16384), $5 "schema.name"
# and $6 "schema.name(argument types)" allowed by the operator, $7 "extension.name" allowed
# functions of extensions, $8 function names refused, $9 relation names refused (pg_catalog).
_OUT = f"""
functions(oid, top) AS (
  SELECT obj, pg_catalog.bool_or(top) FROM reach WHERE cls {_EQ} 1255 AND NOT sys GROUP BY obj),
judged(kind, oid, name, reason, lang) AS (
  -- LATERAL ... OFFSET 0: one index lookup per function reached, never a scan of all of pg_proc.
  SELECT j.* FROM functions f CROSS JOIN LATERAL (
    SELECT 'f'::pg_catalog.text, p.oid, p.oid::pg_catalog.regprocedure::pg_catalog.text, CASE
        WHEN p.proname {_EQ} ANY ($8::pg_catalog.name[]) THEN 'denied'
        WHEN p.provolatile {_EQ} 'v'::pg_catalog."char" THEN CASE WHEN (
            (p.oid {_OWN} AND n.nspname {_EQ} 'pg_catalog'::pg_catalog.name
              AND p.proname {_EQ} ANY ($4::pg_catalog.name[]))
            OR pg_catalog.concat(n.nspname, '.', p.proname) {_EQ} ANY ($5::pg_catalog.text[])
            OR pg_catalog.concat(n.nspname, '.', p.proname, '(', pg_catalog.oidvectortypes(p.proargtypes), ')')
              {_EQ} ANY ($6::pg_catalog.text[])
            OR EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension x ON x.oid {_EQ} d.refobjid
              WHERE d.classid {_EQ} 1255 AND d.objid {_EQ} p.oid AND d.refclassid {_EQ} 3079
                AND d.deptype {_EQ} 'e'::pg_catalog."char"
                AND pg_catalog.concat(x.extname, '.', p.proname) {_EQ} ANY ($7::pg_catalog.text[])))
          THEN NULL ELSE 'volatile' END
        WHEN p.oid {_OWN} THEN NULL
        WHEN l.lanname OPERATOR(pg_catalog.<>) ALL ('{{sql,plpgsql,c,internal}}'::pg_catalog.name[]) THEN 'language'
        WHEN p.prosqlbody IS NOT NULL AND p.prosqlbody::pg_catalog.text
          OPERATOR(pg_catalog.~) ':relid ({"|".join(map(str, CREDENTIAL_CATALOGS))}) ' THEN 'credentials'
        WHEN p.prosqlbody IS NOT NULL OR l.lanname {_EQ} ANY ('{{c,internal}}'::pg_catalog.name[]) THEN NULL
        WHEN pg_catalog.octet_length(p.prosrc) OPERATOR(pg_catalog.>) {MAX_DEFINITION_BYTES} THEN 'large'
        ELSE 'body' END AS reason,
      l.lanname::pg_catalog.text
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid {_EQ} p.pronamespace
      JOIN pg_catalog.pg_language l ON l.oid {_EQ} p.prolang
    WHERE p.oid {_EQ} f.oid OFFSET 0) j(kind, oid, name, reason, lang)
  WHERE j.reason IS NOT NULL),
relations(oid, top, sys, kind, nsp, name) AS (
  SELECT r.obj, r.top, r.sys, c.relkind, c.relnamespace, c.relname
  FROM (SELECT obj, pg_catalog.bool_or(top) AS top, pg_catalog.bool_and(sys) AS sys FROM reach
    WHERE cls {_EQ} 1259 GROUP BY obj) r
  CROSS JOIN LATERAL (SELECT c.relkind, c.relnamespace, c.relname FROM pg_catalog.pg_class c
    WHERE c.oid {_EQ} r.obj OFFSET 0) c),
views(oid, top) AS (SELECT oid, top FROM relations WHERE kind {_EQ} 'v'::pg_catalog."char"),
credential_views(oid) AS (
  -- LATERAL ... OFFSET 0: the rules of the views reached only (by index), never all of pg_rewrite.
  SELECT v.oid FROM views v CROSS JOIN LATERAL (SELECT w.ev_action FROM pg_catalog.pg_rewrite w
      WHERE w.ev_class {_EQ} v.oid OFFSET 0) w
    WHERE w.ev_action::pg_catalog.text OPERATOR(pg_catalog.~) ':relid ({"|".join(map(str, CREDENTIAL_CATALOGS))}) '
  UNION SELECT v.oid FROM views v CROSS JOIN LATERAL (SELECT w.ev_action FROM pg_catalog.pg_rewrite w
      WHERE w.ev_class {_EQ} v.oid OFFSET 0) w
    JOIN credential_views c ON pg_catalog.strpos(w.ev_action::pg_catalog.text,
      pg_catalog.concat(':relid ', c.oid, ' ')) OPERATOR(pg_catalog.>) 0)
SELECT kind, name, reason, lang, CASE WHEN reason {_EQ} 'body' THEN CASE WHEN lang {_EQ} 'plpgsql'
    THEN pg_catalog.pg_get_functiondef(oid)
    ELSE (SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid {_EQ} judged.oid) END END
FROM judged
UNION ALL SELECT 'r', r.oid::pg_catalog.regclass::pg_catalog.text, CASE
    WHEN r.oid {_EQ} ANY ('{{{",".join(map(str, CREDENTIAL_CATALOGS))}}}'::pg_catalog.oid[]) THEN 'credentials'
    WHEN r.nsp {_EQ} 11 AND r.name {_EQ} ANY ($9::pg_catalog.name[]) THEN 'denied'
    ELSE 'foreign' END, NULL, NULL
  FROM relations r
  WHERE NOT r.sys AND (r.oid {_EQ} ANY ('{{{",".join(map(str, CREDENTIAL_CATALOGS))}}}'::pg_catalog.oid[])
    OR (r.nsp {_EQ} 11 AND r.name {_EQ} ANY ($9::pg_catalog.name[]))
    OR (r.kind {_EQ} 'f'::pg_catalog."char" AND NOT EXISTS (SELECT FROM loopback l WHERE l.ftrelid {_EQ} r.oid)))
UNION ALL SELECT 'v', v.oid::pg_catalog.regclass::pg_catalog.text, CASE WHEN v.top THEN 'top' ELSE 'inner' END,
    NULL, pg_catalog."left"(pg_catalog.pg_get_viewdef(v.oid), {MAX_DEFINITION_BYTES})
  FROM views v JOIN credential_views c ON c.oid {_EQ} v.oid
"""


def _check_sql(start: str, server_version: int) -> str:
    head = _NAMED.format(unqualified=_UNQUALIFIED[start])
    implicit = _IMPLICIT if start != "bodies" else ""
    sql = "WITH RECURSIVE" + head + implicit + _LOOPBACK + _STARTS[start] + _WALK + _OUT
    if server_version < 140_000:  # no BEGIN ATOMIC bodies before PostgreSQL 14
        sql = sql.replace("p.prosqlbody", "NULL::pg_catalog.pg_node_tree")
    return sql


_CHECKS: dict[tuple[str, bool], Named] = {}


def check(start: str, server_version: int) -> Named:
    """The check that starts from ``start`` ("exact", "names" or "bodies"), for a server version.

    "exact" needs the temporary view ``pg_temp.mcp_check``. Parameters: ``FunctionPolicy.params``.
    """
    key = (start, server_version >= 140_000)
    if key not in _CHECKS:
        _CHECKS[key] = Named(f"mcp_reach_{start}", _check_sql(start, server_version), (1009,) * 9)
    return _CHECKS[key]
