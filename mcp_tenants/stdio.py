"""The stdio transport: JSON-RPC lines on stdin and stdout, read and written by two threads.

Why not the SDK's ``stdio_server``: it reads stdin through a worker thread that cannot be
cancelled, so a server asked to stop (SIGTERM) waits for the client's next line, for ever if the
client keeps stdin open; and it parses and serialises every message on the event loop. Here a
daemon thread reads and parses lines and another serialises and writes messages, so the event loop
only routes objects, a large result never stalls other calls while it is written, and shutdown
never waits for stdin.

While serving, file descriptors 0 and 1 point at /dev/null and stderr: stray output from a
library or a child process cannot corrupt the protocol stream (the protocol keeps private
duplicates of the real stdin and stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from mcp_tenants.rawjson import Splicer

logger = logging.getLogger(__name__)

Inbound = SessionMessage | Exception
_EOF = None


class Traffic:
    """Counts the requests read and the answers written, so shutdown can wait for the answers,
    then end the input as if the client had closed stdin."""

    def __init__(self, inbound: asyncio.Queue[Inbound | None]) -> None:
        self._inbound = inbound
        self.requests = 0
        self.answers = 0
        self._changed = asyncio.Event()

    def saw(self, item: object, *, inbound: bool) -> None:
        message = getattr(item, "message", None)
        if inbound and isinstance(message, types.JSONRPCRequest):
            self.requests += 1
        elif not inbound and isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self.answers += 1
            self._changed.set()

    async def answered(self) -> None:
        """Return once every request read so far has had its answer written."""
        while self.answers < self.requests:
            self._changed.clear()
            await self._changed.wait()

    def end_input(self) -> None:
        """Stop reading: the server sees end of input and returns once its writes are out."""
        self._inbound.put_nowait(_EOF)


@contextlib.asynccontextmanager
async def stdio_streams(
    max_line: int,
) -> AsyncIterator[tuple[MemoryObjectReceiveStream[Inbound], MemoryObjectSendStream[Any], Traffic]]:
    """The (read, write) stream pair of the process's stdin and stdout, for ``Server.run``, and
    the traffic counter of the two. A message longer than ``max_line`` bytes is refused unread."""
    wire_in, wire_out = _claim_standard_streams()
    loop = asyncio.get_running_loop()
    inbound: asyncio.Queue[Inbound | None] = asyncio.Queue()
    outbound: queue.SimpleQueue[SessionMessage | None] = queue.SimpleQueue()
    traffic = Traffic(inbound)
    read_send, read_receive = anyio.create_memory_object_stream[Inbound](16)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](16)

    reader = threading.Thread(
        target=_read_lines, args=(wire_in, max_line, loop, inbound, outbound), name="mcp-stdin", daemon=True
    )
    reader.start()
    writer = threading.Thread(target=_write_messages, args=(wire_out, outbound), name="mcp-stdout", daemon=True)
    writer.start()

    async def pump_in() -> None:
        async with read_send:
            while (item := await inbound.get()) is not _EOF:
                traffic.saw(item, inbound=True)
                await read_send.send(item)

    async def pump_out() -> None:
        async with write_receive:
            async for message in write_receive:
                outbound.put(message)
                traffic.saw(message, inbound=False)

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pump_in)
            tasks.start_soon(pump_out)
            try:
                yield read_receive, write_send, traffic
            finally:
                tasks.cancel_scope.cancel()
    finally:
        # Let what was already handed to the writer reach the client, but never hang on a
        # client that stopped reading.
        outbound.put(_EOF)
        await asyncio.to_thread(writer.join, 5)


def _read_lines(
    fd: int,
    max_line: int,
    loop: asyncio.AbstractEventLoop,
    inbound: asyncio.Queue[Inbound | None],
    outbound: queue.SimpleQueue[SessionMessage | None],
) -> None:
    """Reader thread: parse each line into a message (or the error it raised) for the loop.

    A line over ``max_line`` bytes is skipped without being held in memory, and answered with
    an error for the request id found at its start, so the client's call ends at once.
    """
    with open(fd, "rb", closefd=False) as stream:
        while line := stream.readline(max_line + 1):
            if len(line) > max_line and not line.endswith(b"\n"):
                outbound.put(_too_large(line, max_line))
                _skip_rest_of_line(stream)
                continue
            if not line.strip():
                continue
            item: Inbound
            try:
                item = SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
            except Exception as exc:  # the dispatcher answers a malformed message with an error
                item = exc
            loop.call_soon_threadsafe(inbound.put_nowait, item)
    with contextlib.suppress(RuntimeError):  # the loop may be gone already
        loop.call_soon_threadsafe(inbound.put_nowait, _EOF)


_REQUEST_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")')


def _too_large(head: bytes, max_line: int) -> SessionMessage:
    found = _REQUEST_ID.search(head[:4096])
    request_id = json.loads(found.group(1)) if found else None
    logger.warning("refused a message over %d bytes (MCP_MAX_REQUEST_BYTES)", max_line)
    return SessionMessage(
        types.JSONRPCError(
            jsonrpc="2.0",
            id=request_id,
            error=types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"request too large: over {max_line} bytes (MCP_MAX_REQUEST_BYTES); "
                "for large objects use presigned_url",
            ),
        )
    )


def _skip_rest_of_line(stream: Any) -> None:
    while chunk := stream.readline(1 << 16):
        if chunk.endswith(b"\n"):
            return


def _write_messages(fd: int, outbound: queue.SimpleQueue[SessionMessage | None]) -> None:
    """Writer thread: serialise each message as one line, in order."""
    splicer = Splicer()  # results may carry JSON that is already encoded
    while (message := outbound.get()) is not _EOF:
        dumped = message.message.model_dump_json(by_alias=True, exclude_unset=True, fallback=splicer.fallback)
        data = splicer.splice(dumped.encode()) + b"\n"
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            logger.debug("stdout closed; dropping the rest of the output")
            return


def _claim_standard_streams() -> tuple[int, int]:
    """Private duplicates of fds 0 and 1 for the protocol; 0 then reads /dev/null and 1 goes to stderr."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
    finally:
        os.close(devnull)
    os.dup2(2, 1)
    return wire_in, wire_out
