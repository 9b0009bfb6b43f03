"""Drive a server process over stdio with the MCP SDK's own client, as a desktop client would."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests import audit

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class ToolFailed(Exception):
    """The tool answered with isError: true."""


class Session:
    """A connected client with helpers that return structured results or raise ToolFailed."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transcript: list[str] = []  # every result and error text, for secret checks

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content)
        self.transcript.append(text)
        audit.record(f"{tool} result", text)
        if result.is_error:
            raise ToolFailed(text)
        return result.structured_content or {}

    async def fail(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail; return its error text."""
        try:
            await self.call(tool, **arguments)
        except ToolFailed as exc:
            return str(exc)
        raise AssertionError(f"{tool} succeeded but was expected to fail")


class ServerProcess:
    """How to start one server (console entry point + environment); each ``run`` is a new process."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.module = module
        self.env = env
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mcp-server-", suffix=".log", delete=False)  # noqa: SIM115 - closed by close()

    def params(self) -> StdioServerParameters:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), **self.env}
        return StdioServerParameters(command=sys.executable, args=["-m", self.module], env=env, cwd=str(ROOT))

    def connect(self, **client_options: Any) -> Client:
        """A client that starts this server as a subprocess when entered (``async with``)."""
        return Client(stdio_client(self.params(), errlog=self.log), mode="legacy", **client_options)

    def run(self, scenario: Callable[[Session], Awaitable[T]]) -> T:
        """Start the server, run ``scenario`` against it, stop it (stdin closes) and return."""

        async def main() -> T:
            async with self.connect() as client:
                return await scenario(Session(client))

        return asyncio.run(main())

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def close(self) -> None:
        audit.record(f"{self.module} log", self.logs())
        self.log.close()
        os.unlink(self.log.name)
