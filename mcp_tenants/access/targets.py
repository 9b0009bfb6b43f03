"""Where a tool-registered tenant may point: the target policy, checked on every connect.

An agent that can register tenants could aim the server at internal services (the cloud metadata
endpoint, Redis, an admin port, a local cluster that trusts local connections). So every address a
tool-registered target resolves to is checked, and the connection is then made to exactly the
address that was checked ("pinning"): the backends' connect hooks call ``TargetPolicy.resolve``
on every connect and reconnect, so DNS rebinding between the check and the connect gains nothing.

Decisions use the real parsers: ``getaddrinfo`` resolves (it also reads every numeric form the C
library accepts: ``2852039166``, ``0251.0376.0251.0376``, ``0xa9fea9fe``, ``169.254.43518``), and
``ipaddress`` classifies. Every IPv6 encoding of an IPv4 address (IPv4-mapped, IPv4-compatible,
6to4, NAT64, Teredo) is reduced to that IPv4 address before it is classified.

- Always refused: link-local (169.254.0.0/16, fe80::/10) and known cloud metadata addresses,
  the unspecified address and 0.0.0.0/8, multicast, broadcast and reserved addresses, host lists
  (several hosts in one field), local-use NAT64 (its embedded address is not recoverable).
- Over HTTP, also refused unless ``MCP_ALLOWED_HOSTS`` allows them: every address that is not
  globally routable (loopback, private ranges, shared and documentation ranges, fc00::/7) and
  Unix-socket paths.
- ``MCP_ALLOWED_HOSTS`` (names, ``*`` globs within one DNS label, addresses, CIDRs): when set, a
  target must match it, by name or with every address it resolves to inside an allowed network.

Environment and CLI tenants are trusted and never checked. Immutable after construction: thread-safe.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mcp_tenants.config import shown
from mcp_tenants.errors import AccessDenied, InvalidInput, TenantUnreachable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``socket.getaddrinfo``'s signature (tests pass a fake).
Resolver = Callable[..., list[tuple[Any, ...]]]

_net = ipaddress.ip_network
#: Cloud metadata and platform endpoints outside link-local space.
METADATA = (
    _net("fd00:ec2::254/128"),  # AWS (IPv6)
    _net("100.100.100.200/32"),  # Alibaba Cloud
    _net("168.63.129.16/32"),  # Azure platform (WireServer)
)
_THIS_NETWORK = _net("0.0.0.0/8")
_NAT64 = _net("64:ff9b::/96")
_NAT64_LOCAL = _net("64:ff9b:1::/48")
_IPV4_COMPATIBLE = _net("::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PATTERN_LABEL_RE = re.compile(r"[a-z0-9_*-]{1,63}")


def control_characters(text: str) -> bool:
    """True when ``text`` holds a C0 or C1 control character or DEL (line breaks among them)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, -compatible, 6to4, NAT64,
    Teredo client), else the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.scope_id:
        address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address, in any form the C library accepts for IPv4, else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefx." for c in text.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def always_refused(address: IPAddress) -> str | None:
    """Why no tenant may ever connect to ``address`` (already reduced to IPv4 if encoded), or None."""
    if address in _NAT64_LOCAL:
        return "a local-use NAT64 address"
    if address.is_link_local or any(address in net for net in METADATA):
        return "a link-local or cloud metadata address"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if (address.is_reserved and not address.is_loopback) or address == ipaddress.IPv4Address("255.255.255.255"):
        return "a reserved address"
    return None


def not_public(address: IPAddress) -> str | None:
    """Why ``address`` is refused over HTTP by default, or None for a globally routable one."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_private:
        return "a private-network address"
    if not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class CheckedAddress:
    """An address a connection may use: what to connect to, and what it was checked as."""

    family: int
    sockaddr: tuple[Any, ...]
    checked: IPAddress

    @property
    def host(self) -> str:
        """The numeric address to connect to (libpq ``hostaddr``, a socket's first sockaddr item)."""
        return str(self.sockaddr[0])


def _compile_name_pattern(pattern: str) -> re.Pattern[str]:
    labels = pattern.split(".")
    if not all(_PATTERN_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(pattern)
    parts = []
    for label in labels:
        if label == "*":
            parts.append(r"[a-z0-9_-]+")  # a whole label, never a dot or a comma
        else:
            parts.append(r"[a-z0-9_-]*".join(re.escape(piece) for piece in label.split("*")))
    return re.compile(r"\.".join(parts))


class TargetPolicy:
    """Decides whether a tool-registered tenant may connect to a host, and to which addresses."""

    def __init__(
        self,
        allowed: Iterable[str] = (),
        *,
        remote: bool = False,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.remote = remote
        self._names: list[re.Pattern[str]] = []
        self._networks: list[IPNetwork] = []
        for raw in allowed:
            entry = raw.strip().lower()
            if not entry:
                continue
            address = parse_address(entry)
            try:
                if address is not None:
                    self._networks.append(_net(embedded_ipv4(address)))
                elif "/" in entry:
                    self._networks.append(_net(entry, strict=False))
                else:
                    self._names.append(_compile_name_pattern(entry.rstrip(".")))
            except ValueError:
                raise InvalidInput(
                    f"MCP_ALLOWED_HOSTS entry {shown(raw)} is not a host name (with * only within one "
                    "label, e.g. *.db.internal), an address or a CIDR"
                ) from None
        self._resolve = resolver

    @classmethod
    def from_settings(cls, settings: Any) -> TargetPolicy:
        """The policy of a server process: its transport and ``MCP_ALLOWED_HOSTS``."""
        return cls(settings.allowed_hosts, remote=settings.transport != "stdio")

    @property
    def restricted(self) -> bool:
        """True when ``MCP_ALLOWED_HOSTS`` is set."""
        return bool(self._names or self._networks)

    def is_socket_path(self, host: str) -> bool:
        """True when libpq would read ``host`` as a Unix-socket directory (or abstract socket)."""
        return host.startswith(("/", "@"))

    def check(self, host: str) -> None:
        """Registration-time check of a target host (the connect hooks check again, every time)."""
        self.resolve(host, None)

    def resolve(self, host: str, port: int | None) -> list[CheckedAddress]:
        """Every address ``host`` resolves to, each checked; raise ``AccessDenied`` if any is refused.

        Returns [] for a Unix-socket path that the policy allows (there is nothing to pin).
        """
        name = self._validate(host)
        if name is None:
            return []
        listed = self._name_listed(name)
        try:
            infos = self._resolve(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise TenantUnreachable(f"host {host!r} does not resolve; check the name") from None
        addresses: list[CheckedAddress] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise AccessDenied(f"host {host!r} resolves to a non-IP address; tenants may not point there")
            raw = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            checked = embedded_ipv4(raw)
            self._check_address(host, raw, checked, listed=listed)
            addresses.append(CheckedAddress(family, tuple(sockaddr), checked))
        if not addresses:
            raise TenantUnreachable(f"host {host!r} does not resolve; check the name")
        return addresses

    def _validate(self, host: str) -> str | None:
        """The host to resolve, or None for an allowed Unix-socket path; refuse what is malformed."""
        if not isinstance(host, str) or not host.strip():
            raise InvalidInput("host is empty")
        if "," in host:
            raise AccessDenied(
                f"host {shown(host)} is a list of hosts; a tenant registered by a tool has exactly one host"
            )
        if self.is_socket_path(host):
            if self.remote or self.restricted:
                raise AccessDenied(
                    f"host {shown(host)} is a Unix-socket path; tenants registered by a tool "
                    f"{'over HTTP ' if self.remote else ''}connect over TCP only"
                )
            return None
        text = host.strip().lower()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if parse_address(text) is not None:
            return text
        name = text[:-1] if text.endswith(".") else text
        if len(name) > 253 or not _NAME_RE.fullmatch(name):
            raise InvalidInput(f"host {shown(host)} is not a valid host name or IP address")
        return name

    def _name_listed(self, name: str) -> bool:
        if parse_address(name) is not None:
            return False  # a numeric host is an address, whatever a name pattern would say
        return any(pattern.fullmatch(name) for pattern in self._names)

    def _check_address(self, host: str, raw: IPAddress, checked: IPAddress, *, listed: bool) -> None:
        shown_address = str(raw) if raw == checked else f"{raw}, that is {checked}"
        reason = always_refused(checked)
        if reason is not None:
            raise AccessDenied(f"host {host!r} resolves to {shown_address}, {reason}; tenants may never point there")
        if listed:
            return  # the operator named this host in MCP_ALLOWED_HOSTS
        if self.restricted:
            if not any(checked in network for network in self._networks):
                raise AccessDenied(
                    f"host {host!r} ({shown_address}) is not in MCP_ALLOWED_HOSTS; ask the operator to allow it"
                )
            return
        if self.remote:
            reason = not_public(checked)
            if reason is not None:
                raise AccessDenied(
                    f"host {host!r} resolves to {shown_address}, {reason}; tenants registered over HTTP may "
                    "only point at public addresses unless the operator lists the target in MCP_ALLOWED_HOSTS"
                )
