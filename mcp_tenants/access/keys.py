"""API keys: stored in Redis as SHA-256 hashes only, looked up through a cache of at most 1 s.

Layout per server (``{server}`` is ``postgres`` or ``minio``):

- ``mcp:{server}:api-keys``      hash: SHA-256 of the key → JSON {name, tenants, role, created, expires}
- ``mcp:{server}:api-key-names`` hash: name → SHA-256 (names are unique; revoke goes by name)
- ``mcp:{server}:api-key-used``  hash: name → last use (epoch seconds, written at most once a minute)
- ``mcp:{server}:api-key-events`` pub/sub channel: every create and revoke is announced

A key is 256 random bits, so a fast hash is enough (nothing to brute-force, unlike a password) and a
lookup is one HGET. Servers cache each lookup for at most ``KeyCache.TTL`` seconds and drop the
whole cache when an announcement arrives, so a created or revoked key takes effect on every process
within 1 s even when an announcement is lost. Light imports only: the CLI uses this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from mcp_tenants.access.principals import Principal, parse_patterns, validate_role
from mcp_tenants.config import shown
from mcp_tenants.errors import InvalidInput, StoreUnavailable, TenantsError

logger = logging.getLogger(__name__)

KEY_PREFIX = "mcpk_"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DURATION_RE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError)
#: How often one process records that a key was used.
TOUCH_INTERVAL_S = 60.0


class KeyExists(TenantsError):
    """An API key with this name already exists."""


class KeyNotFound(TenantsError):
    """No API key with this name."""


def parse_duration(text: str, *, source: str = "--expires") -> int:
    """Seconds in ``"90d"``, ``"12h"``, ``"1w2d"``, ``"30m"``, ``"45s"``."""
    value = text.strip().lower() if isinstance(text, str) else ""
    parts = _DURATION_RE.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise InvalidInput(f"{source} {shown(text)} is invalid: use a number with s, m, h, d or w, e.g. 90d or 12h")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InvalidInput(f"{source} {shown(text)} is invalid: give a duration above zero")
    return seconds


def hash_key(key: str) -> str:
    """The SHA-256 (hex) under which a key is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    """True when ``token`` has the shape of an API key (``mcpk_`` and 43 URL-safe characters)."""
    return token.startswith(KEY_PREFIX) and len(token) == len(KEY_PREFIX) + 43


def validate_key_name(name: object) -> str:
    """Return ``name`` if it is a valid key name, else raise ``InvalidInput``."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"key name {shown(name)} is invalid: use 1-64 letters, digits, '_', '.', '@' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ApiKey:
    """What is stored for a key (never the key itself)."""

    name: str
    tenants: tuple[str, ...]
    role: str
    created: float
    expires: float | None = None

    def expired(self, now: float | None = None) -> bool:
        """True once the key's expiry has passed."""
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def principal(self) -> Principal:
        """The principal this key authenticates."""
        return Principal(self.name, "key", self.role, self.tenants)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "tenants": list(self.tenants)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ApiKey:
        data = json.loads(raw)
        return cls(
            name=validate_key_name(data["name"]),
            tenants=parse_patterns(data["tenants"], source="stored key"),
            role=validate_role(data["role"], source="stored key role"),
            created=float(data["created"]),
            expires=None if data.get("expires") is None else float(data["expires"]),
        )


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class ApiKeyStore:
    """Creates, lists, revokes and looks up one server's API keys in Redis; nothing else."""

    def __init__(self, client: redis.Redis, server: str) -> None:
        self.client = client
        self.records = f"mcp:{server}:api-keys"
        self.names = f"mcp:{server}:api-key-names"
        self.used = f"mcp:{server}:api-key-used"
        self.channel = f"mcp:{server}:api-key-events"

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except _REDIS_ERRORS as exc:
            raise StoreUnavailable(
                f"Redis is unavailable ({type(exc).__name__}); API keys cannot be read or changed"
            ) from None

    def create(self, name: str, tenants: str, role: str, *, expires_in: int | None = None) -> tuple[ApiKey, str]:
        """Store a new key; returns its record and the key, which is not kept anywhere."""
        validate_key_name(name)
        patterns = parse_patterns(tenants)
        if not patterns:
            raise InvalidInput("--tenants is empty: give tenant-id patterns, e.g. sales_* or *")
        now = time.time()
        record = ApiKey(name, patterns, validate_role(role), now, None if expires_in is None else now + expires_in)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = hash_key(key)

        def write(pipe: redis.client.Pipeline) -> None:
            if pipe.hexists(self.names, name):
                raise KeyExists(f"an API key named {name!r} exists; revoke it first or choose another name")
            pipe.multi()
            pipe.hset(self.names, name, digest)
            pipe.hset(self.records, digest, record.to_json())

        self._call(lambda: self.client.transaction(write, self.names))
        self._announce("created", name)
        return record, key

    def revoke(self, name: str) -> ApiKey:
        """Delete a key by name; returns what was stored."""
        validate_key_name(name)
        found: list[ApiKey | None] = [None]

        def delete(pipe: redis.client.Pipeline) -> None:
            digest = _text(pipe.hget(self.names, name))
            if digest is None:
                raise KeyNotFound(f"no API key named {name!r}; mcp-tenants key list shows the keys")
            raw = pipe.hget(self.records, digest)
            found[0] = ApiKey.from_json(raw) if raw is not None else None
            pipe.multi()
            pipe.hdel(self.names, name)
            pipe.hdel(self.records, digest)
            pipe.hdel(self.used, name)

        self._call(lambda: self.client.transaction(delete, self.names))
        self._announce("revoked", name)
        return found[0] or ApiKey(name, (), "reader", 0.0)

    def list(self) -> list[tuple[ApiKey, float | None]]:
        """Every key with its last use, by name."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.records)
        pipe.hgetall(self.used)
        records, used = self._call(pipe.execute)
        rows = []
        for raw in records.values():
            try:
                key = ApiKey.from_json(raw)
            except (ValueError, KeyError, TypeError, InvalidInput):
                logger.warning("skipping an unreadable entry in %s", self.records)
                continue
            last = used.get(key.name) or used.get(key.name.encode())
            rows.append((key, float(last) if last is not None else None))
        return sorted(rows, key=lambda row: row[0].name)

    def lookup(self, digest: str) -> ApiKey | None:
        """The record stored under a key's hash (raises ``StoreUnavailable``)."""
        raw = self._call(self.client.hget, self.records, digest)
        if raw is None:
            return None
        try:
            return ApiKey.from_json(raw)
        except (ValueError, KeyError, TypeError, InvalidInput):
            logger.warning("an unreadable API key entry in %s is refused", self.records)
            return None

    def count(self) -> int:
        """How many keys are stored (raises ``StoreUnavailable``)."""
        return int(self._call(self.client.hlen, self.records))

    def touch(self, name: str, when: float) -> None:
        """Record that ``name`` was used at ``when`` (best effort)."""
        try:
            self.client.hset(self.used, name, f"{when:.0f}")
        except _REDIS_ERRORS:
            logger.debug("could not record the use of API key %r", name)

    def _announce(self, event: str, name: str) -> None:
        try:
            self.client.publish(self.channel, json.dumps({"event": event, "name": name}))
        except _REDIS_ERRORS:
            # Not fatal: every process re-reads a key after at most KeyCache.TTL seconds.
            logger.debug("could not announce that API key %r was %s", name, event)


class KeyCache:
    """Lookups of API keys with a time-to-live of at most ``TTL`` seconds, dropped on announcements.

    Concurrency: ``_entries`` is written by worker threads (``fetch``) and read by the event loop
    (``cached``); each access is one dict operation on immutable tuples, atomic in CPython, so no
    lock is needed. ``_generation`` is bumped only by the watch thread; an entry from an older
    generation is stale.
    """

    TTL = 1.0
    #: While Redis cannot be reached, an answer read at most this long ago is still used. A process
    #: cut off from Redis cannot learn of a revocation: past this it refuses the key (fails closed)
    #: rather than honour a revoked key for as long as the outage lasts.
    OUTAGE_GRACE = 30.0

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
        outage_grace: float = OUTAGE_GRACE,
    ) -> None:
        self.store = store
        self._ttl = min(ttl, self.TTL)
        self._outage_grace = outage_grace
        self._clock = clock
        self._generation = 0
        # digest → (record or None, fetched at, generation); also the last known answer during an outage.
        self._entries: dict[str, tuple[ApiKey | None, float, int]] = {}
        self._count: tuple[int, float, int] | None = None
        self._touched: dict[str, float] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def _fresh(self, fetched: float, generation: int) -> bool:
        return generation == self._generation and self._clock() - fetched < self._ttl

    def cached(self, digest: str) -> tuple[bool, ApiKey | None]:
        """(True, record) when a fresh answer is cached (no I/O: safe on the event loop)."""
        entry = self._entries.get(digest)
        if entry is not None and self._fresh(entry[1], entry[2]):
            return True, entry[0]
        return False, None

    def fetch(self, digest: str) -> ApiKey | None:
        """Look the hash up in Redis (blocking: call from a worker thread) and cache the answer.

        While Redis is unreachable the last answer this process had is used, for at most
        ``OUTAGE_GRACE`` seconds after it was read: this process cannot tell whether Redis is down
        for everyone (then no key can be revoked either) or only for it (a network partition, while
        the operator revokes keys on the Redis every other process reads).
        """
        started, generation = self._clock(), self._generation  # the TTL runs from before the read
        try:
            record = self.store.lookup(digest)
        except StoreUnavailable:
            last = self._entries.get(digest)
            if last is None or started - last[1] > self._outage_grace:
                return None
            return last[0]
        self._entries[digest] = (record, started, generation)
        if len(self._entries) > 10_000:  # bound memory against floods of made-up keys
            self._entries = {d: e for d, e in self._entries.items() if e[0] is not None}
        if record is not None:
            self._touch(record.name)
        return record

    def _touch(self, name: str) -> None:
        now = time.time()
        if now - self._touched.get(name, 0.0) >= TOUCH_INTERVAL_S:
            self._touched[name] = now
            self.store.touch(name, now)

    def any_keys_cached(self) -> bool | None:
        """Whether any key is stored, when a fresh answer is cached (no I/O), else None."""
        if self._count is not None and self._fresh(self._count[1], self._count[2]):
            return self._count[0] > 0
        return None

    def fetch_any_keys(self) -> bool:
        """Whether any key is stored (blocking). Unknown (Redis never reached, or not for longer than
        ``OUTAGE_GRACE``) counts as yes."""
        started, generation = self._clock(), self._generation
        try:
            count = self.store.count()
        except StoreUnavailable:
            return self._count is None or self._count[0] > 0 or started - self._count[1] > self._outage_grace
        self._count = (count, started, generation)
        return count > 0

    def invalidate(self) -> None:
        """Make every cached answer stale (an announcement arrived, or may have been missed)."""
        self._generation += 1

    # -- announcements --------------------------------------------------------------------------

    def start(self) -> KeyCache:
        """Listen for announcements on a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="api-key-watch", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening."""
        self._closed.set()

    def _watch(self) -> None:
        delay = 0.25
        while not self._closed.is_set():
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.store.channel)
                self.invalidate()  # announcements may have been missed before (re)subscribing
                delay = 0.25
                while not self._closed.is_set():
                    if pubsub.get_message(timeout=0.5) is not None:
                        self.invalidate()
            except (*_REDIS_ERRORS, OSError):
                self._closed.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except (*_REDIS_ERRORS, OSError):
                    pass
