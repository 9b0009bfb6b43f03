"""The access commands (``key create|list|revoke``, ``audit``), written in ``mcp_tenants.access.cli``.

``add_parsers`` adds their subcommands; ``COMMANDS`` maps each command to a handler over the CLI's
``Context``. Top-level imports stay light: ``mcp-tenants --help`` imports this module.
"""

from __future__ import annotations

from mcp_tenants.access.cli import AccessContext, add_parsers
from mcp_tenants.cli.context import Context, Handler

__all__ = ["COMMANDS", "add_parsers"]


def run(ctx: Context) -> int:
    """Run the access command the parser chose (its ``access_command``) on the CLI's Redis."""
    access = AccessContext(ctx.server, ctx.redis, bool(ctx.args.json))
    return int(ctx.args.access_command(access, ctx.args))


COMMANDS: dict[str, Handler] = {"key": run, "audit": run}
