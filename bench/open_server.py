"""The PostgreSQL server without its access layer, for ``bench/run access`` only.

The same process as ``mcp-postgres-server`` (``launch.ServerProcess``: tools, pools, transport,
store), with the open policy instead of the access policy and no call observers (no audit trail,
no metrics). Comparing the two measures what authorization and audit cost per call.
"""

from __future__ import annotations

import asyncio

from mcp_tenants.calls import OpenPolicy
from mcp_tenants.launch import ServerProcess, configure_logging
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.postgres.server import INSTRUCTIONS, add_tools, make_backend
from mcp_tenants.server import TenantServer
from mcp_tenants.settings import Settings
from mcp_tenants.transports import run_stdio


def main() -> None:
    settings = Settings.from_env("postgres")
    configure_logging(settings.log_level)
    app = TenantServer("bench-open", settings, instructions=INSTRUCTIONS, env_prefix=PostgresTenant.ENV_PREFIX)
    process = ServerProcess(app, make_backend, add_tools)
    app.policy = OpenPolicy()
    app.observers.clear()
    try:
        process.start()
        asyncio.run(run_stdio(app))
    finally:
        process.close()


if __name__ == "__main__":
    main()
