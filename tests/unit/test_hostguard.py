"""The registration guard, with a fake resolver (no DNS)."""

import pytest

from mcp_tenants.errors import AccessDenied, InvalidInput
from mcp_tenants.hostguard import HostGuard

DNS = {"db.internal": ["10.1.2.3"], "sneaky.example": ["169.254.169.254"], "public.example": ["93.184.216.34"]}


def guard(*patterns):
    return HostGuard(patterns, resolver=lambda host: DNS.get(host, []))


def test_without_allow_list_everything_but_link_local_is_allowed():
    g = guard()
    g.check("db.internal")
    g.check("10.0.0.5")
    for bad in ("169.254.169.254", "sneaky.example", "fe80::1", "[fe80::1]"):
        with pytest.raises(AccessDenied, match="link-local"):
            g.check(bad)


def test_cidr_allows_addresses_and_names_that_resolve_inside_it():
    g = guard("10.0.0.0/8")
    g.check("10.9.9.9")
    g.check("db.internal")
    for bad in ("192.168.1.1", "public.example", "unresolvable.example", "127.0.0.1"):
        with pytest.raises(AccessDenied, match="MCP_ALLOWED_HOSTS"):
            g.check(bad)


def test_name_patterns_match_case_insensitively():
    g = guard("*.Example", "exact-host")
    g.check("public.EXAMPLE")
    g.check("exact-host")
    with pytest.raises(AccessDenied):
        g.check("exact-host.evil")


def test_bad_pattern_names_the_entry():
    with pytest.raises(InvalidInput, match="MCP_ALLOWED_HOSTS entry"):
        HostGuard(["ok.example", "no/slash/here"])
