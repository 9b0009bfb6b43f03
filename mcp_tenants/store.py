"""TenantStore: tenant configs persisted in Redis, one JSON value per tenant.

Keys are ``mcp:{server}:tenant:{tenant_id}``; values are the config as a JSON object, secret
fields sealed by ``SecretCodec`` when a key is configured. Enumeration uses SCAN, never KEYS.

Redis may be down at any time. A write that fails is kept in memory as *pending* and a background
thread retries with exponential backoff; once Redis answers again the pending writes are flushed,
so registrations made during an outage are persisted without a restart. While Redis is known to
be down, reads fail at once instead of waiting for a connect timeout on every call.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import redis

from mcp_tenants.config import RedisSettings, TenantConfig, redact, shown, validate_tenant_id
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import CorruptEntry, InvalidInput, StoreUnavailable
from mcp_tenants.redisconn import make_redis_client

__all__ = ["TenantStore", "events_channel", "key_prefix", "make_redis_client"]  # the factory moved to redisconn

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TenantConfig)

_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError)
_SCAN_BATCH = 500
#: Marks a pending delete in ``TenantStore._pending`` (a pending put holds the entry itself).
_DELETE = None


def key_prefix(server: str) -> str:
    """The Redis key prefix of a server's tenants."""
    return f"mcp:{server}:tenant:"


def events_channel(server: str) -> str:
    """The pub/sub channel on which every write to a server's tenants is announced."""
    return f"mcp:{server}:tenant-events"


class TenantStore(Generic[C]):
    """Reads and writes one server's tenant entries in Redis; nothing else.

    Thread-safe: ``_lock`` guards only ``_pending`` and the availability state; no Redis call is
    made while holding it (redis-py's client has its own thread-safe connection pool).
    """

    def __init__(
        self,
        settings: RedisSettings,
        server: str,
        config_type: type[C],
        codec: SecretCodec,
        *,
        client: redis.Redis | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.settings = settings
        self.prefix = key_prefix(server)
        self.channel = events_channel(server)
        # Tells this process's own announcements apart from other processes'.
        self._origin = uuid.uuid4().hex
        self._config_type = config_type
        self._codec = codec
        self._client = client if client is not None else make_redis_client(settings)
        self._max_backoff = max_backoff
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, Any] | None] = {}
        self._available: bool | None = None  # None: not tried yet
        self._retry_thread: threading.Thread | None = None
        self._watch_thread: threading.Thread | None = None
        self._closed = threading.Event()

    # -- availability -------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """True while the last Redis call succeeded."""
        return bool(self._available)

    def connect(self) -> bool:
        """Ping Redis once; on failure log a warning and keep retrying in the background."""
        try:
            self._client.ping()
        except _REDIS_ERRORS as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            was = self._available
            self._available = False
            start = self._retry_thread is None and not self._closed.is_set()
            if start:
                self._retry_thread = threading.Thread(target=self._retry_loop, name="tenant-store-retry", daemon=True)
        if was is not False:
            logger.warning(
                "Redis at %s is unavailable (%s); serving from memory and retrying in the background",
                self.settings.describe(),
                redact(str(exc)) or type(exc).__name__,
            )
        if start:
            assert self._retry_thread is not None
            self._retry_thread.start()

    def _mark_up(self) -> None:
        with self._lock:
            was = self._available
            self._available = True
        if was is False:
            logger.info("Redis at %s is reachable again", self.settings.describe())

    def _retry_loop(self) -> None:
        """Ping with exponential backoff; when Redis answers, flush the pending writes."""
        delay = 0.25
        while not self._closed.wait(delay):
            delay = min(delay * 2, self._max_backoff)
            try:
                self._client.ping()
                self._flush_pending()
            except _REDIS_ERRORS:
                continue
            with self._lock:
                if not self._pending:
                    self._available = True
                    self._retry_thread = None
                    break
        else:
            return
        logger.info("Redis at %s is reachable again; pending writes flushed", self.settings.describe())

    def _flush_pending(self) -> None:
        with self._lock:
            snapshot = dict(self._pending)
        for tenant_id, entry in snapshot.items():
            if entry is _DELETE:
                self._client.delete(self.key(tenant_id))
            else:
                self._client.set(self.key(tenant_id), json.dumps(entry))
            self._announce(tenant_id)
            with self._lock:
                # Only drop it if no newer write for this tenant arrived meanwhile.
                if tenant_id in self._pending and self._pending[tenant_id] is entry:
                    del self._pending[tenant_id]
            logger.info("persisted pending %s of tenant %r", "delete" if entry is _DELETE else "write", tenant_id)

    def pending_ids(self) -> set[str]:
        """Tenant ids whose latest write has not reached Redis yet."""
        with self._lock:
            return set(self._pending)

    # -- entries ------------------------------------------------------------------------------

    def key(self, tenant_id: str) -> str:
        """The Redis key of a tenant."""
        return self.prefix + validate_tenant_id(tenant_id)

    def encode(self, config: TenantConfig) -> dict[str, Any]:
        """The JSON object stored for ``config``: secret fields sealed when a key is set."""
        return self._codec.seal(config.to_dict(), config.SECRET_FIELDS)

    def decode(self, tenant_id: str, raw: str) -> C:
        """Parse a stored value; any defect is a ``CorruptEntry`` naming the tenant."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise CorruptEntry(
                f"tenant {tenant_id!r}: stored value in {self.key(tenant_id)} is not valid JSON"
            ) from None
        if not isinstance(data, dict):
            raise CorruptEntry(f"tenant {tenant_id!r}: stored value in {self.key(tenant_id)} is not a JSON object")
        data = self._codec.open(data, self._config_type.SECRET_FIELDS, tenant_id=tenant_id)
        if data.get("tenant_id", tenant_id) != tenant_id:
            raise CorruptEntry(
                f"tenant {tenant_id!r}: stored tenant_id {shown(data.get('tenant_id'))} does not match its key"
            )
        data["tenant_id"] = tenant_id
        try:
            return self._config_type.from_dict(data)
        except InvalidInput as exc:
            raise CorruptEntry(f"tenant {tenant_id!r}: stored entry is invalid: {exc}") from None

    def get(self, tenant_id: str) -> C | None:
        """The stored config of ``tenant_id``, or None when there is none.

        Raises ``StoreUnavailable`` when Redis is down and ``CorruptEntry`` for a bad entry.
        """
        key = self.key(tenant_id)
        with self._lock:
            if tenant_id in self._pending:
                # Redis lags behind this process: answer with what it will hold after the flush.
                entry = self._pending[tenant_id]
                return None if entry is _DELETE else self.decode(tenant_id, json.dumps(entry))
            down = self._available is False
        if down:
            raise StoreUnavailable("Redis is unavailable")
        raw = self._call(self._client.get, key)
        return None if raw is None else self.decode(tenant_id, raw)

    def put(self, config: TenantConfig) -> bool:
        """Write ``config``; False when Redis is down and the write is queued for later."""
        return self._write(config.tenant_id, self.encode(config))

    def delete(self, tenant_id: str) -> bool:
        """Delete the entry; False when Redis is down and the delete is queued for later."""
        return self._write(tenant_id, _DELETE)

    def _write(self, tenant_id: str, entry: dict[str, Any] | None) -> bool:
        key = self.key(tenant_id)
        with self._lock:
            if self._available is False:
                self._pending[tenant_id] = entry
                return False
            # Earlier queued writes for this tenant are superseded by this one.
            self._pending.pop(tenant_id, None)
        try:
            if entry is _DELETE:
                self._call(self._client.delete, key)
            else:
                self._call(self._client.set, key, json.dumps(entry))
        except StoreUnavailable:
            with self._lock:
                self._pending[tenant_id] = entry
            return False
        self._announce(tenant_id)
        return True

    # -- change announcements -----------------------------------------------------------------

    def _announce(self, tenant_id: str) -> None:
        """Tell other processes that ``tenant_id`` changed (best effort: they also resync on reconnect)."""
        try:
            self._client.publish(self.channel, json.dumps({"tenant_id": tenant_id, "origin": self._origin}))
        except _REDIS_ERRORS:
            logger.debug("could not announce a change of tenant %r", tenant_id)

    def watch(self, on_change: Callable[[str | None], None]) -> None:
        """Call ``on_change(tenant_id)`` when another process changes a tenant, from a daemon thread.

        ``on_change(None)`` means "changes may have been missed" (first subscription after an
        outage): the receiver should compare everything it holds with Redis.
        """
        with self._lock:
            if self._watch_thread is not None:
                return
            self._watch_thread = threading.Thread(
                target=self._watch_loop, args=(on_change,), name="tenant-store-watch", daemon=True
            )
        self._watch_thread.start()

    def _watch_loop(self, on_change: Callable[[str | None], None]) -> None:
        delay, missed = 0.25, False
        while not self._closed.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                if missed:
                    on_change(None)
                delay, missed = 0.25, False
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._dispatch(message.get("data"), on_change)
            except (*_REDIS_ERRORS, OSError):
                missed = True
                self._closed.wait(delay)
                delay = min(delay * 2, self._max_backoff)
            finally:
                try:
                    pubsub.close()
                except (*_REDIS_ERRORS, OSError):
                    pass

    def _dispatch(self, data: Any, on_change: Callable[[str | None], None]) -> None:
        try:
            event = json.loads(data)
            tenant_id = validate_tenant_id(event["tenant_id"])
        except (ValueError, TypeError, KeyError, InvalidInput):
            logger.warning("ignoring a malformed message on %s", self.channel)
            return
        if event.get("origin") != self._origin:
            try:
                on_change(tenant_id)
            except Exception:  # the watcher must survive a failing receiver
                logger.exception("handling a change of tenant %r failed", tenant_id)

    def ids(self) -> set[str]:
        """Every tenant id stored in Redis (SCAN; keys only), with this process's pending writes applied."""
        keys = self._call(lambda: list(self._client.scan_iter(match=self.prefix + "*", count=_SCAN_BATCH)))
        ids = {key[len(self.prefix) :] for key in keys}
        with self._lock:
            pending = dict(self._pending)
        for tenant_id, entry in pending.items():
            (ids.discard if entry is _DELETE else ids.add)(tenant_id)
        return ids

    def load_all(self) -> tuple[dict[str, C], dict[str, CorruptEntry]]:
        """Every stored config, and an error for each entry that could not be read."""
        return self.load_many(self.ids())

    def load_many(self, tenant_ids: Iterable[str]) -> tuple[dict[str, C], dict[str, CorruptEntry]]:
        """The stored configs of ``tenant_ids`` (MGET in batches); missing ones are left out."""
        configs: dict[str, C] = {}
        errors: dict[str, CorruptEntry] = {}
        with self._lock:
            pending = dict(self._pending)
        wanted = sorted(tenant_ids)
        for tenant_id in wanted:
            if tenant_id in pending and pending[tenant_id] is not _DELETE:
                # Writes this process still owes Redis win over what Redis holds.
                configs[tenant_id] = self.decode(tenant_id, json.dumps(pending[tenant_id]))
        remote = [tid for tid in wanted if tid not in pending]
        for start in range(0, len(remote), _SCAN_BATCH):
            batch = remote[start : start + _SCAN_BATCH]
            values = self._call(self._client.mget, [self.prefix + tid for tid in batch])
            for tenant_id, raw in zip(batch, values, strict=True):
                if raw is None:
                    continue  # deleted between SCAN and MGET
                try:
                    validate_tenant_id(tenant_id)
                    configs[tenant_id] = self.decode(tenant_id, raw)
                except InvalidInput:
                    errors[tenant_id] = CorruptEntry(f"key {shown(self.prefix + tenant_id)} holds no valid tenant id")
                except CorruptEntry as exc:
                    errors[tenant_id] = exc
        return configs, errors

    def reseal(self, tenant_id: str) -> bool:
        """Re-encrypt one entry's secrets with the current (first) key; False when already current.

        The entry is replaced whole in a WATCH/MULTI transaction, so a concurrent write is never
        overwritten with stale data and an interrupted rotation leaves every entry readable.
        """
        key = self.key(tenant_id)
        fields = self._config_type.SECRET_FIELDS
        while True:
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return False
                    data = json.loads(raw)
                    if self._codec.is_sealed_with_current(data, fields):
                        return False
                    resealed = self._codec.seal(self._codec.open(data, fields, tenant_id=tenant_id), fields)
                    pipe.multi()
                    pipe.set(key, json.dumps(resealed))
                    pipe.execute()
                    return True
            except redis.exceptions.WatchError:
                continue  # written meanwhile: read it again
            except ValueError:
                raise CorruptEntry(f"tenant {tenant_id!r}: stored value in {key} is not valid JSON") from None
            except _REDIS_ERRORS as exc:
                raise StoreUnavailable(f"Redis is unavailable: {redact(str(exc))}") from None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis call, turning Redis failures into ``StoreUnavailable``."""
        try:
            result = fn(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            # Redis answered, so it is up: a refusal (ACL, wrong type) is not an outage.
            raise StoreUnavailable(f"Redis refused the command: {redact(str(exc))}") from None
        except _REDIS_ERRORS as exc:
            self._mark_down(exc)
            raise StoreUnavailable(f"Redis is unavailable: {redact(str(exc)) or type(exc).__name__}") from None
        if self._available is not True:
            self._mark_up()
        return result

    def close(self) -> None:
        """Stop retrying and close the Redis connections. Pending writes are lost, with a warning."""
        self._closed.set()
        with self._lock:
            threads = [t for t in (self._retry_thread, self._watch_thread) if t is not None]
            self._retry_thread = self._watch_thread = None
            lost = sorted(self._pending)
        for thread in threads:
            thread.join(timeout=5)
        if lost:
            logger.warning("closing with %d tenant write(s) never persisted to Redis: %s", len(lost), ", ".join(lost))
        self._client.close()
