"""``mcp-tenants-health``: does the MCP server at a URL answer? (Docker ``HEALTHCHECK``.)

It sends one real MCP ``initialize`` request over streamable HTTP, with
``Authorization: Bearer $MCP_AUTH_TOKEN`` when a token is set, and waits for the JSON-RPC result
(plain JSON or one server-sent event). Exit 0 when the server answers, 1 otherwise, with one line
on stderr either way. Only the standard library and python-dotenv are used, so a check every few
seconds costs little; the token never appears in the output.

Without ``--url`` it asks the server where it listens: the server process in the same container
(found in ``/proc``) has its options on its command line (``--transport stdio``, ``--port 9000``,
``--host``), which win over ``MCP_TRANSPORT`` and ``MCP_PORT`` as they do for the server. A
server on stdio has no endpoint to probe: the check then says so and passes while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_tenants import __version__

#: A protocol revision every server speaking the initialize handshake accepts.
PROTOCOL_VERSION = "2025-06-18"
REQUEST_ID = 1


class Unhealthy(Exception):
    """The server did not give a valid answer to ``initialize``."""


SERVER_COMMANDS = frozenset({"mcp-postgres-server", "mcp-minio-server"})
SERVER_MODULES = frozenset(
    {"mcp_tenants.postgres", "mcp_tenants.minio", "mcp_tenants.postgres.server", "mcp_tenants.minio.server"}
)
SHELLS = frozenset({"sh", "bash", "dash", "ash"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def default_url(environ: Mapping[str, str]) -> str:
    """``http://127.0.0.1:$MCP_PORT/mcp`` (port 8000 when unset)."""
    return f"http://127.0.0.1:{environ.get('MCP_PORT') or '8000'}/mcp"


@dataclass(frozen=True)
class Target:
    """Where the server listens: its transport and, for HTTP, the URL to probe."""

    transport: str
    url: str
    pid: int | None = None


def server_arguments(argv: Sequence[str]) -> list[str] | None:
    """The options after the server command in ``argv``; None when ``argv`` runs no MCP server.

    Matches ``mcp-postgres-server ...``, ``python /venv/bin/mcp-minio-server ...`` (a console
    script's command line) and ``python -m mcp_tenants.postgres ...``.
    """
    if len(argv) >= 3 and os.path.basename(argv[0]) in SHELLS and argv[1] == "-c":  # CMD in shell form
        with contextlib.suppress(ValueError):
            return server_arguments(shlex.split(argv[2])[:64])
        return None
    for index, arg in enumerate(argv[:3]):
        if os.path.basename(arg) in SERVER_COMMANDS:
            return list(argv[index + 1 :])
        if arg == "-m" and index + 1 < len(argv) and argv[index + 1] in SERVER_MODULES:
            return list(argv[index + 2 :])
    return None


#: What Docker's ``--init`` and similar run as PID 1 in front of the command.
INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit"})


def _argv(proc: Path, pid: str) -> list[str]:
    try:
        raw = (proc / pid / "cmdline").read_bytes()
    except OSError:
        return []  # gone meanwhile, or not ours to read
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent(proc: Path, pid: str) -> str | None:
    try:
        stat = (proc / pid / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[1]  # the field after "(comm) state"


def find_server(proc: Path) -> tuple[int, list[str]] | None:
    """(pid, options) of the container's MCP server: PID 1, or a child of an init at PID 1.

    Only the container's own command counts: on a host, PID 1 is the host's init, so nothing is
    found and the environment decides, as it always did.
    """
    first = _argv(proc, "1")
    options = server_arguments(first)
    if options is not None:
        return 1, options
    if not first or os.path.basename(first[0]) not in INITS:
        return None
    try:
        pids = sorted((entry.name for entry in proc.iterdir() if entry.name.isdigit()), key=int)
    except OSError:
        return None
    for pid in pids:
        if pid != "1" and _parent(proc, pid) == "1":
            options = server_arguments(_argv(proc, pid))
            if options is not None:
                return int(pid), options
    return None


def locate(environ: Mapping[str, str], proc: Path) -> Target:
    """The server's transport and URL: its command-line options win over the environment."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for option in ("--transport", "--host", "--port"):
        parser.add_argument(option)
    server = find_server(proc)
    options = argparse.Namespace(transport=None, host=None, port=None)
    if server is not None:
        # An option without its value: that server refused to start anyway.
        with contextlib.suppress(argparse.ArgumentError, SystemExit):
            options, _ = parser.parse_known_args(server[1])
    # A server found without either serves stdio (its default); without a server to ask, the
    # caller wants the HTTP endpoint probed.
    transport = options.transport or environ.get("MCP_TRANSPORT") or ("stdio" if server else "streamable-http")
    port = options.port or environ.get("MCP_PORT") or "8000"
    host = options.host or environ.get("MCP_HOST") or "127.0.0.1"
    host = "127.0.0.1" if host in _WILDCARDS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Target(transport, f"http://{host}:{port}/mcp", server[0] if server else None)


def initialize_request() -> bytes:
    """The JSON-RPC ``initialize`` request body."""
    message = {
        "jsonrpc": "2.0",
        "id": REQUEST_ID,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcp-tenants-health", "version": __version__},
        },
    }
    return json.dumps(message).encode()


def _sse_messages(lines: Iterable[bytes]) -> Iterable[str]:
    """The ``data`` payload of each server-sent event, in order."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def _result_of(payload: str) -> dict[str, Any] | None:
    """The ``result`` of our request in one JSON-RPC message; None for any other message."""
    try:
        message = json.loads(payload)
    except ValueError:
        raise Unhealthy("the answer is not JSON") from None
    if not isinstance(message, dict) or message.get("id") != REQUEST_ID:
        return None
    if "error" in message:
        error = message["error"] if isinstance(message["error"], dict) else {}
        raise Unhealthy(f"initialize failed: {error.get('message', 'JSON-RPC error')}")
    result = message.get("result")
    if not isinstance(result, dict) or "serverInfo" not in result:
        raise Unhealthy("the answer to initialize has no serverInfo")
    return result


def check(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """Send ``initialize`` to ``url``; return the server's result or raise ``Unhealthy``."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if not url.lower().startswith(("http://", "https://")):
        raise Unhealthy("the URL must start with http:// or https://")
    try:
        request = urllib.request.Request(url, data=initialize_request(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # only http(s): checked above
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type == "text/event-stream":
                # Stop at our answer: never wait for the rest of a stream.
                for payload in _sse_messages(response):
                    result = _result_of(payload)
                    if result is not None:
                        return result
                raise Unhealthy("the event stream ended without an answer to initialize")
            result = _result_of(response.read(1_000_000).decode("utf-8", errors="replace"))
            if result is None:
                raise Unhealthy("the answer is not a reply to initialize")
            return result
    except urllib.error.HTTPError as exc:
        hint = ": missing or wrong MCP_AUTH_TOKEN" if exc.code == 401 else ""
        raise Unhealthy(f"HTTP {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        raise Unhealthy(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise Unhealthy(f"no answer within {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # connection reset, malformed URL, bad status line...
        raise Unhealthy(f"{type(exc).__name__}: {exc}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="mcp-tenants-health",
        description="Exit 0 when the MCP server answers an initialize request over streamable HTTP, "
        "1 otherwise. The bearer token is read from $MCP_AUTH_TOKEN.",
    )
    parser.add_argument(
        "--url",
        help="MCP endpoint (default: where the MCP server in this container listens, from its options "
        "or MCP_TRANSPORT / MCP_PORT; http://127.0.0.1:8000/mcp when neither says)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default: 5)")
    parser.add_argument("--env-file", help="read settings from this .env file (default: ./.env when present)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, proc: Path = Path("/proc")) -> int:
    """Run the check; print one line to stderr; return the exit status."""
    args = parse_args(argv)
    from dotenv import load_dotenv  # same .env rule as the servers: real variables win

    if args.env_file is not None:
        if not Path(args.env_file).is_file():
            print(f"mcp-tenants-health: --env-file {args.env_file!r}: no such file", file=sys.stderr)
            return 1
        load_dotenv(args.env_file, override=False)
    elif Path(".env").is_file():
        load_dotenv(".env", override=False)
    url = args.url
    if url is None:
        target = locate(os.environ, proc)
        if target.transport == "stdio":
            where = f"process {target.pid}" if target.pid is not None else "the server"
            print(f"healthy: {where} serves stdio: there is no HTTP endpoint to probe", file=sys.stderr)
            return 0
        url = target.url
    try:
        result = check(url, os.environ.get("MCP_AUTH_TOKEN") or None, args.timeout)
    except Unhealthy as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    info = result.get("serverInfo") or {}
    print(f"healthy: {url}: {info.get('name', '?')} {info.get('version', '')}".rstrip(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
