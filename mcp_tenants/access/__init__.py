"""Who may do what: principals and grants, registration policy, scoped redaction, the audit trail.

Knows nothing of PostgreSQL or S3. Modules:

- ``principals``: ``Principal``, roles, patterns, ``authorize``, ``current_principal``
- ``keys``: API keys in Redis (hashes only) and the ≤ 1 s lookup cache
- ``oauth``: OAuth 2.1 JWT access tokens (PyJWT, the issuer's JWKS)
- ``http``: the SDK ``TokenVerifier`` and the gate in front of ``/mcp`` (imports the MCP SDK)
- ``targets`` / ``registration``: where tool-registered tenants may point; ``MCP_MAX_ACCESS``
- ``redaction``: what a call's output may mask
- ``audit``: the audit trail; ``cli``: ``mcp-tenants key`` and ``mcp-tenants audit``

This package imports only the light modules on import: the CLI must start fast.
"""

from mcp_tenants.access.principals import (
    ANONYMOUS,
    NOBODY,
    OPERATOR,
    Principal,
    authorize,
    current_principal,
    use_principal,
)

__all__ = ["ANONYMOUS", "NOBODY", "OPERATOR", "Principal", "authorize", "current_principal", "use_principal"]
