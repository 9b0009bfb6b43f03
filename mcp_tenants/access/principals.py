"""Principals, grants and roles: who makes a call, which tenants exist for it, what it may do.

A ``Principal`` is immutable; the server core sets the caller of each tool call with
``use_principal`` and asks ``authorize`` once, before the tool runs. Tools never check principals
themselves; inside a tool ``current_principal()`` returns the caller.

A grant is a tuple of tenant-id patterns: globs over tenant-id characters only (``sales_*``, ``*``,
``team-?``). Because the pattern alphabet and the tenant-id alphabet are the same and contain no
separator, a pattern can never reach past a tenant id into anything else.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mcp_tenants.config import shown, validate_tenant_id
from mcp_tenants.errors import AccessDenied, InvalidInput, UnknownTenant

ROLES = ("reader", "writer", "admin")
ACTIONS = ("read", "write", "admin")
KINDS = ("token", "key", "oauth", "operator", "anonymous")

#: What each role may do. Admin: also register_tenant / remove_tenant (action "admin").
_ALLOWED: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "writer": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
_DOING = {"read": "use read tools", "write": "use write tools", "admin": "register or remove tenants"}
_PATTERN_RE = re.compile(r"[a-z0-9_*?-]{1,64}")
_TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def parse_patterns(text: str | Iterable[str], *, source: str = "--tenants") -> tuple[str, ...]:
    """Tenant-id patterns from ``"sales_*, ops"`` or a list; invalid ones raise ``InvalidInput``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    patterns: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"{source}: pattern {shown(item)} is not a string")
        pattern = item.strip()
        if not pattern:
            continue
        if not _PATTERN_RE.fullmatch(pattern):
            raise InvalidInput(
                f"{source}: pattern {shown(pattern)} is invalid: use tenant-id characters (a-z 0-9 _ -) "
                "with * and ? wildcards, e.g. sales_* or *"
            )
        if pattern not in patterns:
            patterns.append(pattern)
    return tuple(patterns)


def _glob(pattern: str) -> str:
    """A tenant-id glob as a regex: ``*`` and ``?`` stand for tenant-id characters only."""
    return "".join("[a-z0-9_-]*" if c == "*" else "[a-z0-9_-]" if c == "?" else re.escape(c) for c in pattern)


def validate_role(value: object, *, source: str = "--role") -> str:
    """Return ``value`` if it is a role name, else raise ``InvalidInput``."""
    if value not in ROLES:
        raise InvalidInput(f"{source} {shown(value)} is invalid: use reader, writer or admin")
    return str(value)


@dataclass(frozen=True)
class Principal:
    """Who makes a call: a name, how it authenticated, its role and its grant."""

    name: str
    kind: str
    role: str
    patterns: tuple[str, ...]
    _grant: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown principal kind {self.kind!r}")
        validate_role(self.role, source="role")
        # Normalise and validate once, so ``sees`` can trust every pattern; one regex for the grant.
        patterns = parse_patterns(self.patterns, source="grant")
        object.__setattr__(self, "patterns", patterns)
        grant = re.compile("|".join(_glob(p) for p in patterns)) if patterns else None
        object.__setattr__(self, "_grant", grant)

    def sees(self, tenant_id: str) -> bool:
        """True when ``tenant_id`` is inside this principal's grant."""
        if self._grant is None or not isinstance(tenant_id, str) or not _TENANT_ID_RE.fullmatch(tenant_id):
            return False
        return self._grant.fullmatch(tenant_id) is not None

    def may(self, action: str) -> bool:
        """True when this principal's role allows ``action`` ("read", "write" or "admin")."""
        return action in _ALLOWED[self.role]

    @property
    def label(self) -> str:
        """``kind:name``, unambiguous across kinds (for logs and the audit trail)."""
        return f"{self.kind}:{self.name}"


#: The local user of a stdio server: sees and may do everything.
OPERATOR = Principal("operator", "operator", "admin", ("*",))
#: An HTTP caller when no authentication is configured at all (loopback dev, --allow-unauthenticated).
ANONYMOUS = Principal("anonymous", "anonymous", "admin", ("*",))
#: Outside a call: no tenant exists and nothing is allowed beyond reading nothing.
NOBODY = Principal("nobody", "anonymous", "reader", ())

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("mcp_tenants_principal", default=NOBODY)


def current_principal() -> Principal:
    """The principal of the running call (``NOBODY`` outside one: fail closed)."""
    return _current.get()


class use_principal(contextlib.AbstractContextManager[None]):  # lower case: used like a function
    """Make ``principal`` the caller for the block (and for contexts copied inside it)."""

    __slots__ = ("_principal", "_token")

    def __init__(self, principal: Principal) -> None:
        self._principal = principal

    def __enter__(self) -> None:
        self._token = _current.set(self._principal)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


def authorize(principal: Principal, action: str, tenant_id: str | None, *, tool: str | None = None) -> None:
    """Raise unless ``principal`` may do ``action`` on ``tenant_id`` (None: a tool without a tenant).

    A tenant outside the grant raises ``UnknownTenant``, which the core words exactly as for a
    tenant that does not exist; it is checked first, so the answer never depends on whether a
    tenant the caller cannot see exists.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if tenant_id is not None:
        validate_tenant_id(tenant_id)  # a malformed id is reported as such, whoever asks
        if not principal.sees(tenant_id):
            raise UnknownTenant(tenant_id)
    if not principal.may(action):
        what = _DOING[action] + (f" ({tool})" if tool else "")
        needed = "writer or admin" if action == "write" else "admin" if action == "admin" else "reader"
        raise AccessDenied(
            f"{principal.kind} {principal.name!r} has role {principal.role}, which may not {what}; "
            f"ask the operator for a key or token with role {needed}"
        )
