"""Throwaway local services for tests, benchmarks and the quickstart.

Each service is a context manager that starts a real server on 127.0.0.1 on a free port, keeps
its data in a ``tempfile.mkdtemp`` folder and removes that folder on ``stop()``. Processes are
stopped by the PID we started (never by name): a polite signal, a wait, then SIGKILL.
A missing binary raises ``ServiceUnavailable`` whose message says what to install.
Nothing here prints to stdout; progress goes to ``logging.getLogger(__name__)``.
"""

from mcp_tenants.devservices.base import LocalService, ServiceUnavailable, free_ports, stop_pid
from mcp_tenants.devservices.postgres_service import PostgresService, postgres_bindir
from mcp_tenants.devservices.redis_service import RedisService
from mcp_tenants.devservices.s3_service import S3Service, weed_binary

__all__ = [
    "LocalService",
    "PostgresService",
    "RedisService",
    "S3Service",
    "ServiceUnavailable",
    "free_ports",
    "postgres_bindir",
    "stop_pid",
    "weed_binary",
]
