"""The tools' own SQL runs none of the tenant's functions: every function and operator in it is
qualified with pg_catalog, so that no search_path and no owner's overload (``public.lower(name)``
outranks ``pg_catalog.lower(text)`` for a name argument) can change what it calls."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pglast import ast, parse_sql
from pglast.visitors import Visitor

from mcp_tenants.postgres import catalog, policy, reset, rowjson, transactions

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


def _statements() -> Iterator[tuple[str, str]]:
    for module in (catalog, policy, reset, rowjson, transactions):
        for name, value in vars(module).items():
            if name.startswith("_") and name.endswith("_PART"):
                continue  # a fragment, checked inside the statement it is part of
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and re.match(r"\s*(SELECT|WITH|CLOSE|SET|RESET|UNLISTEN|DISCARD)\b", value):
                yield f"{module.__name__}.{name}", value
            elif isinstance(value, tuple) and all(isinstance(v, bytes) for v in value):
                for i, item in enumerate(value):
                    yield f"{module.__name__}.{name}[{i}]", item.decode()
    info = rowjson.TypeInfo("x", "b", 0, 0)
    for oid in (rowjson.INT8, rowjson.NUMERIC, rowjson.BYTEA, 25, 3802):
        wrapped, _ = rowjson.wrap("SELECT 1", [oid], [-1], [info], limit=10, budget=100)
        yield f"rowjson.wrap({oid})", wrapped


class _Unqualified(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        names = [n.sval for n in node.funcname]
        if names[0] != "pg_catalog":
            self.found.append(".".join(names) + "()")

    def visit_A_Expr(self, ancestors: Any, node: ast.A_Expr) -> None:
        names = [n.sval for n in node.name or ()]
        if names and names[0] != "pg_catalog":
            self.found.append("operator " + ".".join(names))


@pytest.mark.parametrize(("where", "sql"), list(_statements()))
def test_the_tools_own_sql_calls_only_qualified_functions_and_operators(where: str, sql: str) -> None:
    text = _PLACEHOLDER.sub("$1", sql).replace("{side}", "conrelid")
    visitor = _Unqualified()
    visitor(parse_sql(text))
    assert not visitor.found, f"{where}: unqualified {', '.join(sorted(set(visitor.found)))}"
