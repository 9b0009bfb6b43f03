"""``python -m mcp_tenants.cli``: the same as the ``mcp-tenants`` console script."""

import sys

from mcp_tenants.cli import main

sys.exit(main())
