"""Hook for the access commands (``key create|list|revoke``, ``audit``), written in ``mcp_tenants.access.cli``.

To plug them in, this module only has to provide the two names below, e.g.
``from mcp_tenants.access.cli import COMMANDS, add_parsers``:

- ``add_parsers(sub)`` adds the subcommands to the ``mcp-tenants`` subparsers. Every parser made by
  ``sub.add_parser`` already accepts the global options (``--server``, ``--env-file``, ``--json``)
  after the subcommand.
- ``COMMANDS`` maps each command name to ``handler(ctx: Context) -> int`` (an exit code);
  ``ctx`` is ``mcp_tenants.cli.context.Context``: ``args``, ``settings``, ``redis`` (a client),
  ``emit``, and the exit codes. A ``TenantsError`` raised by a handler is printed for the user.

Keep the module's top-level imports light: ``mcp-tenants --help`` imports it.
"""

from __future__ import annotations

import argparse
from typing import Any

from mcp_tenants.cli.context import Handler

COMMANDS: dict[str, Handler] = {}


def add_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the access commands' subparsers (none yet)."""
