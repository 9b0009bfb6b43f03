"""Connect hook of tool-registered PostgreSQL tenants: resolve, check, then connect to that address.

libpq (and psycopg before it) would resolve the host again at connect time, so a name could point
at a checked address during the check and at a forbidden one a moment later (DNS rebinding). The
connection class below resolves and checks the host itself on *every* connect (the pool's
reconnects included) and passes the checked addresses as ``hostaddr``; libpq then connects to
exactly those and uses ``host`` only for TLS verification and messages.

It also refuses control characters in the parameters libpq sends in clear in its startup packet
(``user``, ``dbname``, ...): a target that is not PostgreSQL reads that packet as it likes, and a
line-based service (memcached, SMTP, ...) would run ``\r\n``-separated lines of a user name as
its own commands (cross-protocol request forgery). The password is not sent before the server
asks for it, so it may hold any character.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import psycopg

from mcp_tenants.access.targets import TargetPolicy, control_characters
from mcp_tenants.errors import AccessDenied

#: Parameters that never reach the startup packet (or are checked by the policy itself).
_NOT_SENT = frozenset({"password", "host", "hostaddr", "port"})


@cache
def pinned_connection_class(policy: TargetPolicy) -> type[psycopg.Connection[Any]]:
    """A ``psycopg.Connection`` subclass whose ``connect`` checks the target with ``policy``."""

    class PinnedConnection(psycopg.Connection[Any]):
        """Connects only to addresses ``policy`` allowed, resolved at this very connect."""

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            if conninfo:  # every parameter must be a keyword, so none can slip past the check
                raise ValueError("pinned connections take keyword parameters only")
            return super().connect(**pin(policy, kwargs))

    return PinnedConnection


def pin(policy: TargetPolicy, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``hostaddr`` set to the checked addresses of ``host`` (one attempt each)."""
    host = params.get("host")
    if not isinstance(host, str) or not host:
        raise ValueError("a pinned connection needs an explicit host")
    params = {key: value for key, value in params.items() if key != "hostaddr"}
    for key, value in params.items():
        if key not in _NOT_SENT and isinstance(value, str) and control_characters(value):
            raise AccessDenied(
                f"{key} contains control characters (such as a line break); a tenant registered by a tool "
                "may not send them to its target"
            )
    addresses = policy.resolve(host, params.get("port"))
    if not addresses:  # a Unix-socket path the policy allows: nothing to pin
        return params
    # psycopg splits equal-length host/hostaddr lists into one attempt per address.
    return {**params, "host": ",".join([host] * len(addresses)), "hostaddr": ",".join(a.host for a in addresses)}
