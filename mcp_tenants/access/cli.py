"""Operator commands for access: ``key create|list|revoke`` and ``audit``.

Functions over a small context (server, Redis client, output streams); ``add_parsers`` registers
them on the ``mcp-tenants`` parser (``mcp_tenants.cli.access`` wires them in). Imports stay light:
the standard library at import time, Redis only when a command runs.

Exit codes as for every ``mcp-tenants`` command: 0 success; 1 the operation failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from mcp_tenants.access.principals import ROLES
from mcp_tenants.errors import StoreUnavailable

if TYPE_CHECKING:  # Redis and the modules over it load only when a command runs
    import redis

    from mcp_tenants.access.keys import ApiKey, ApiKeyStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SCAN_CHUNK = 500


@dataclass
class AccessContext:
    """What the access commands need: which server, its Redis, where to print."""

    server: str
    redis: redis.Redis
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def keys(self) -> ApiKeyStore:
        from mcp_tenants.access.keys import ApiKeyStore

        return ApiKeyStore(self.redis, self.server)

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def _when(epoch: float | None, *, never: str = "never") -> str:
    if epoch is None:
        return never
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _key_row(key: ApiKey, last_used: float | None) -> dict[str, Any]:
    return {
        "name": key.name,
        "tenants": list(key.tenants),
        "role": key.role,
        "created": _when(key.created),
        "expires": _when(key.expires),
        "expired": key.expired(),
        "last_used": _when(last_used) if last_used is not None else None,
    }


# -- key ----------------------------------------------------------------------------------------


def cmd_key_create(ctx: AccessContext, args: argparse.Namespace) -> int:
    """Create a key; the key itself is printed once, alone on the last line of stdout."""
    from mcp_tenants.access.keys import parse_duration

    expires_in = parse_duration(args.expires) if args.expires else None
    record, key = ctx.keys.create(args.name, args.tenants, args.role, expires_in=expires_in)
    row = _key_row(record, None)
    if ctx.json:
        ctx.print(json.dumps({k: v for k, v in row.items() if k != "last_used"}))
    else:
        ctx.print(
            f"created API key {record.name!r}: role {record.role}, tenants {','.join(record.tenants)}, "
            f"expires {row['expires']}"
        )
        ctx.print("The key is shown once and stored nowhere; send it as: Authorization: Bearer <key>")
    ctx.print(key)
    return EXIT_OK


def cmd_key_list(ctx: AccessContext, args: argparse.Namespace) -> int:
    """Every key: name, tenants, role, created, expires, last used (never the key)."""
    rows = [_key_row(key, used) for key, used in ctx.keys.list()]
    if ctx.json:
        ctx.print(json.dumps({"keys": rows}, indent=2))
        return EXIT_OK
    if not rows:
        ctx.print("no API keys")
        return EXIT_OK
    header = ("NAME", "TENANTS", "ROLE", "CREATED", "EXPIRES", "LAST USED")
    table = [
        (
            r["name"],
            ",".join(r["tenants"]),
            r["role"],
            r["created"],
            r["expires"] + (" (expired)" if r["expired"] else ""),
            r["last_used"] or "never",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        ctx.print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def cmd_key_revoke(ctx: AccessContext, args: argparse.Namespace) -> int:
    """Delete a key; every server refuses it within a second."""
    record = ctx.keys.revoke(args.name)
    if ctx.json:
        ctx.print(json.dumps({"name": record.name, "revoked": True}))
    else:
        ctx.print(f"revoked API key {record.name!r}; servers refuse it within a second")
    return EXIT_OK


# -- audit --------------------------------------------------------------------------------------


def _matches(record: dict[str, Any], args: argparse.Namespace, since_iso: str | None) -> bool:
    if args.tenant and record.get("tenant") != args.tenant:
        return False
    if args.principal and args.principal not in (
        record.get("principal"),
        f"{record.get('kind')}:{record.get('principal')}",
    ):
        return False
    return not (since_iso and str(record.get("time", "")) < since_iso)


def read_audit(
    client: redis.Redis, key: str, args: argparse.Namespace, since: float | None
) -> list[tuple[str, dict[str, Any]]]:
    """The newest ``args.limit`` matching records, oldest first, with their stream ids."""
    from mcp_tenants.access.audit import from_stream, iso

    since_iso = iso(since) if since is not None else None
    low = f"{int(since * 1000)}-0" if since is not None else "-"
    high, found = "+", list[tuple[str, dict[str, Any]]]()
    while len(found) < args.limit:
        chunk: list[Any] = client.xrevrange(key, max=high, min=low, count=_SCAN_CHUNK) or []
        for entry_id, fields in chunk:
            record = from_stream(fields)
            if _matches(record, args, since_iso):
                found.append((_text(entry_id), record))
                if len(found) == args.limit:
                    break
        if len(chunk) < _SCAN_CHUNK:
            break
        high = "(" + _text(chunk[-1][0])
    found.reverse()
    return found


def _follow(
    client: redis.Redis, key: str, after: str, *, stop: Callable[[], bool] = lambda: False
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records appended after stream id ``after``, as they arrive (until ``stop()``)."""
    from mcp_tenants.access.audit import from_stream

    while not stop():
        answer: Any = client.xread({key: after}, count=_SCAN_CHUNK, block=1000)
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                after = _text(entry_id)
                yield after, from_stream(fields)


def printable(value: Any, limit: int = 160) -> str:
    """``value`` as one line of plain text: whitespace runs become one space, every other character
    a terminal would act on (escape sequences, bidirectional overrides, ...) is shown escaped.

    Callers choose much of a record (the statement, the tool name, an OAuth ``sub``): printed raw, a
    line break would forge a record of someone else, an escape sequence would rewrite the screen."""
    text = " ".join(str(value).split())
    text = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_record(record: dict[str, Any]) -> str:
    """One line per record for people."""
    outcome = printable(record.get("outcome", "?"), 32)
    if record.get("error"):
        outcome += f"({printable(record['error'], 64)})"
    amount = ""
    if record.get("rows") is not None:
        amount = f" rows={printable(record['rows'], 20)}"
    elif record.get("bytes") is not None:
        amount = f" bytes={printable(record['bytes'], 20)}"
    subject = printable(record.get("subject", ""))
    # API keys by name (their names are unique); any other kind as kind:name, so an OAuth user whose
    # sub is "token" never reads like the MCP_AUTH_TOKEN principal, nor like a key of that name.
    kind, principal = record.get("kind"), record.get("principal", "?")
    who = principal if kind in (None, "", "key") else f"{kind}:{principal}"
    return (
        f"{printable(record.get('time', '?'), 40)}  {printable(who, 80)}  "
        f"{printable(record.get('tenant') or '-', 64)}  {printable(record.get('tool', '?'), 64)}  {outcome}  "
        f"{printable(record.get('duration_ms', '?'), 20)}ms{amount}" + (f"  {subject}" if subject else "")
    )


def cmd_audit(ctx: AccessContext, args: argparse.Namespace, *, stop: Callable[[], bool] = lambda: False) -> int:
    """Print the newest matching audit records; with --follow, keep printing new ones."""
    import redis

    from mcp_tenants.access.audit import stream_key
    from mcp_tenants.access.keys import parse_duration

    since = time.time() - parse_duration(args.since, source="--since") if args.since else None
    key = stream_key(ctx.server)
    try:
        records = read_audit(ctx.redis, key, args, since)
        if args.follow:
            newest = ctx.redis.xrevrange(key, count=1)
            after = _text(newest[0][0]) if newest else "0-0"
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unavailable ({type(exc).__name__}); the audit trail cannot be read") from None
    if ctx.json and not args.follow:
        ctx.print(json.dumps({"records": [r for _id, r in records]}, indent=2, default=str))
        return EXIT_OK
    for _id, record in records:
        ctx.print(json.dumps(record, default=str) if ctx.json else format_record(record))
    if not args.follow:
        if not records and not ctx.json:
            print("no matching audit records", file=ctx.err)
        return EXIT_OK
    try:
        for _id, record in _follow(ctx.redis, key, after, stop=stop):
            if _matches(record, args, None):
                ctx.print(json.dumps(record, default=str) if ctx.json else format_record(record))
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= number <= 1_000_000:
        raise argparse.ArgumentTypeError("use 1..1000000")
    return number


# -- wiring -------------------------------------------------------------------------------------


def add_parsers(subparsers: Any) -> None:
    """Register ``key`` and ``audit`` on the ``mcp-tenants`` subparsers (sets ``access_command``).

    ``--json`` and the other global options come from the ``mcp-tenants`` parser."""
    key = subparsers.add_parser("key", help="manage API keys of HTTP clients (create, list, revoke)")
    actions = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "create",
        help="create an API key; the key is printed once, on the last line",
        description="Create an API key. Its hash is stored in Redis; the key itself is printed once, "
        "alone on the last line of stdout.",
    )
    p.add_argument("name", help="a name for the key (its principal name in the audit trail)")
    p.add_argument("--tenants", required=True, metavar="PATTERNS", help="tenant-id globs, comma-separated: sales_*,ops")
    p.add_argument("--role", required=True, choices=ROLES, help="reader, writer or admin")
    p.add_argument("--expires", metavar="DURATION", help="lifetime, e.g. 90d, 12h, 1w (default: never)")
    p.set_defaults(access_command=cmd_key_create)
    p = actions.add_parser("list", help="list API keys (never the keys themselves)")
    p.set_defaults(access_command=cmd_key_list)
    p = actions.add_parser("revoke", help="delete an API key; servers refuse it within a second")
    p.add_argument("name")
    p.set_defaults(access_command=cmd_key_revoke)

    p = subparsers.add_parser("audit", help="read the audit trail of tool calls")
    p.add_argument("--tenant", metavar="ID", help="only calls on this tenant")
    p.add_argument("--principal", metavar="NAME", help="only calls by this principal (name or kind:name)")
    p.add_argument("--since", metavar="DURATION", help="only the last DURATION, e.g. 1h, 2d")
    p.add_argument("--limit", type=_positive, default=100, metavar="N", help="at most N records (default 100)")
    p.add_argument("--follow", action="store_true", help="keep printing new records (Ctrl-C stops)")
    p.set_defaults(access_command=cmd_audit)
