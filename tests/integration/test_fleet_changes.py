"""Tenant changes reach every process within about a second, whatever pub/sub does (the change log).

Two TenantManager/TenantStore pairs on a real Redis stand for two server processes. The second
one's subscription is refused (an ACL user without channel rights) or killed (CLIENT KILL TYPE
pubsub), or it is cut off from the change log for longer than the log holds: it must still stop
serving a removed tenant and serve a re-pointed one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from mcp_tenants.crypto import SecretCodec
from mcp_tenants.devservices import RedisService
from mcp_tenants.errors import StoreRefused, TenantsError
from mcp_tenants.postgres.config import PostgresTenant
from mcp_tenants.registry import TenantManager
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore
from tests.conftest import running
from tests.unit.fakes import FakeBackend

LOG = "mcp:postgres:tenant-changes"
#: The log is read every 0.5 s: "within a second", with slack for a busy machine.
WITHIN_A_SECOND = 1.5


@pytest.fixture
def private_redis() -> Iterator[RedisService]:
    """A Redis of this test's own: the tests add ACL users to it."""
    yield from running(RedisService())


def tenant(tenant_id: str, host: str = "127.0.0.1") -> PostgresTenant:
    return PostgresTenant(tenant_id=tenant_id, host=host, database="d", user="u", password="pw-fleet-1")


def add_user(service: RedisService, name: str, *, channels: bool, commands: tuple[str, ...] = ()) -> RedisSettings:
    """An ACL user for one replica (``channels=False``: it may not subscribe); its settings."""
    password = secrets.token_urlsafe(12)
    admin = service.client(decode_responses=True)
    admin.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"] if channels else None,
        reset_channels=not channels,
        commands=["+@all", *commands],
    )
    admin.close()
    return RedisSettings(host=service.host, port=service.port, username=name, password=password)


def replica(service: RedisService, settings: RedisSettings | None = None) -> TenantManager:
    """A server process's registry and store on ``service``."""
    settings = settings or RedisSettings(host=service.host, port=service.port)
    store = TenantStore(settings, "postgres", PostgresTenant, SecretCodec(), max_backoff=0.5)
    return TenantManager(FakeBackend(PostgresTenant), store, {}).open()


def within_a_second(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WITHIN_A_SECOND
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def serves(manager: TenantManager, tenant_id: str) -> bool:
    try:
        manager.get(tenant_id)
    except TenantsError:
        return False
    return True


@pytest.mark.parametrize("broken", ["refused", "killed"])
def test_a_replica_whose_subscription_is_broken_still_follows_changes_within_a_second(
    private_redis: RedisService, broken: str
) -> None:
    admin = private_redis.client(decode_responses=True)
    first = replica(private_redis)
    second = replica(private_redis, add_user(private_redis, "second", channels=broken != "refused"))
    try:
        first.register(tenant("team_b_db"), verify=False)
        assert second.get("team_b_db").host == "127.0.0.1"  # now in the second one's memory
        if broken == "killed":
            admin.client_kill_filter(_type="pubsub")
        first.register(tenant("team_b_db", host="127.0.0.2"), verify=False)
        assert within_a_second(lambda: second.get("team_b_db").host == "127.0.0.2")
        if broken == "killed":
            admin.client_kill_filter(_type="pubsub")
        first.remove("team_b_db")
        assert within_a_second(lambda: not serves(second, "team_b_db"))
    finally:
        first.close()
        second.close()
        admin.close()


def test_a_replica_cut_off_longer_than_the_log_holds_compares_everything_once_back(
    private_redis: RedisService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_tenants.storewatch")
    admin = private_redis.client(decode_responses=True)
    first = replica(private_redis)
    second = replica(private_redis, add_user(private_redis, "second", channels=False))  # pub/sub: nothing
    try:
        for tenant_id in ("kept", "moved", "gone"):
            first.register(tenant(tenant_id), verify=False)
        kept = second.get("kept")
        assert second.get("moved").host == "127.0.0.1" and serves(second, "gone")
        # The second replica can no longer read the log; meanwhile tenants change, and the log is
        # trimmed past everything it has read.
        admin.acl_setuser("second", enabled=True, commands=["-xrange"])
        first.register(tenant("moved", host="127.0.0.2"), verify=False)
        first.remove("gone")
        admin.xtrim(LOG, maxlen=0, approximate=False)
        assert within_a_second(lambda: "cannot read the change log" in caplog.text)
        assert "no permissions" in caplog.text
        admin.acl_setuser("second", enabled=True, commands=["+xrange"])  # back
        # Both at once: "gone" alone may already be unserved (the second replica read its
        # registration from the log, and so never cached it), "moved" only after the comparison.
        assert within_a_second(lambda: second.get("moved").host == "127.0.0.2" and not serves(second, "gone"))
        assert second.get("kept") is kept  # what did not change stays in memory
        assert "no longer holds entry" in caplog.text and "comparing every tenant" in caplog.text
    finally:
        first.close()
        second.close()
        admin.close()


def test_a_write_is_never_made_without_its_log_entry(private_redis: RedisService) -> None:
    admin = private_redis.client(decode_responses=True)
    settings = add_user(private_redis, "noxadd", channels=True, commands=("-xadd",))
    store = TenantStore(settings, "postgres", PostgresTenant, SecretCodec(), background=False)
    try:
        with pytest.raises(StoreRefused) as info:
            store.put(tenant("acme"))
        message = str(info.value)
        assert "refused to store tenant 'acme'" in message and "xadd" in message
        assert "mcp:postgres:tenant:* and mcp:postgres:tenant-changes keys" in message
        assert "pw-fleet-1" not in message
        assert admin.keys("*") == []  # neither the tenant nor its entry
    finally:
        store.close()
        admin.close()
