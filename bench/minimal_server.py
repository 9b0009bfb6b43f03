"""The floor for per-call overhead: a bare ``MCPServer`` (the SDK's high-level server).

Run over stdio exactly like the real servers (``python -m bench.minimal_server``). ``constant``
is a plain function, which the SDK runs in a worker thread as it would any synchronous tool;
``constant_async`` runs on the event loop (no thread hop). Both return structured content with
an output schema, as every mcp-tenants tool does. ``pid`` lets the bench check it is talking to
the process it measures.

``result`` returns, from memory, the result our ``query`` tool gave for the same SQL (the bench
saves them in the JSON file ``$BENCH_RESULTS``, SQL → result), as structured content with the
same output schema as ``query`` (``QueryResult``: rows are "an array"): the floor for a query of that many rows.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Annotated, Any

from mcp.server import MCPServer
from pydantic import WithJsonSchema
from typing_extensions import TypedDict


class Constant(TypedDict):
    value: int


class Column(TypedDict):
    name: str
    type: str


#: As in mcp_tenants.postgres.results: "an array", nothing per row or cell, so that a validating
#: client does not walk every value.
Rows = Annotated[list[Any], WithJsonSchema({"type": "array"})]


class QueryResult(TypedDict):
    columns: list[Column]
    rows: Rows
    row_count: int
    truncated: bool


mcp = MCPServer("bench-minimal")


@functools.cache
def saved_results() -> dict[str, QueryResult]:
    """SQL → the result our server returned (loaded on first use, kept in memory)."""
    with open(os.environ["BENCH_RESULTS"], encoding="utf-8") as f:
        results: dict[str, QueryResult] = json.load(f)
    return results


@mcp.tool()
def constant() -> Constant:
    """Return a constant (run in the SDK's worker thread)."""
    return {"value": 1}


@mcp.tool()
async def constant_async() -> Constant:
    """Return a constant (run on the event loop)."""
    return {"value": 1}


@mcp.tool()
def pid() -> Constant:
    """The server's process id."""
    return {"value": os.getpid()}


@mcp.tool()
def result(sql: str) -> QueryResult:
    """The result ``query`` gave for ``sql``, from memory (run in the SDK's worker thread)."""
    return saved_results()[sql]


if __name__ == "__main__":
    asyncio.run(mcp.run_stdio_async())
