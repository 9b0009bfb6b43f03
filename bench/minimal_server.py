"""The floor for per-call overhead: a bare ``MCPServer`` whose tools return a constant.

Run over stdio exactly like the real servers (``python -m bench.minimal_server``). ``constant``
is a plain function, which the SDK runs in a worker thread as it would any synchronous tool;
``constant_async`` runs on the event loop (no thread hop). Both return structured content with
an output schema, as every mcp-tenants tool does. ``pid`` lets the bench check it is talking to
the process it measures.
"""

from __future__ import annotations

import asyncio
import os

from mcp.server import MCPServer
from typing_extensions import TypedDict


class Constant(TypedDict):
    value: int


mcp = MCPServer("bench-minimal")


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


if __name__ == "__main__":
    asyncio.run(mcp.run_stdio_async())
