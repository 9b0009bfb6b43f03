"""TenantManager with a fake backend and fakeredis: start-up, lookup order, protection, races."""

import random
import socket
import threading
from unittest import mock

import fakeredis
import pytest

from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import InvalidInput, TenantNotFound, TenantProtected, TenantUnreachable
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.registry import ManagerClosed, TenantManager
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import TenantStore

from .fakes import FakeBackend

# Host names in these tests are made up: resolving them would only wait on DNS.
# Every made-up host name resolves to one public address: registration tests need no DNS.
NO_DNS = RegistrationPolicy(
    TargetPolicy(
        resolver=lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]
    )
)

ENV = {
    "POSTGRES_TENANT_ENVY_HOST": "env-host",
    "POSTGRES_TENANT_ENVY_DATABASE": "d",
    "POSTGRES_TENANT_ENVY_USER": "u",
    "POSTGRES_TENANT_ENVY_PASSWORD": "pw-env-secret",
}


def tenant(tid, host="db", **kw):
    return PostgresTenant(tenant_id=tid, host=host, database="d", user="u", password=f"pw-{tid}", **kw)


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def make_manager(server, environ=ENV):
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client, max_backoff=0.05)
    backend = FakeBackend(PostgresTenant)
    return TenantManager(backend, store, environ, policy=NO_DNS).open(), backend


def test_startup_loads_redis_then_env_and_env_wins(server):
    first, _ = make_manager(server, environ={})
    first.register(tenant("envy", host="from-redis"))
    first.register(tenant("stored"))
    first.close()
    manager, backend = make_manager(server)
    assert manager.get("envy").host == "env-host"
    assert manager.get("stored").host == "db"
    assert backend.opened == []  # pools open lazily, not at start-up
    tenants, _cursor, unreadable = manager.list()
    assert {t["tenant_id"]: t["source"] for t in tenants} == {"envy": "env", "stored": "redis"}
    assert unreadable == {}


def test_env_tenants_cannot_be_overwritten_or_removed(server):
    manager, _ = make_manager(server)
    with pytest.raises(TenantProtected, match="environment"):
        manager.register(tenant("envy"))
    with pytest.raises(TenantProtected):
        manager.remove("envy")
    assert manager.get("envy").host == "env-host"


def test_tenant_registered_by_another_process_is_found_on_first_use(server):
    one, _ = make_manager(server)
    two, _ = make_manager(server)
    one.register(tenant("late"))
    assert two.get("late").host == "db"


def test_unknown_tenant_error_says_what_to_do(server):
    manager, _ = make_manager(server)
    with pytest.raises(TenantNotFound, match="register_tenant"):
        manager.get("ghost")


def test_unreachable_target_is_refused_and_nothing_is_stored(server):
    manager, _ = make_manager(server)
    with pytest.raises(TenantUnreachable):
        manager.register(tenant("bad", host="down.example"))
    assert fakeredis.FakeRedis(server=server).get("mcp:postgres:tenant:bad") is None
    with pytest.raises(TenantNotFound):
        manager.get("bad")


def test_bad_ids_are_refused_before_redis_is_touched():
    client = mock.MagicMock()
    store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)
    manager = TenantManager(FakeBackend(PostgresTenant), store, {})
    for bad in ["*", "a:b", "a b", "../x", "", "x" * 100, "ténant"]:
        with pytest.raises(InvalidInput):
            manager.get(bad)
        with pytest.raises(InvalidInput):
            manager.remove(bad)
    assert client.method_calls == []


def test_resource_opens_once_and_replacement_closes_the_old_one(server):
    manager, backend = make_manager(server)
    manager.register(tenant("t"))
    _, first = manager.resource("t")
    _, again = manager.resource("t")
    assert first is again and len(backend.opened) == 1
    manager.register(tenant("t", host="db2"))
    assert first.closed
    config, second = manager.resource("t")
    assert config.host == "db2" and second is not first


def test_remove_closes_the_resource_and_deletes_the_key(server):
    manager, _ = make_manager(server)
    manager.register(tenant("t"))
    _, resource = manager.resource("t")
    assert manager.remove("t") is True
    assert resource.closed
    assert fakeredis.FakeRedis(server=server).get("mcp:postgres:tenant:t") is None
    with pytest.raises(TenantNotFound):
        manager.remove("t")


def test_redis_outage_registers_in_memory_and_persists_later(server):
    manager, _ = make_manager(server)
    server.connected = False
    assert manager.register(tenant("offline")) is False
    tenants, _, _ = manager.list()
    assert {t["tenant_id"]: t["source"] for t in tenants}["offline"] == "memory"
    assert manager.get("offline").host == "db"
    server.connected = True
    for _ in range(200):
        if not manager.store.pending_ids():
            break
        threading.Event().wait(0.02)
    assert fakeredis.FakeRedis(server=server).get("mcp:postgres:tenant:offline") is not None
    manager.close()


def test_close_closes_every_open_resource_and_refuses_later_calls(server):
    manager, backend = make_manager(server)
    for tid in ("a", "b"):
        manager.register(tenant(tid))
        manager.resource(tid)
    manager.close()
    assert all(r.closed and r.interrupted for r in backend.opened)
    with pytest.raises(ManagerClosed):
        manager.get("a")


def test_fifty_threads_register_lookup_and_remove_without_loss_or_tear(server):
    manager, backend = make_manager(server)
    ids = [f"t{i}" for i in range(10)]
    errors = []
    barrier = threading.Barrier(50)

    def worker(n):
        rnd = random.Random(n)
        barrier.wait()
        try:
            for _ in range(40):
                tid = rnd.choice(ids)
                action = rnd.random()
                try:
                    if action < 0.4:
                        manager.register(tenant(tid, host=f"h{n}"))
                    elif action < 0.8:
                        config, resource = manager.resource(tid)
                        # Never torn: the resource was built for a config of this very tenant.
                        assert resource.config.tenant_id == config.tenant_id == tid
                    else:
                        manager.remove(tid)
                except TenantNotFound:
                    pass
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert errors == []
    # Memory and Redis agree on every tenant.
    store_configs, _ = manager.store.load_all()
    with manager._lock:
        memory = {tid: e.config for tid, e in manager._entries.items() if e.source != "env"}
    assert memory == store_configs
    # Every resource still published belongs to a live entry; all others were closed.
    live = {id(e.resource) for e in manager._entries.values() if e.resource is not None}
    assert all(r.closed for r in backend.opened if id(r) not in live)


def test_open_resources_are_capped_least_recently_used_first(server):
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)
    backend = FakeBackend(PostgresTenant)
    manager = TenantManager(backend, store, {}, policy=NO_DNS, max_open=3).open()
    for i in range(5):
        manager.register(tenant(f"t{i}"))
    for tid in ("t0", "t1", "t2"):
        manager.resource(tid)
    manager.resource("t0")  # t0 is now the most recently used
    manager.resource("t3")  # over the cap: t1 goes
    assert manager.open_count() == 3
    closed = {r.config.tenant_id for r in backend.opened if r.closed}
    assert closed == {"t1"}
    _, again = manager.resource("t1")  # reopened on demand
    assert not again.closed and manager.open_count() == 3
    manager.close()


def test_idle_resources_close_when_another_opens(server):
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)
    backend = FakeBackend(PostgresTenant)
    manager = TenantManager(backend, store, {}, policy=NO_DNS, idle_seconds=0.05).open()
    manager.register(tenant("old"))
    manager.register(tenant("new"))
    _, old = manager.resource("old")
    threading.Event().wait(0.1)
    manager.resource("new")
    assert old.closed and manager.open_count() == 1
    manager.close()


def test_change_in_another_process_drops_the_stale_entry(server):
    one, _ = make_manager(server)
    two, _ = make_manager(server)
    one.register(tenant("moving", host="db-old"))
    _, stale = two.resource("moving")
    one.register(tenant("moving", host="db-new"))
    for _ in range(200):  # the announcement arrives on the watcher thread
        if stale.closed:
            break
        threading.Event().wait(0.01)
    assert stale.closed
    assert two.get("moving").host == "db-new"
    one.remove("moving")
    for _ in range(200):
        try:
            two.get("moving")
        except TenantNotFound:
            break
        threading.Event().wait(0.01)
    with pytest.raises(TenantNotFound):
        two.get("moving")
    one.close()
    two.close()


def test_list_pages_by_cursor_and_includes_other_processes_tenants(server):
    one, _ = make_manager(server)
    other, _ = make_manager(server, environ={})
    for i in range(7):
        other.register(tenant(f"p{i}"))
    seen, cursor = [], None
    while True:
        page, cursor, _ = one.list(limit=3, after=cursor)
        assert len(page) <= 3
        seen += [t["tenant_id"] for t in page]
        if cursor is None:
            break
    assert seen == ["envy"] + [f"p{i}" for i in range(7)]
    assert all("password" not in t for t in page)


def test_background_preload_never_resurrects_a_tenant_removed_meanwhile(server):
    first, _ = make_manager(server, environ={})
    first.register(tenant("doomed"))
    first.register(tenant("kept"))
    first.close()

    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = TenantStore(RedisSettings(), "postgres", PostgresTenant, SecretCodec(), client=client)
    loading, release = threading.Event(), threading.Event()
    real_load_all = store.load_all

    def slow_load_all():
        result = real_load_all()  # reads "doomed" before it is removed
        loading.set()
        release.wait(5)
        return result

    store.load_all = slow_load_all
    manager = TenantManager(FakeBackend(PostgresTenant), store, {}, policy=NO_DNS).open()
    assert loading.wait(5)
    manager.remove("doomed")
    release.set()
    for _ in range(200):
        if manager._touched is None:  # preload finished
            break
        threading.Event().wait(0.01)
    with pytest.raises(TenantNotFound):
        manager.get("doomed")
    with manager._lock:
        assert "kept" in manager._entries and "doomed" not in manager._entries
    manager.close()


def test_invalid_env_tenants_are_listed_as_unreadable_and_stay_protected(server):
    environ = {**ENV, "POSTGRES_TENANT_BROKEN_HOST": "h", "POSTGRES_TENANT_BROKEN_PORT": "abc"}
    manager, _ = make_manager(server, environ=environ)
    tenants, _cursor, unreadable = manager.list()
    assert [t["tenant_id"] for t in tenants] == ["envy"]
    assert "POSTGRES_TENANT_BROKEN_PORT" in unreadable["broken"]
    assert "POSTGRES_TENANT_BROKEN_DATABASE is not set" in unreadable["broken"]
    with pytest.raises(TenantProtected):
        manager.register(tenant("broken"))
    with pytest.raises(TenantProtected):
        manager.remove("broken")
    with pytest.raises(InvalidInput, match="POSTGRES_TENANT_BROKEN_PORT"):
        manager.get("broken")
    assert manager.get("envy").host == "env-host"
