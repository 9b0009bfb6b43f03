"""The core's call policy: the caller per transport, grants, and the scoped redactor it hands out."""

from types import SimpleNamespace

import pytest

from mcp_tenants.access import NOBODY, OPERATOR, Principal, current_principal
from mcp_tenants.access.http import SCOPE_KEY
from mcp_tenants.access.policy import AccessPolicy
from mcp_tenants.access.redaction import ScopedRedaction
from mcp_tenants.errors import AccessDenied, UnknownTenant
from mcp_tenants.postgres.tenant import PostgresTenant

SALES = Principal("sales-team", "key", "writer", ("sales_*",))
CONFIGS = {
    "sales_eu": PostgresTenant(tenant_id="sales_eu", host="h", database="d", user="u", password="sales-pw-1"),
    "hr": PostgresTenant(tenant_id="hr", host="h", database="d", user="u", password="hr-pw-22"),
}


def policy(transport="streamable-http"):
    return AccessPolicy(transport, ScopedRedaction(["server-token-9"]), CONFIGS.get)


def test_the_caller_is_the_operator_on_stdio_and_the_gates_principal_over_http():
    assert policy("stdio").principal(SimpleNamespace(request=None)) is OPERATOR
    request = SimpleNamespace(scope={SCOPE_KEY: SALES})
    assert policy().principal(SimpleNamespace(request=request)) is SALES
    assert policy().principal(SimpleNamespace(request=SimpleNamespace(scope={}))) is NOBODY  # fail closed


def test_grants_roles_and_the_current_principal():
    p = policy()
    p.authorize(SALES, "write", "sales_eu")
    with pytest.raises(UnknownTenant):
        p.authorize(SALES, "read", "hr")
    with pytest.raises(AccessDenied):
        p.authorize(SALES, "admin", "sales_new")
    assert p.sees(SALES, "sales_us") and not p.sees(SALES, "hr") and not p.sees("someone", "sales_us")
    with p.use(SALES):
        assert current_principal() is SALES
    assert current_principal() is NOBODY


def test_the_redactor_masks_the_used_tenants_and_the_servers_secrets_only():
    text = "sales-pw-1 hr-pw-22 server-token-9"
    assert policy().redactor(SALES, "sales_eu", {"sql": "SELECT 1"})(text) == "*** hr-pw-22 ***"
    # A tenant outside the grant lends no secrets to the mask (its config is never consulted).
    assert policy().redactor(SALES, "hr", {})(text) == "sales-pw-1 hr-pw-22 ***"
    assert policy().redactor(SALES, "sales_eu", {"params": ["sales-pw-1"]})(text) == "sales-pw-1 hr-pw-22 ***"
