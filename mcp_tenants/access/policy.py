"""The server core's call policy: who is calling, what they may do, what their output may mask.

``AccessPolicy`` implements the core's ``CallPolicy`` (``mcp_tenants.server``): over stdio the
caller is the operator; over HTTP it is the principal the gate let in (``access.http``), and a
request that somehow reached a tool without one is ``NOBODY`` (fail closed). Decisions are the
ones of ``principals.authorize``; output masking is ``redaction.ScopedRedaction``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mcp_tenants.access.principals import NOBODY, OPERATOR, Principal, authorize, use_principal
from mcp_tenants.access.redaction import ScopedRedaction, tenant_secrets
from mcp_tenants.config import Redactor
from mcp_tenants.errors import TenantsError

logger = logging.getLogger(__name__)

#: The config of a tenant if this process holds it in memory, else None (never blocks on I/O).
ConfigPeek = Callable[[str], Any | None]


class AccessPolicy:
    """Principals, grants and roles for one server process. Immutable after construction."""

    def __init__(self, transport: str, redaction: ScopedRedaction, peek: ConfigPeek | None = None) -> None:
        self.stdio = transport == "stdio"
        self._redaction = redaction
        self._peek = peek or (lambda tenant_id: None)

    @classmethod
    def from_settings(cls, settings: Any, peek: ConfigPeek | None = None) -> AccessPolicy:
        """The policy of a server process."""
        return cls(settings.transport, ScopedRedaction.from_settings(settings), peek)

    def principal(self, ctx: Any) -> Principal:
        """The caller of this request: the operator over stdio, the gate's principal over HTTP."""
        if self.stdio:
            return OPERATOR
        from mcp_tenants.access.http import principal_of, request_principal

        request = getattr(ctx, "request", None)
        principal = principal_of(request) if request is not None else NOBODY
        return principal if principal is not NOBODY else request_principal()

    def authorize(self, principal: Principal, action: str, tenant_id: str | None) -> None:
        """``UnknownTenant`` outside the grant, ``AccessDenied`` when the role lacks ``action``."""
        authorize(principal, action, tenant_id)

    def sees(self, principal: Any, tenant_id: str) -> bool:
        """True when ``tenant_id`` exists for ``principal``."""
        return isinstance(principal, Principal) and principal.sees(tenant_id)

    def may(self, principal: Any, action: str) -> bool:
        """True when ``principal``'s role allows ``action``."""
        return isinstance(principal, Principal) and principal.may(action)

    def use(self, principal: Principal) -> contextlib.AbstractContextManager[None]:
        """``current_principal()`` is ``principal`` while the tool runs."""
        return use_principal(principal)

    def fair_share(self, principal: Any) -> str | None:
        """Callers who authenticated share a cap each; the operator (stdio) and anonymous callers
        (a loopback development server) are one user and get every worker."""
        if not isinstance(principal, Principal) or principal.kind in ("operator", "anonymous"):
            return None
        return f"{principal.kind}:{principal.name}"

    def redactor(self, principal: Any, tenant_id: str | None, arguments: Mapping[str, Any]) -> Callable[[str], str]:
        """Masks the used tenant's and the server's secrets, never text the call sent (see ``redaction``)."""
        cache: list[Redactor] = []

        def mask(text: str) -> str:
            # Built on first use: most calls never fail, and the tenant's config is known by then.
            if not cache:
                secrets: list[str] = []
                if tenant_id is not None and self.sees(principal, tenant_id):
                    try:
                        config = self._peek(tenant_id)
                    except TenantsError:
                        config = None
                    if config is not None:
                        secrets = tenant_secrets(config)
                cache.append(self._redaction.for_call(secrets, arguments))
            return cache[0](text)

        return mask
