"""The registration guard: which hosts a ``register_tenant`` tool call may point a tenant at.

An agent that can register tenants could otherwise aim the server at internal services: the cloud
metadata endpoint, Redis itself, an admin port. ``MCP_ALLOWED_HOSTS`` is a comma-separated
allow-list of host names (``*`` wildcards allowed: ``*.db.internal``), IP addresses and CIDR
blocks. A host name is also resolved, and every address it resolves to must be allowed, so a
name cannot smuggle in a forbidden address. Without an allow-list every host is allowed except
link-local addresses (169.254.0.0/16, fe80::/10), where cloud metadata services live.
Environment tenants and the operator CLI are trusted and not checked.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Iterable

from mcp_tenants.config import shown
from mcp_tenants.errors import AccessDenied, InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


class HostGuard:
    """Decides whether a tenant may target a host. Immutable after construction: thread-safe."""

    def __init__(self, patterns: Iterable[str] = (), *, resolver: Resolver = resolve) -> None:
        self._names: list[str] = []
        self._networks: list[IPNetwork] = []
        for raw in patterns:
            pattern = raw.strip().lower()
            if not pattern:
                continue
            try:
                self._networks.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                if not all(c.isalnum() or c in ".-*_" for c in pattern):
                    raise InvalidInput(
                        f"MCP_ALLOWED_HOSTS entry {shown(raw)} is not a host name, address or CIDR"
                    ) from None
                self._names.append(pattern)
        self._resolve = resolver

    @property
    def restricted(self) -> bool:
        """True when an allow-list is configured."""
        return bool(self._names or self._networks)

    def check(self, host: str) -> None:
        """Raise ``AccessDenied`` unless a tool call may register a tenant on ``host``."""
        host = host.strip().lower().strip("[]")
        literal = _as_address(host)
        addresses = [literal] if literal is not None else [a for a in map(_as_address, self._resolve(host)) if a]
        if not self.restricted:
            bad = [str(a) for a in addresses if a.is_link_local]
            if bad:
                raise AccessDenied(
                    f"host {host!r} is a link-local address ({', '.join(bad)}), where cloud metadata services "
                    "live; tenants may not point there (list it in MCP_ALLOWED_HOSTS to allow it)"
                )
            return
        if literal is not None:
            allowed = self._address_allowed(literal)
        elif any(fnmatch.fnmatchcase(host, name) for name in self._names):
            allowed = True  # the operator named it: trust the name
        else:
            # An unnamed host passes only when every address it resolves to is allowed.
            allowed = bool(addresses) and all(self._address_allowed(a) for a in addresses)
        if allowed:
            return
        raise AccessDenied(
            f"host {host!r} is not in MCP_ALLOWED_HOSTS; ask the operator to allow it, or use an allowed host"
        )

    def _address_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self._networks)


def _as_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
