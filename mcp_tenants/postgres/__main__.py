"""``python -m mcp_tenants.postgres`` runs the PostgreSQL MCP server."""

import sys

from mcp_tenants.postgres.server import main

sys.exit(main())
