"""``python -m mcp_tenants.minio`` runs the MinIO MCP server."""

import sys

from mcp_tenants.minio.server import main

sys.exit(main())
