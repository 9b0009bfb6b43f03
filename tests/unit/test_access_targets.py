"""Target checks: every SSRF form from the security review, decided by the real resolver.

Numeric forms go through the real ``getaddrinfo`` (no network needed); names use a fake resolver
so DNS answers (including rebinding) are under the test's control.
"""

import socket

import pytest

from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.access.targets import TargetPolicy, embedded_ipv4, parse_address
from mcp_tenants.errors import AccessDenied, InvalidInput, TenantUnreachable

METADATA_FORMS = [
    "169.254.169.254",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "[::ffff:a9fe:a9fe]",
    "::169.254.169.254",  # IPv4-compatible
    "2852039166",  # decimal
    "0251.0376.0251.0376",  # octal
    "0xa9fea9fe",  # hex
    "0xA9.0xFE.0xA9.0xFE",
    "169.254.43518",  # short inet_aton forms
    "169.16689662",
    "2002:a9fe:a9fe::1",  # 6to4
    "64:ff9b::169.254.169.254",  # NAT64
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254
    "fe80::1",
    "fe80::1%lo",
    "fd00:ec2::254",
    "100.100.100.200",
    "0",
    "0.0.0.0",
    "::",
    "0.1.2.3",
]


class FakeDNS:
    """getaddrinfo over a dict; numeric hosts go to the real one. Answers may change between calls."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0

    def __call__(self, host, port, *args, **kwargs):
        self.calls += 1
        if host in self.answers:
            answer = self.answers[host]
            addresses = answer() if callable(answer) else answer
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in addresses
            ]
        if parse_address(host.split("%")[0]) is not None:
            return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


DNS = FakeDNS(
    {
        "db.example.com": ["93.184.216.34"],
        "sneaky.example.com": ["93.184.216.34", "169.254.169.254"],  # one bad answer spoils the name
        "mapped.example.com": ["::ffff:169.254.169.254"],
        "db.internal": ["10.1.2.3"],
        "a.db.internal": ["10.1.2.4"],
        "a.b.db.internal": ["10.1.2.5"],
        "postgres": ["172.18.0.2"],
        "loop.example.com": ["127.0.0.1"],
    }
)


def policy(*allowed, remote=True):
    return TargetPolicy(allowed, remote=remote, resolver=DNS)


@pytest.mark.parametrize("host", METADATA_FORMS)
@pytest.mark.parametrize("remote", [True, False], ids=["http", "stdio"])
def test_metadata_and_unspecified_addresses_are_refused_in_every_form(host, remote):
    for p in (policy(remote=remote), policy("0.0.0.0/0", "::/0", "*", remote=remote)):  # even when "allowed"
        with pytest.raises(AccessDenied, match="may never point there"):
            p.check(host)


def test_names_are_judged_by_every_address_they_resolve_to():
    for p in (policy(remote=True), policy(remote=False)):
        for host in ("sneaky.example.com", "mapped.example.com"):
            with pytest.raises(AccessDenied, match=r"169\.254\.169\.254"):
                p.check(host)
    policy(remote=True).check("db.example.com")
    with pytest.raises(TenantUnreachable, match="does not resolve"):
        policy().check("nowhere.example.com")


def test_host_lists_are_refused_on_both_transports():
    for remote in (True, False):
        for host in ("169.254.169.254,127.0.0.1", "db.example.com,db.internal", "a,", ","):
            with pytest.raises(AccessDenied, match="list of hosts"):
                policy(remote=remote).check(host)


def test_unix_socket_paths_are_refused_over_http_and_with_an_allow_list():
    for host in ("/var/run/postgresql", "/tmp", "@abstract"):
        with pytest.raises(AccessDenied, match="Unix-socket"):
            policy(remote=True).check(host)
        with pytest.raises(AccessDenied, match="Unix-socket"):
            policy("10.0.0.0/8", remote=False).check(host)
        assert policy(remote=False).resolve(host, 5432) == []  # stdio: the local user's own sockets


def test_over_http_only_public_addresses_pass_by_default():
    p = policy(remote=True)
    for host, why in [
        ("127.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("::1", "loopback"),
        ("loop.example.com", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("100.64.0.1", "public"),
        ("db.internal", "private"),
    ]:
        with pytest.raises(AccessDenied, match=why):
            p.check(host)
    p.check("93.184.216.34")
    p.check("2606:4700::1111")
    # Over stdio the local user may reach their own network.
    for host in ("127.0.0.1", "localhost", "10.1.2.3", "db.internal"):
        TargetPolicy(remote=False, resolver=DNS if host != "localhost" else socket.getaddrinfo).check(host)


def test_allow_list_names_globs_within_one_label_and_cidrs():
    p = policy("*.db.internal", "postgres", "192.168.0.0/16", remote=True)
    p.check("a.db.internal")
    p.check("postgres")
    p.check("192.168.7.7")
    for host in (
        "db.internal",  # * needs a label
        "a.b.db.internal",  # * never spans a dot
        "10.1.2.3",  # not listed, even though private
        "93.184.216.34",  # with a list, only listed targets pass
        "db.example.com",
    ):
        with pytest.raises(AccessDenied, match="MCP_ALLOWED_HOSTS"):
            p.check(host)
    # "*" is one label: it neither matches across a dot nor lets numeric hosts in as names.
    star = policy("*", remote=True)
    star.check("postgres")
    for host in ("db.example.com", "167772161", "0x0a000001", "10.0.0.1"):
        with pytest.raises(AccessDenied):
            star.check(host)


def test_allow_list_entries_are_validated():
    for bad in ("db.*.internal/8", "a b", "no/slash", "x,y", "*.*..com"):
        with pytest.raises(InvalidInput, match="MCP_ALLOWED_HOSTS entry"):
            TargetPolicy([bad])
    assert TargetPolicy(["", " DB.Example.COM. "]).restricted


def test_malformed_hosts_are_refused_before_resolution():
    dns = FakeDNS({})
    p = TargetPolicy(remote=True, resolver=dns)
    for host in ("", " ", "db example.com", "host=evil", "a..b", "-a.com", "ex\u00e4mple.com", "x" * 254):
        with pytest.raises(InvalidInput):
            p.check(host)
    assert dns.calls == 0


def test_every_encoding_reduces_to_its_ipv4_address():
    import ipaddress

    v4 = ipaddress.ip_address("169.254.169.254")
    for text in (
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "2002:a9fe:a9fe::",
        "64:ff9b::a9fe:a9fe",
        "2001:0:4136:e378:8000:63bf:5601:5601",
    ):
        assert embedded_ipv4(ipaddress.ip_address(text)) == v4
    assert embedded_ipv4(ipaddress.ip_address("::1")) == ipaddress.ip_address("::1")


def test_resolve_returns_the_checked_addresses_to_connect_to():
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])
    dns = FakeDNS({"rebind.example.com": lambda: next(answers)})
    p = TargetPolicy(remote=True, resolver=dns)
    (first,) = p.resolve("rebind.example.com", 5432)
    assert first.host == "93.184.216.34" and first.sockaddr == ("93.184.216.34", 5432)
    with pytest.raises(AccessDenied, match=r"169\.254\.169\.254"):  # the next connect re-resolves and re-checks
        p.resolve("rebind.example.com", 5432)


def test_registration_policy_caps_access_and_checks_the_target():
    from mcp_tenants.postgres.tenant import PostgresTenant

    def tenant(host="93.184.216.34", access="read-write"):
        return PostgresTenant(tenant_id="t1", host=host, database="d", user="u", password="p", access=access)

    capped = RegistrationPolicy(policy(remote=True), max_access="read-only")
    with pytest.raises(AccessDenied, match="MCP_MAX_ACCESS=read-only"):
        capped.admit(tenant())
    capped.admit(tenant(access="read-only"))
    with pytest.raises(AccessDenied, match="link-local"):
        RegistrationPolicy(policy(remote=True)).admit(tenant(host="2852039166"))
