"""The function policy of read-only statements: judged by what functions do, in the tenant's catalog.

Every function a statement on a read-only tenant can reach must be non-volatile (IMMUTABLE or
STABLE) in the tenant's own catalog, or on a short allow list of volatile functions that only
read or wait (``DEFAULT_ALLOWED``; operators add more with ``MCP_ALLOWED_VOLATILE_FUNCTIONS``).
A volatile function is one PostgreSQL itself considers able to change state; inside a READ ONLY
transaction that leaves the state outside it: other sessions, files, indexes, sequences, locks.

What a statement can reach is computed in the catalog (``reach``), from PostgreSQL's own
resolution of the statement (``resolve``) or, where that is not available, from its names. A
non-volatile function of the tenant's whose body is text is inspected (``definitions``): a
PL/pgSQL function that runs SQL built at run time (``EXECUTE``) is refused, and what the
body's SQL reaches is judged by the same rules; a non-volatile function in another language
(plperl, plpython, plv8, ...) cannot be inspected and is refused unless allowed by name.

The allow list matches PostgreSQL's own functions (OID below 16384, in ``pg_catalog``) by name,
so that a ``pg_catalog.pg_sleep(text)`` a superuser created, or pgcrypto's
``public.gen_random_uuid()``, is judged on its own; the operator's entries match
``schema.name`` (any signature) or ``schema.name(argument types)``; a few functions of
extensions that only read statistics are allowed by extension (``DEFAULT_EXTENSION_ALLOWED``).

A second layer refuses by name (``DENIED_FUNCTIONS``) functions that run SQL given as text or by
table name, open connections to other servers or consume a transaction id, and
(``DENIED_RELATIONS``) the system views that show server configuration files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from mcp_tenants.errors import AccessDenied
from mcp_tenants.postgres.sqltree import References
from mcp_tenants.postgres.wire import Params

#: Volatile functions ``query`` runs anyway (PostgreSQL's own, in pg_catalog): they read, wait or
#: make random values, and change nothing that outlives the transaction.
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
#: Functions of extensions ``query`` runs although they are declared VOLATILE: they only read
#: statistics (``extension.function``; any schema the extension is installed in).
DEFAULT_EXTENSION_ALLOWED = (
    "pg_stat_statements.pg_stat_statements",
    "pg_stat_statements.pg_stat_statements_info",
    "pg_buffercache.pg_buffercache_pages",
    "pg_buffercache.pg_buffercache_summary",
    "pg_buffercache.pg_buffercache_usage_counts",
    "pg_freespacemap.pg_freespace",
    "pg_visibility.pg_visibility_map_summary",
)
#: Environment variable with more allowed volatile functions: ``name`` (pg_catalog), ``schema.name``
#: or ``schema.name(argument types)``.
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
#: Second layer: views (in pg_catalog) refused by name: they show server configuration files.
#: The catalogs that hold credentials are refused by OID (``reach``), and the views that show
#: them by what their definitions select (``definitions``).
DENIED_RELATIONS = ["pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings"]

_REASONS = {
    "denied": "",  # from DENIED_FUNCTIONS
    "language": (
        "is written in {detail} and declared non-volatile, but its body cannot be inspected: "
        "{tool} runs such functions only when allowed by name ({variable})"
    ),
    "large": "has a body too long to inspect ({tool} runs only functions whose bodies it can check)",
    "credentials": "reads a catalog that holds credentials (pg_authid, pg_user_mapping, pg_subscription)",
}
_RELATIONS = {
    "credentials": "is not allowed: it holds credentials (use pg_roles, pg_user_mappings without options, ...)",
    "denied": "is not allowed: it shows server configuration files",
    "foreign": (
        "is a foreign table: {tool} reads foreign tables only of postgres_fdw servers that point "
        "back at this same database (host, port and dbname options), whose objects it can check"
    ),
}


@dataclass(frozen=True)
class FunctionPolicy:
    """The allow list of one server process (``DEFAULT_ALLOWED`` plus the operator's additions)."""

    allowed: tuple[str, ...]  # as configured: name, schema.name or schema.name(types)
    builtin: tuple[str, ...] = ()  # PostgreSQL's own functions, by name
    qualified: tuple[str, ...] = ()  # schema.name, any signature
    signatures: tuple[str, ...] = ()  # schema.name(argument types)
    extensions: tuple[str, ...] = DEFAULT_EXTENSION_ALLOWED

    @classmethod
    def from_names(cls, extra: Iterable[str] = ()) -> FunctionPolicy:
        names = [*DEFAULT_ALLOWED, *(n.strip() for n in extra if n.strip())]
        builtin: list[str] = []
        qualified: list[str] = []
        signatures: list[str] = []
        for name in names:
            if "(" in name:
                signatures.append(name if "." in name.split("(", 1)[0] else f"pg_catalog.{name}")
            elif "." not in name or name.startswith("pg_catalog."):
                builtin.append(name.removeprefix("pg_catalog."))
            else:
                qualified.append(name)
        shown = (n if "." in n.split("(", 1)[0] else f"pg_catalog.{n}" for n in names)
        return cls(
            allowed=tuple(dict.fromkeys(shown)),
            builtin=tuple(dict.fromkeys(builtin)),
            qualified=tuple(dict.fromkeys(qualified)),
            signatures=tuple(dict.fromkeys(_normalised(s) for s in signatures)),
        )

    def params(self, refs: References, *, kinds: str = "faotr", skip: Iterable[str] = ()) -> list[Sequence[str | None]]:
        """Parameters $1..$9 of the ``reach`` checks for ``refs``: only references of ``kinds``;
        ``skip``: relation names that are no relation (CTE names)."""
        skipped = set(skip)
        rows: list[tuple[str, str | None, str]] = []
        if "f" in kinds:
            rows += [("f", schema, name) for schema, name in refs.functions]
        if "a" in kinds:
            rows += [("a", None, name) for name in refs.attributes]
        if "o" in kinds:
            rows += [("o", schema, name) for schema, name in refs.operators]
        if "t" in kinds:
            rows += [("t", schema, name) for schema, name in refs.types]
        if "r" in kinds:
            rows += [("r", s, n) for s, n in refs.relations if s is not None or n not in skipped]
        denied = [name for names in DENIED_FUNCTIONS.values() for name in names.split()]
        return [
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            list(self.builtin),
            list(self.qualified),
            list(self.signatures),
            list(self.extensions),
            denied,
            DENIED_RELATIONS,
        ]

    def check_params(
        self, conn: psycopg.Connection[Any], refs: References, *, kinds: str = "faotr", skip: Iterable[str] = ()
    ) -> Params:
        """The parameters of a ``reach`` check for ``refs``, as text arrays."""
        return Params(conn, self.params(refs, kinds=kinds, skip=skip), text=True)

    def refuse(self, found: Iterable[tuple[str, str, str, str]], tool: str, *, via: str = "") -> AccessDenied | None:
        """The ``AccessDenied`` for the check's ``f``/``r`` rows (kind, name, reason, detail), or None."""
        reasons = sorted({self.reason(kind, name, reason, detail, tool) for kind, name, reason, detail in found})
        if not reasons:
            return None
        suffix = f" (reached through {via})" if via else ""
        return AccessDenied("; ".join(reasons) + suffix)

    def reason(self, kind: str, name: str, reason: str, detail: str, tool: str) -> str:
        """One offender in a person's words."""
        if kind == "r":
            return f"{name} " + _RELATIONS.get(reason, "is not allowed").format(tool=tool)
        if reason == "denied":
            bare = name.split("(", 1)[0].rsplit(".", 1)[-1].strip('"')
            why = next((w for w, names in DENIED_FUNCTIONS.items() if bare in names.split()), "is refused by name")
            return f"{name} is not allowed: it {why}"
        if reason in _REASONS:
            return f"{name} " + _REASONS[reason].format(detail=detail, tool=tool, variable=ALLOW_VARIABLE)
        shown = ", ".join(n.removeprefix("pg_catalog.") for n in self.allowed[:8])
        return (
            f"{name} is VOLATILE: it can change state outside the transaction; {tool} runs only "
            f"non-volatile functions (allowed volatile functions: {shown}, ...; extend with {ALLOW_VARIABLE}); "
            "to call it for its effect on a read-write tenant, use execute "
            "(DO $$ BEGIN PERFORM ...; END $$)"
        )


def _normalised(signature: str) -> str:
    """``schema.name(type, type)`` as ``pg_catalog.oidvectortypes`` writes it (", " between types)."""
    head, _, rest = signature.partition("(")
    types = [t.strip() for t in rest.rstrip(")").split(",") if t.strip()]
    return f"{head.strip()}({', '.join(types)})"
