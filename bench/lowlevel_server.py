"""The floor under ``MCPServer``: the SDK's low-level ``Server`` with one hand-written tool.

``result`` answers what ``bench/minimal_server.py``'s ``result`` answers (our ``query`` result
for the same SQL, from memory, ``$BENCH_RESULTS``), with the same input and output schemas, run
in a worker thread like a synchronous ``MCPServer`` tool, and sent as structured content plus
the same JSON as compact text (as mcp-tenants sends it). What ``MCPServer`` adds per call
(argument models, result conversion, its tool manager) is what this one leaves out.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Annotated, Any

import anyio
import mcp_types as types
import pydantic
import pydantic_core
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from pydantic import WithJsonSchema
from typing_extensions import TypedDict


class Column(TypedDict):
    name: str
    type: str


Rows = Annotated[list[Any], WithJsonSchema({"type": "array"})]


class QueryResult(TypedDict):  # as in bench/minimal_server.py (not imported: it loads MCPServer)
    columns: list[Column]
    rows: Rows
    row_count: int
    truncated: bool


INPUT_SCHEMA = {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}
OUTPUT_SCHEMA = pydantic.TypeAdapter(QueryResult).json_schema()
TOOL = types.Tool(
    name="result",
    description="The result query gave for sql, from memory.",
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
)


@functools.cache
def saved_results() -> dict[str, Any]:
    """SQL → the result our server returned (loaded on first use, kept in memory)."""
    with open(os.environ["BENCH_RESULTS"], encoding="utf-8") as f:
        results: dict[str, Any] = json.load(f)
    return results


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name != "result":
        return types.CallToolResult(content=[types.TextContent(text=f"unknown tool {params.name}")], is_error=True)
    sql = (params.arguments or {}).get("sql")
    if not isinstance(sql, str):
        return types.CallToolResult(content=[types.TextContent(text="sql: a string is required")], is_error=True)
    result = await anyio.to_thread.run_sync(lambda: saved_results()[sql])
    text = pydantic_core.to_json(result).decode()
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=result)


server: Server[Any] = Server("bench-lowlevel", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    asyncio.run(main())
