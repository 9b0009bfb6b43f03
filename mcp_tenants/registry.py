"""TenantManager: the lock-protected registry of one server's tenants.

Start-up: the environment's tenants, which win → in the background, connect to Redis (a warning
when it is down) and load every stored tenant. Lookup: memory → Redis → environment → ``TenantNotFound``.
Pools and clients ("resources") open lazily on a tenant's first use; at most ``max_open`` stay
open (least recently used closed first), and one idle longer than ``idle_seconds`` is closed the
next time another resource opens. Changes made by other processes arrive through the store's
watcher (pub/sub, and the change log within a second whatever pub/sub did) and drop the stale
entry, so the next call reloads it from Redis.

Concurrency rules, in one place:
- ``_lock`` guards ``_entries``, ``_open`` and ``_closed``. It is held only to decide and to
  publish: no Redis, database or S3 call is ever made under it.
- A resource is built outside the lock and published under it after re-checking that the entry
  is still the one it was built for; a loser closes its own copy.
- Writes to one tenant (register, remove, and a lookup that falls through to Redis) are
  serialised by a striped per-tenant lock, so memory and Redis never disagree about a tenant
  because two calls crossed. These locks may be held across I/O; ``_lock`` may be taken while
  holding one, never the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from mcp_tenants.access.registration import RegistrationPolicy
from mcp_tenants.access.targets import TargetPolicy
from mcp_tenants.config import TenantConfig, validate_tenant_id
from mcp_tenants.envtenants import EnvTenants, read_env_tenants
from mcp_tenants.errors import (
    CorruptEntry,
    InvalidInput,
    StoreRefused,
    StoreUnavailable,
    TenantNotFound,
    TenantProtected,
    TenantsError,
    UnknownTenant,
    unknown_tenant,
)
from mcp_tenants.listing import list_page
from mcp_tenants.store import TenantStore

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TenantConfig)
R = TypeVar("R")

_STRIPES = 64


class TenantBackend(Protocol[C, R]):
    """What differs between the PostgreSQL and the MinIO server: how to open and check a tenant."""

    server: str
    config_type: type[C]

    def open(self, config: C) -> R:
        """Build the tenant's pool or client (may connect lazily)."""

    def interrupt(self, resource: R) -> None:
        """Cancel what the resource is running now (at shutdown, before ``close``)."""

    def close(self, resource: R) -> None:
        """Release the tenant's pool or client."""

    def verify(self, config: C) -> None:
        """Connect with these credentials once; raise ``TenantUnreachable`` when that fails."""


@dataclass
class _Entry(Generic[C, R]):
    config: C
    source: str  # "env" or "redis"; list() reports "memory" while a write is pending
    resource: R | None = None
    last_used: float = 0.0


class ManagerClosed(TenantsError):
    """The server is shutting down."""


class TenantManager(Generic[C, R]):
    """Registry of tenants with lazy resources; a context manager (``open`` / ``close``)."""

    def __init__(
        self,
        backend: TenantBackend[C, R],
        store: TenantStore[C] | None,
        environ: Mapping[str, str] | None = None,
        *,
        policy: RegistrationPolicy | None = None,
        max_open: int = 100,
        idle_seconds: float = 600.0,
    ) -> None:
        self.backend = backend
        self.store = store
        self.policy = policy or RegistrationPolicy(TargetPolicy())
        self._environ = os.environ if environ is None else environ
        self._max_open = max_open
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._entries: dict[str, _Entry[C, R]] = {}
        # Tenants with an open resource, least recently used first.
        self._open: OrderedDict[str, None] = OrderedDict()
        # While the background preload runs: tenants changed meanwhile, which it must not publish.
        self._touched: set[str] | None = None
        self._closed = False
        # What the environment defines, read once by open(); invalid tenants are reported, not served.
        self._env: EnvTenants[C] = EnvTenants()

    # -- life cycle -----------------------------------------------------------------------------

    def open(self) -> TenantManager[C, R]:
        """Connect to Redis, take the environment's tenants, and load the stored ones.

        The stored tenants load on a background thread, so start-up does not grow with their
        number: until it finishes, a lookup falls through to Redis as for any tenant not yet in
        memory. The environment's tenants are in place before this returns and always win; an
        invalid one is logged and skipped (``list`` reports it), never fatal.
        """
        env = read_env_tenants(self.backend.config_type, self._environ)
        with self._lock:
            self._env = env
            self._entries.update({tid: _Entry(cfg, "env") for tid, cfg in env.valid.items()})
        logger.info("%s server: %d tenant(s) from the environment", self.backend.server, len(env.valid))
        env.log_invalid(self.backend.server)
        if self.store is not None:
            with self._lock:
                self._touched = set()
            # Watch first: the preload's reads then wait until changes after them are caught.
            self.store.watch(self._on_remote_change)
            threading.Thread(target=self._preload, name="tenant-preload", daemon=True).start()
        return self

    def _preload(self) -> None:
        """Connect to Redis and load every stored tenant into memory (the background half of ``open``).

        An unreachable Redis costs this thread its connect timeout, never the start-up. Whatever
        goes wrong here is logged; lookups then read Redis tenant by tenant.
        """
        assert self.store is not None
        configs: dict[str, C] = {}
        errors: dict[str, CorruptEntry] = {}
        try:
            if self.store.connect():  # on failure it has logged a warning and keeps retrying
                configs, errors = self.store.load_all()
        except StoreUnavailable as exc:
            logger.warning("could not load tenants from Redis: %s", exc)
        except Exception:  # a dead preload must not go unnoticed, nor leave _touched set
            logger.exception("loading tenants from Redis failed; they are read from Redis on first use")
        for tenant_id, error in sorted(errors.items()):
            logger.error("skipping stored tenant %r: %s", tenant_id, error)
        shadowed = self._env.ids  # the environment's ids stay the environment's, valid or not
        with self._lock:
            # A tenant written or dropped since loading began may be stale here: skip it (the
            # next lookup reads Redis), and never replace an entry already in memory.
            touched, self._touched = self._touched or set(), None
            for tenant_id, config in configs.items():
                if tenant_id not in touched and tenant_id not in shadowed and not self._closed:
                    self._entries.setdefault(tenant_id, _Entry(config, "redis"))
        logger.info("%s server: %d tenant(s) loaded from Redis", self.backend.server, len(configs))

    def __enter__(self) -> TenantManager[C, R]:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open resource and the store; later calls fail with ``ManagerClosed``."""
        # Phase 1, under the lock: mark closed and take the resources.
        with self._lock:
            if self._closed:
                return
            self._closed = True
            resources = [e.resource for e in self._entries.values() if e.resource is not None]
            for entry in self._entries.values():
                entry.resource = None
            self._open.clear()
        # Phase 2, outside it: cancel what they are running, so worker threads come back at once,
        # then close them.
        for resource in resources:
            try:
                self.backend.interrupt(resource)
            except Exception:  # one failure must not keep the others running
                logger.warning("error while interrupting a %s tenant resource", self.backend.server, exc_info=True)
        for resource in resources:
            self._close_quietly(resource)
        if self.store is not None:
            self.store.close()

    def _close_quietly(self, resource: R) -> None:
        try:
            self.backend.close(resource)
        except Exception:  # a failing close must not stop the others from closing
            logger.warning("error while closing a %s tenant resource", self.backend.server, exc_info=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("the server is shutting down")

    def _stripe(self, tenant_id: str) -> threading.Lock:
        return self._stripes[hash(tenant_id) % _STRIPES]

    # -- lookup ---------------------------------------------------------------------------------

    def peek(self, tenant_id: str) -> C | None:
        """The config of ``tenant_id`` if it is in memory, else None (no I/O: safe on the event loop)."""
        with self._lock:
            entry = self._entries.get(tenant_id)
        return entry.config if entry is not None else None

    def get(self, tenant_id: str) -> C:
        """The config of ``tenant_id``: memory → Redis → environment → ``TenantNotFound``."""
        validate_tenant_id(tenant_id)
        with self._lock:
            self._check_open()
            entry = self._entries.get(tenant_id)
        if entry is not None:
            return entry.config
        with self._stripe(tenant_id):
            with self._lock:
                entry = self._entries.get(tenant_id)
            if entry is not None:  # loaded by another thread while we waited
                return entry.config
            config, source = self._load(tenant_id)
            with self._lock:
                self._check_open()
                entry = self._entries.setdefault(tenant_id, _Entry(config, source))
            return entry.config

    def _load(self, tenant_id: str) -> tuple[C, str]:
        invalid = self._env.invalid.get(tenant_id)
        if invalid is not None:
            raise InvalidInput(f"{invalid}; the server skipped this tenant: fix the variable and restart the server")
        if self.store is not None:
            try:
                stored = self.store.get(tenant_id)
            except StoreUnavailable:
                stored = None  # fall through to the environment
            if stored is not None:
                return stored, "redis"
        from_env = self.backend.config_type.from_env(tenant_id, self._environ)
        if from_env is not None:
            return from_env, "env"
        raise self.not_found(tenant_id)

    def not_found(self, tenant_id: str) -> UnknownTenant:
        """The error for an id that is not in memory, Redis or the environment."""
        return UnknownTenant(tenant_id, unknown_tenant(tenant_id, self.backend.config_type.ENV_PREFIX))

    def resource(self, tenant_id: str) -> tuple[C, R]:
        """The config and the open resource of ``tenant_id``, opening it on first use."""
        for _attempt in range(3):
            config = self.get(tenant_id)
            with self._lock:
                self._check_open()
                entry = self._entries.get(tenant_id)
                if entry is not None and entry.config is config and entry.resource is not None:
                    entry.last_used = time.monotonic()
                    self._open.move_to_end(tenant_id)
                    return config, entry.resource
            built = self.backend.open(config)  # outside the lock: may be slow
            evicted: list[R] = []
            with self._lock:
                entry = self._entries.get(tenant_id)
                current = not self._closed and entry is not None and entry.config is config
                winner = entry.resource if current and entry is not None else None
                if current and entry is not None and winner is None:
                    entry.resource, entry.last_used = built, time.monotonic()
                    self._open[tenant_id] = None
                    evicted = self._take_evictions()
            for resource in evicted:
                self._close_quietly(resource)
            if current and winner is None:
                return config, built
            self._close_quietly(built)  # lost the race, or the tenant changed meanwhile
            if winner is not None:
                return config, winner
        self._check_open()
        raise TenantNotFound(f"tenant {tenant_id!r} is being changed concurrently; retry")

    def _take_evictions(self) -> list[R]:
        """Under ``_lock``: detach resources beyond the cap or idle too long (closed by the caller)."""
        now = time.monotonic()
        taken: list[R] = []
        for tenant_id in list(self._open):
            entry = self._entries.get(tenant_id)
            over_cap = len(self._open) > self._max_open
            idle = entry is not None and now - entry.last_used > self._idle_seconds
            if not (over_cap or idle or entry is None):
                break  # the rest were used more recently
            del self._open[tenant_id]
            if entry is not None and entry.resource is not None:
                taken.append(entry.resource)
                entry.resource = None
        return taken

    def open_count(self) -> int:
        """How many tenants have an open pool or client."""
        with self._lock:
            return len(self._open)

    # -- changes --------------------------------------------------------------------------------

    def _detach(self, tenant_id: str) -> _Entry[C, R] | None:
        """Under ``_lock``: remove an entry and forget its open resource."""
        if self._touched is not None:
            self._touched.add(tenant_id)
        self._open.pop(tenant_id, None)
        return self._entries.pop(tenant_id, None)

    def _on_remote_change(self, tenant_id: str | None) -> None:
        """Another process changed ``tenant_id`` (None: maybe anything): drop what is stale."""
        if tenant_id is None:
            self._resync()
            return
        with self._stripe(tenant_id):
            with self._lock:
                entry = self._entries.get(tenant_id)
                if entry is None or entry.source == "env":
                    if self._touched is not None:
                        self._touched.add(tenant_id)  # the preload may hold its old config
                    return
                self._detach(tenant_id)
            if entry.resource is not None:
                self._close_quietly(entry.resource)
        logger.info("tenant %r changed in another process; it is reloaded on next use", tenant_id)

    def _resync(self) -> None:
        """Drop every cached tenant that no longer matches Redis (after missed changes).

        Raises ``StoreUnavailable`` when Redis cannot tell: the store's watcher then asks again.
        """
        assert self.store is not None
        stored, _errors = self.store.load_all()
        with self._lock:
            stale = [
                tid for tid, entry in self._entries.items() if entry.source != "env" and stored.get(tid) != entry.config
            ]
        for tenant_id in stale:
            self._on_remote_change(tenant_id)

    def is_env_tenant(self, tenant_id: str) -> bool:
        """True when the environment defines ``tenant_id``, validly or not."""
        with self._lock:
            entry = self._entries.get(tenant_id)
        if (entry is not None and entry.source == "env") or tenant_id in self._env.ids:
            return True
        return tenant_id in self.backend.config_type.env_ids(self._environ)

    def _refuse_env(self, tenant_id: str, action: str) -> None:
        if self.is_env_tenant(tenant_id):
            prefix = self.backend.config_type.ENV_PREFIX
            raise TenantProtected(
                f"tenant {tenant_id!r} is defined in the environment ({prefix}{tenant_id.upper()}_*) "
                f"and cannot be {action} by a tool call; change the environment instead"
            )

    def register(self, config: C, *, verify: bool = True) -> bool:
        """Add or replace a tenant; True when it was persisted to Redis.

        Order: refuse env tenants → the registration policy (access, target) → check the target is
        reachable with these credentials → publish in memory → persist. A failed check changes nothing.
        """
        tenant_id = config.tenant_id
        self._check_open()
        self._refuse_env(tenant_id, "overwritten")
        self.policy.admit(config)
        if verify:
            self.backend.verify(config)
        with self._stripe(tenant_id):
            with self._lock:
                self._check_open()
                old = self._detach(tenant_id)
                self._entries[tenant_id] = _Entry(config, "redis")
            if old is not None and old.resource is not None:
                self._close_quietly(old.resource)
            try:
                persisted = self.store.put(config) if self.store is not None else False
            except StoreRefused:
                self._restore(tenant_id, old)  # Redis refused for good: nothing changed
                raise
        logger.info("registered %s tenant %r (persisted: %s)", self.backend.server, tenant_id, persisted)
        return persisted

    def remove(self, tenant_id: str) -> bool:
        """Remove a tenant from memory and Redis; True when the removal reached Redis."""
        validate_tenant_id(tenant_id)
        self._check_open()
        self._refuse_env(tenant_id, "removed")
        with self._stripe(tenant_id):
            with self._lock:
                entry = self._detach(tenant_id)
            if entry is not None and entry.resource is not None:
                self._close_quietly(entry.resource)
            in_store = False
            if self.store is not None:
                try:
                    in_store = self.store.get(tenant_id) is not None
                except CorruptEntry:
                    in_store = True  # a corrupt entry can still be removed
                except StoreUnavailable:
                    in_store = entry is not None
            if entry is None and not in_store:
                raise UnknownTenant(tenant_id, f"unknown tenant {tenant_id!r}: nothing to remove")
            try:
                persisted = self.store.delete(tenant_id) if self.store is not None else False
            except StoreRefused:
                self._restore(tenant_id, entry)
                raise
        logger.info("removed %s tenant %r (persisted: %s)", self.backend.server, tenant_id, persisted)
        return persisted

    def _restore(self, tenant_id: str, old: _Entry[C, R] | None) -> None:
        """Put back the entry a refused change replaced (its resource was closed: it reopens on use)."""
        with self._lock:
            self._detach(tenant_id)
            if old is not None and not self._closed:
                self._entries[tenant_id] = _Entry(old.config, old.source)

    # -- listing --------------------------------------------------------------------------------

    def known_ids(self) -> set[str]:
        """Every tenant id this process knows of: memory, the environment and Redis (when up)."""
        with self._lock:
            ids = set(self._entries)
        ids |= self.backend.config_type.env_ids(self._environ)
        if self.store is not None:
            with contextlib.suppress(StoreUnavailable):
                ids |= self.store.ids()
        return ids

    def list(
        self, *, limit: int = 100, after: str | None = None, visible: Callable[[str], bool] | None = None
    ) -> tuple[list[dict[str, Any]], str | None, dict]:
        """A page of known tenants, sorted by id, starting after ``after``.

        Returns (tenants, next cursor or None, unreadable entries of this page: stored entries
        that cannot be read and invalid environment tenants, each with its error). Tenants stored
        by other processes are listed too; only the page's entries are read from Redis.
        ``visible`` keeps only the tenants a caller may see.
        """
        with self._lock:
            self._check_open()
            known = {tid: (e.config, e.source) for tid, e in self._entries.items()}
            invalid_env = dict(self._env.invalid)
        return list_page(known, invalid_env, self.store, limit=limit, after=after, visible=visible)
