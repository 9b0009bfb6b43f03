"""The function policy of read-only statements: judged by what functions do, in the tenant's catalog.

Every function a statement on a read-only tenant can reach must be non-volatile (IMMUTABLE or
STABLE) in the tenant's own catalog, or on a short allow list of volatile functions that only
read or wait (``DEFAULT_ALLOWED``; operators add more with ``MCP_ALLOWED_VOLATILE_FUNCTIONS``).
A volatile function is one PostgreSQL itself considers able to change state; inside a READ ONLY
transaction that leaves the state outside it: other sessions, files, indexes, sequences, locks.

"Can reach" is computed by one catalog query (``CHECK_SQL``), from the names the statement uses
(``sqltree.References``) and resolved conservatively: a name stands for *every* candidate it can
resolve to in ``current_schemas(true)`` (or in the schema given), whatever the argument types,
because PostgreSQL's own choice depends on types the guard does not know. From there the query
follows, recursively:

- operators to their implementation and estimator functions;
- aggregates to their support functions (transition, final, combine, ...);
- types to their input functions, casts from and to them, and domain CHECK constraints;
- relations to the rewrite rules of views and to row-level-security policies, and these, like
  SQL functions with a ``BEGIN ATOMIC`` body, to everything ``pg_depend`` records they use.

Objects created by ``initdb`` (OIDs below 16384: the system catalogs, system views such as
``pg_stat_activity`` and ``information_schema``) are PostgreSQL's own: their functions are
checked when named, but their insides are not walked. Two things the catalog cannot tell are
trusted: a non-volatile function whose body is a string (plpgsql, or SQL without BEGIN ATOMIC)
is taken at its declared volatility (PostgreSQL runs it with a read-only snapshot), and base
types, operator classes and C functions, which only superusers create.

A second layer refuses by name (``DENIED_FUNCTIONS``) non-volatile functions that run SQL given
as text or by table name, and (``DENIED_RELATIONS``) the catalogs that hold credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from mcp_tenants.errors import AccessDenied
from mcp_tenants.postgres.sqltree import References
from mcp_tenants.postgres.wire import Named, Params

#: Volatile functions ``query`` runs anyway (schema pg_catalog): they read, wait or make random
#: values, and change nothing that outlives the transaction.
DEFAULT_ALLOWED = (
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_database_size",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_tablespace_size",
    "pg_is_in_recovery",
    "pg_current_wal_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_blocking_pids",
    "pg_lock_status",
    "lo_get",
)
#: Environment variable with more allowed volatile functions: ``name`` (pg_catalog) or ``schema.name``.
ALLOW_VARIABLE = "MCP_ALLOWED_VOLATILE_FUNCTIONS"

#: Second layer: functions refused by name whatever their volatility, with the reason.
DENIED_FUNCTIONS = {
    "runs SQL given as text or by table name, out of the guard's sight": (
        "query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema "
        "table_to_xml table_to_xmlschema table_to_xml_and_xmlschema schema_to_xml schema_to_xmlschema "
        "schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema "
        "ts_stat xpath_table connectby crosstab crosstab2 crosstab3 crosstab4"
    ),
    "opens connections to other servers": "dblink dblink_exec dblink_open dblink_fetch dblink_send_query",
    "consumes a transaction id": "txid_current pg_current_xact_id",
}
#: Second layer: relations (in pg_catalog) refused by name.
DENIED_RELATIONS = [
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping",
    "pg_user_mappings",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_file_settings",
]

_MARK = "mcp-guard-refused"
_FIRST_USER_OID = 16384  # FirstNormalObjectId: below it, objects made by initdb
# A function found by a first step needs no walk: PostgreSQL's own, and no aggregate.
_DONE = (
    "({fn} OPERATOR(pg_catalog.<) " + str(_FIRST_USER_OID) + " AND NOT EXISTS (SELECT FROM pg_catalog.pg_aggregate x"
    " WHERE x.aggfnoid OPERATOR(pg_catalog.=) {fn}))"
)

# Kinds of reference: f function (any arity), a attribute notation (one argument), o operator,
# t type, r relation. Every function and operator is schema-qualified and every operator
# spelled OPERATOR(pg_catalog.x): the tenant's search_path must not change what this query means.
_OFFENDERS_PART = f"""
WITH RECURSIVE
refs(kind, sch, name) AS (
  SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
    pg_catalog.unnest($3::pg_catalog.text[]))),
spaces(kind, name, nsp) AS (
  SELECT r.kind, r.name, n.oid FROM refs r JOIN pg_catalog.pg_namespace n ON CASE
    WHEN r.sch IS NULL THEN n.nspname OPERATOR(pg_catalog.=) ANY (pg_catalog.current_schemas(true))
    WHEN r.sch OPERATOR(pg_catalog.=) 'pg_temp' THEN n.oid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
    ELSE n.nspname OPERATOR(pg_catalog.=) r.sch END),
start(cls, obj) AS (
  SELECT 1255::pg_catalog.oid, p.oid FROM spaces s JOIN pg_catalog.pg_proc p
    ON p.pronamespace OPERATOR(pg_catalog.=) s.nsp AND p.proname OPERATOR(pg_catalog.=) s.name
    WHERE s.kind OPERATOR(pg_catalog.=) 'f' OR (s.kind OPERATOR(pg_catalog.=) 'a' AND (
      p.provariadic OPERATOR(pg_catalog.<>) 0 OR (p.pronargs OPERATOR(pg_catalog.>=) 1
      AND p.pronargs OPERATOR(pg_catalog.-) p.pronargdefaults OPERATOR(pg_catalog.<=) 1)))
  UNION SELECT 2617, o.oid FROM spaces s JOIN pg_catalog.pg_operator o
    ON o.oprnamespace OPERATOR(pg_catalog.=) s.nsp AND o.oprname OPERATOR(pg_catalog.=) s.name
    WHERE s.kind OPERATOR(pg_catalog.=) 'o'
  UNION SELECT 1247, t.oid FROM spaces s JOIN pg_catalog.pg_type t
    ON t.typnamespace OPERATOR(pg_catalog.=) s.nsp AND t.typname OPERATOR(pg_catalog.=) s.name
    WHERE s.kind OPERATOR(pg_catalog.=) 't'
  UNION SELECT 1259, c.oid FROM spaces s JOIN pg_catalog.pg_class c
    ON c.relnamespace OPERATOR(pg_catalog.=) s.nsp AND c.relname OPERATOR(pg_catalog.=) s.name
    WHERE s.kind OPERATOR(pg_catalog.=) 'r'),
-- One step of PostgreSQL's own objects in start, set-based: what the walk below would do to them
-- (the steps that need an object of ours do nothing to these). A product needs no walk of its own
-- when it is PostgreSQL's own function and no aggregate (nothing else applies to one).
first(cls, obj, walked) AS (
  SELECT cls, obj, obj OPERATOR(pg_catalog.<) {_FIRST_USER_OID} FROM start
  UNION ALL SELECT 3256, pol.oid, false FROM start s JOIN pg_catalog.pg_policy pol
    ON pol.polrelid OPERATOR(pg_catalog.=) s.obj
    WHERE s.cls OPERATOR(pg_catalog.=) 1259 AND s.obj OPERATOR(pg_catalog.<) {_FIRST_USER_OID}
  UNION ALL SELECT 1255, f.fn, {_DONE.format(fn="f.fn")} FROM start s JOIN pg_catalog.pg_operator o
    ON o.oid OPERATOR(pg_catalog.=) s.obj CROSS JOIN LATERAL (VALUES
      (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), (o.oprjoin::pg_catalog.oid)) f(fn)
    WHERE s.cls OPERATOR(pg_catalog.=) 2617 AND s.obj OPERATOR(pg_catalog.<) {_FIRST_USER_OID}
      AND f.fn OPERATOR(pg_catalog.<>) 0
  UNION ALL SELECT 1255, f.fn, {_DONE.format(fn="f.fn")} FROM start s JOIN pg_catalog.pg_aggregate a
    ON a.aggfnoid OPERATOR(pg_catalog.=) s.obj CROSS JOIN LATERAL (VALUES
      (a.aggtransfn::pg_catalog.oid), (a.aggfinalfn::pg_catalog.oid), (a.aggcombinefn::pg_catalog.oid),
      (a.aggserialfn::pg_catalog.oid), (a.aggdeserialfn::pg_catalog.oid), (a.aggmtransfn::pg_catalog.oid),
      (a.aggminvtransfn::pg_catalog.oid), (a.aggmfinalfn::pg_catalog.oid)) f(fn)
    WHERE s.cls OPERATOR(pg_catalog.=) 1255 AND s.obj OPERATOR(pg_catalog.<) {_FIRST_USER_OID}
      AND f.fn OPERATOR(pg_catalog.<>) 0
  UNION ALL SELECT 1255, t.typinput::pg_catalog.oid, {_DONE.format(fn="t.typinput::pg_catalog.oid")}
    FROM start s JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) s.obj
    WHERE s.cls OPERATOR(pg_catalog.=) 1247 AND s.obj OPERATOR(pg_catalog.<) {_FIRST_USER_OID}),
reach(cls, obj, walked) AS (
  SELECT cls, obj, walked FROM first
  UNION
  SELECT e.cls, e.obj, false FROM reach r CROSS JOIN LATERAL (
    SELECT d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
      WHERE r.obj OPERATOR(pg_catalog.>=) {_FIRST_USER_OID} AND d.classid OPERATOR(pg_catalog.=) r.cls
        AND d.objid OPERATOR(pg_catalog.=) r.obj AND d.refclassid OPERATOR(pg_catalog.=) ANY ('{{1255,2617,1247,1259}}')
    UNION ALL SELECT 2618, w.oid FROM pg_catalog.pg_rewrite w
      WHERE r.cls OPERATOR(pg_catalog.=) 1259 AND r.obj OPERATOR(pg_catalog.>=) {_FIRST_USER_OID}
        AND w.ev_class OPERATOR(pg_catalog.=) r.obj
    UNION ALL SELECT 3256, pol.oid FROM pg_catalog.pg_policy pol
      WHERE r.cls OPERATOR(pg_catalog.=) 1259 AND pol.polrelid OPERATOR(pg_catalog.=) r.obj
    UNION ALL SELECT 2606, con.oid FROM pg_catalog.pg_constraint con
      WHERE r.cls OPERATOR(pg_catalog.=) 1247 AND r.obj OPERATOR(pg_catalog.>=) {_FIRST_USER_OID}
        AND con.contypid OPERATOR(pg_catalog.=) r.obj
    UNION ALL SELECT 1255, c.castfunc FROM pg_catalog.pg_cast c
      WHERE r.cls OPERATOR(pg_catalog.=) 1247 AND r.obj OPERATOR(pg_catalog.>=) {_FIRST_USER_OID}
        AND (c.casttarget OPERATOR(pg_catalog.=) r.obj OR c.castsource OPERATOR(pg_catalog.=) r.obj)
        AND c.castfunc OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT 1255, f.fn FROM pg_catalog.pg_operator o CROSS JOIN LATERAL (VALUES
        (o.oprcode::pg_catalog.oid), (o.oprrest::pg_catalog.oid), (o.oprjoin::pg_catalog.oid)) f(fn)
      WHERE r.cls OPERATOR(pg_catalog.=) 2617 AND o.oid OPERATOR(pg_catalog.=) r.obj
        AND f.fn OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT 1255, f.fn FROM pg_catalog.pg_aggregate a CROSS JOIN LATERAL (VALUES
        (a.aggtransfn::pg_catalog.oid), (a.aggfinalfn::pg_catalog.oid), (a.aggcombinefn::pg_catalog.oid),
        (a.aggserialfn::pg_catalog.oid), (a.aggdeserialfn::pg_catalog.oid), (a.aggmtransfn::pg_catalog.oid),
        (a.aggminvtransfn::pg_catalog.oid), (a.aggmfinalfn::pg_catalog.oid)) f(fn)
      WHERE r.cls OPERATOR(pg_catalog.=) 1255 AND a.aggfnoid OPERATOR(pg_catalog.=) r.obj
        AND f.fn OPERATOR(pg_catalog.<>) 0
    UNION ALL SELECT 1255, t.typinput::pg_catalog.oid FROM pg_catalog.pg_type t
      WHERE r.cls OPERATOR(pg_catalog.=) 1247 AND t.oid OPERATOR(pg_catalog.=) r.obj
  ) e(cls, obj) WHERE NOT r.walked),
offenders(line) AS (
  -- LATERAL ... OFFSET 0: one index lookup per function reached, never a scan of all of pg_proc.
  SELECT pg_catalog.concat_ws(E'\\t', 'f', p.oid::pg_catalog.regprocedure, p.provolatile)
  FROM (SELECT DISTINCT obj FROM reach WHERE cls OPERATOR(pg_catalog.=) 1255) r
  CROSS JOIN LATERAL (SELECT p.oid, p.provolatile FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE p.oid OPERATOR(pg_catalog.=) r.obj AND (
      (p.provolatile OPERATOR(pg_catalog.=) 'v' AND NOT pg_catalog.concat(n.nspname, '.', p.proname)
        OPERATOR(pg_catalog.=) ANY ($4::pg_catalog.text[]))
      OR p.proname OPERATOR(pg_catalog.=) ANY ($5::pg_catalog.text[])) OFFSET 0) p
  UNION ALL
  SELECT pg_catalog.concat_ws(E'\\t', 'r', c.oid::pg_catalog.regclass, '')
  FROM (SELECT DISTINCT obj FROM reach WHERE cls OPERATOR(pg_catalog.=) 1259) r
  CROSS JOIN LATERAL (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.obj
    AND c.relnamespace OPERATOR(pg_catalog.=) 11 AND c.relname OPERATOR(pg_catalog.=) ANY ($6::pg_catalog.text[])
    OFFSET 0) c)
"""

#: Raises "invalid input syntax for type integer" carrying the offenders, or returns 0: placed
#: in a pipeline before the statement, a refusal stops the statement from ever being run.
CHECK_SQL = (
    _OFFENDERS_PART + f"SELECT CASE WHEN v IS NULL THEN 0 ELSE pg_catalog.int4in(pg_catalog.textout("
    f"pg_catalog.concat('{_MARK}', E'\\n', v))) END"
    + " FROM (SELECT pg_catalog.string_agg(line, E'\\n') AS v FROM offenders) AS x"
)


#: The check, prepared once per connection (its plan costs more than running it); the pool's
#: reset keeps it (``reset``), and a connection that lost it prepares it again.
CHECK = Named("mcp_guard_check", CHECK_SQL, (1009,) * 6)  # six text[] parameters


@dataclass(frozen=True)
class FunctionPolicy:
    """The allow list of one server process (``DEFAULT_ALLOWED`` plus the operator's additions)."""

    allowed: tuple[str, ...]

    @classmethod
    def from_names(cls, extra: Iterable[str] = ()) -> FunctionPolicy:
        names = [*DEFAULT_ALLOWED, *(n.strip() for n in extra if n.strip())]
        qualified = (n if "." in n else f"pg_catalog.{n}" for n in names)
        return cls(allowed=tuple(dict.fromkeys(qualified)))

    def params(self, refs: References) -> list[Sequence[str | None]]:
        """Parameters $1..$6 of ``CHECK_SQL`` for ``refs``."""
        rows: list[tuple[str, str | None, str]] = []
        rows += [("f", schema, name) for schema, name in refs.functions]
        rows += [("a", None, name) for name in refs.attributes]
        rows += [("o", schema, name) for schema, name in refs.operators]
        rows += [("t", schema, name) for schema, name in refs.types]
        rows += [("r", schema, name) for schema, name in refs.relations]
        denied = [name for names in DENIED_FUNCTIONS.values() for name in names.split()]
        return [
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            list(self.allowed),
            denied,
            DENIED_RELATIONS,
        ]

    def check_params(self, conn: psycopg.Connection[Any], refs: References) -> Params:
        """The parameters of ``CHECK`` for ``refs``, as text arrays."""
        return Params(conn, self.params(refs), text=True)

    def refusal(self, message: str, tool: str) -> AccessDenied | None:
        """The ``AccessDenied`` for ``CHECK_SQL``'s error message, or None if it is not ours."""
        if _MARK not in message:
            return None
        lines = message.split(_MARK, 1)[1].strip().strip('"').splitlines()
        reasons = [self._reason(line.split("\t"), tool) for line in lines if line.count("\t") == 2]
        return AccessDenied("; ".join(sorted(set(reasons))) or f"{tool} refused the statement")

    def _reason(self, fields: list[str], tool: str) -> str:
        kind, name, _volatility = fields
        if kind == "r":
            return f"{name} is not allowed: it exposes credentials or server configuration files"
        bare = name.split("(", 1)[0].rsplit(".", 1)[-1].strip('"')
        for why, names in DENIED_FUNCTIONS.items():
            if bare in names.split():
                return f"{name} is not allowed: it {why}"
        shown = ", ".join(n.removeprefix("pg_catalog.") for n in self.allowed[:8])
        return (
            f"{name} is VOLATILE: it can change state outside the transaction; {tool} runs only "
            f"non-volatile functions (allowed volatile functions: {shown}, ...; extend with {ALLOW_VARIABLE}); "
            "to call it for its effect on a read-write tenant, use execute "
            "(DO $$ BEGIN PERFORM ...; END $$)"
        )
