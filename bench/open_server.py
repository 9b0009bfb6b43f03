"""The PostgreSQL server without its access layer, for ``bench/run access`` only.

The same process as ``mcp-postgres-server`` (``launch.ServerProcess``: tools, pools, transport,
store), with the open policy instead of the access policy and no call observers (no audit trail,
no metrics). Comparing the two measures what authorization and audit cost per call.
"""

from __future__ import annotations

from mcp_tenants.config import Settings
from mcp_tenants.launch import ServerProcess, configure_logging
from mcp_tenants.postgres.server import INSTRUCTIONS, add_tools
from mcp_tenants.postgres.tenant import PostgresBackend
from mcp_tenants.server import OpenPolicy


def main() -> None:
    settings = Settings.from_env("postgres")
    configure_logging(settings.log_level)
    backend = PostgresBackend(settings)
    with ServerProcess("bench-open", settings, backend, add_tools, instructions=INSTRUCTIONS) as process:
        process.app.policy = OpenPolicy()
        process.app.observers.clear()
        process.run()


if __name__ == "__main__":
    main()
