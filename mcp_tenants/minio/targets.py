"""Connect hook of tool-registered S3 tenants: resolve, check, then connect to that address.

urllib3 resolves the endpoint's host on every new connection. The connection classes below
resolve and check it with the target policy instead, and open the socket to exactly the checked
address (DNS rebinding gains nothing); TLS still verifies the certificate against the host name.
"""

from __future__ import annotations

import socket
from functools import cache

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from mcp_tenants.access.targets import TargetPolicy


def _connect_checked(conn: HTTPConnection, policy: TargetPolicy) -> socket.socket:
    """``HTTPConnection._new_conn`` with the target check: try each checked address in turn."""
    addresses = policy.resolve(conn._dns_host, conn.port)  # AccessDenied propagates as is
    error: OSError | None = None
    for address in addresses:
        try:
            return create_connection(
                (address.host, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:  # try the next checked address, as urllib3 itself would
            error = exc
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})")
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


@cache
def pinned_pool_classes(policy: TargetPolicy) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes (by scheme) whose connections check every connect with ``policy``."""

    class PinnedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect_checked(self, policy)

    class PinnedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect_checked(self, policy)

    class PinnedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    return {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}


def pin(manager: urllib3.PoolManager, policy: TargetPolicy) -> urllib3.PoolManager:
    """Make every connection ``manager`` opens check its target with ``policy``; returns it."""
    manager.pool_classes_by_scheme = pinned_pool_classes(policy)
    return manager
