"""``mcp-tenants``: the operator CLI over the same settings and Redis store as the servers.

Exit codes: 0 success; 1 the operation failed or ``doctor`` found a problem; 2 bad usage or
configuration. ``--json`` prints one JSON document on stdout for scripts; messages go to stderr.
The global options (``--server``, ``--env-file``, ``--json``) may come before or after the
subcommand. Commands live in ``tenants.py`` and ``access.py``; ``context.py`` is what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from mcp_tenants import __version__
from mcp_tenants.cli import access, tenants
from mcp_tenants.cli.context import EXIT_FAILED, EXIT_USAGE, Context
from mcp_tenants.config import redact
from mcp_tenants.errors import InvalidInput, TenantsError
from mcp_tenants.settings import load_env_file

SERVERS = ("postgres", "minio")


def add_global_options(parser: argparse.ArgumentParser, *, with_defaults: bool) -> None:
    """``--server``, ``--env-file``, ``--json``; on subcommands without defaults, so a value given
    before the subcommand is not reset by the subcommand's parser."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--server", choices=SERVERS, default=default("postgres"), help="which server's tenants (default: postgres)"
    )
    parser.add_argument(
        "--env-file", default=default(None), help="read settings from this .env file (default: ./.env when present)"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON for scripts")


class CommandParser(argparse.ArgumentParser):
    """The parser of a subcommand: it accepts the global options too (``mcp-tenants list --json``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self, with_defaults=False)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one subcommand."""
    parser = argparse.ArgumentParser(
        prog="mcp-tenants",
        description="Manage the tenants of mcp-postgres-server and mcp-minio-server in Redis.",
    )
    add_global_options(parser, with_defaults=True)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    sub.add_parser("list", help="list tenants from Redis and the environment")
    p = sub.add_parser("show", help="show one tenant, secrets redacted")
    p.add_argument("tenant_id")
    p = sub.add_parser(
        "add",
        help="add or replace a tenant in Redis",
        description="Fields as FIELD=VALUE (postgres: host port database user sslmode access; minio: "
        "endpoint access_key secure region access). The secret (password / secret_key) is read from "
        "a prompt, or from stdin with --secret-stdin; it is never taken from the command line.",
    )
    p.add_argument("tenant_id")
    p.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    p.add_argument("--secret-stdin", action="store_true", help="read the secret from the first line of stdin")
    p.add_argument(
        "--no-verify", action="store_true", help="store without checking that the target accepts the credentials"
    )
    p = sub.add_parser("remove", help="remove a tenant from Redis")
    p.add_argument("tenant_id")
    p = sub.add_parser("export", help="print every stored tenant as JSON (secrets left out)")
    p.add_argument("--include-secrets", action="store_true", help="include passwords / secret keys in plain text")
    p = sub.add_parser("import", help="store tenants from an export document (or a JSON list)")
    p.add_argument("file", help="path, or - for stdin")
    p.add_argument("--replace", action="store_true", help="overwrite tenants that already exist")
    p.add_argument("--verify", action="store_true", help="check each target before storing it")
    sub.add_parser("rotate-key", help="re-encrypt every entry with the first MCP_TENANT_ENCRYPTION_KEY (safe to rerun)")
    p = sub.add_parser("doctor", help="check Redis, the key, every entry and every tenant's target")
    p.add_argument("--skip-targets", action="store_true", help="do not connect to each tenant's database / store")
    sub.add_parser("generate-key", help="print a new encryption key for MCP_TENANT_ENCRYPTION_KEY")
    access.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``mcp-tenants``."""
    args = build_parser().parse_args(argv)
    handler = {**tenants.COMMANDS, **access.COMMANDS}[args.command]
    import logging  # not needed by --help

    logging.basicConfig(level=logging.WARNING, format="mcp-tenants: %(message)s")
    ctx = Context(args)
    try:
        load_env_file(args.env_file)
        return handler(ctx)
    except InvalidInput as exc:
        print(f"mcp-tenants: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (TenantsError, OSError) as exc:
        print(f"mcp-tenants: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("mcp-tenants: interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()
