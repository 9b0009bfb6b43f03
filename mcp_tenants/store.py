"""TenantStore: tenant configs persisted in Redis, one JSON value per tenant.

Keys are ``mcp:{server}:tenant:{tenant_id}``; values are the config as a JSON object, secret
fields sealed when a key is configured (``entries.py``). Enumeration uses SCAN, never KEYS.
Values are read as bytes and decoded one by one, so one bad value never fails a batch.

Every write also appends the tenant id to the change log ``mcp:{server}:tenant-changes`` in the
same MULTI, then is announced on pub/sub; ``watch`` delivers both to the registry
(``changelog.py``, ``storewatch.py``).

Redis may fail at any time (``redisfaults.py``). An outage (no connection, or a Redis that is out
of memory, read-only, loading...) queues writes, which ``WriteBack`` retries until Redis takes
them, so nothing registered meanwhile is lost; ``put`` then returns False. A refusal (ACL,
credentials) fails the call at once with ``StoreRefused``. While Redis is unreachable, reads fail
at once instead of each waiting for a connect timeout.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import redis
from redis.client import NEVER_DECODE

from mcp_tenants.changelog import ChangeLog
from mcp_tenants.config import TenantConfig, validate_tenant_id
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.entries import EntryCodec, changes_key, events_channel, key_label, key_prefix
from mcp_tenants.errors import CorruptEntry, InvalidInput, StoreRefused, StoreUnavailable
from mcp_tenants.redisconn import make_redis_client
from mcp_tenants.redisfaults import is_outage, is_unreachable, reason, refusal_hint, reply_code, without_pipeline_note
from mcp_tenants.settings import RedisSettings
from mcp_tenants.storewatch import ChangeWatcher
from mcp_tenants.writeback import Entry, WriteBack

__all__ = ["TenantStore", "events_channel", "key_prefix", "make_redis_client"]

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TenantConfig)

_SCAN_BATCH = 500
#: A pending delete (a pending put holds the entry itself).
_DELETE = None
#: Read values as bytes even on a client that decodes: one value that is not UTF-8 must not
#: fail the whole reply.
_RAW = {NEVER_DECODE: True}
#: Longest a read waits for the change watcher to find its place in the change log (see ``_read``).
_POSITION_WAIT = 10.0
#: How long a write waits for a replica to confirm it (under Sentinel).
_REPLICA_WAIT_MS = 1000


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class TenantStore(Generic[C]):
    """Reads and writes one server's tenant entries in Redis; nothing else.

    Thread-safe: the state lives in ``WriteBack`` (lock-protected) and redis-py's client has its
    own thread-safe connection pool.
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
        background: bool = True,
    ) -> None:
        self.settings = settings
        self.entries = EntryCodec(server, config_type, codec)
        self.prefix = self.entries.prefix
        self.channel = events_channel(server)
        # Tells this process's own announcements apart from other processes'.
        self._origin = uuid.uuid4().hex
        self._codec = codec
        self._client = client if client is not None else make_redis_client(settings)
        self.changes = ChangeLog(self._client, changes_key(server))
        self._keys = f"{self.prefix}* and {self.changes.key}"  # what a write needs, for messages
        self._max_backoff = max_backoff
        # background=False (the CLI): no retry thread and no queue; a failed write raises.
        self._queue = WriteBack(
            f"Redis at {settings.describe()}",
            self._keys,
            ping=self._client.ping,
            send=self._send,
            max_backoff=max_backoff,
            background=background,
        )
        self._background = background
        self._watcher: ChangeWatcher | None = None

    # -- availability -------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """True while Redis answers and takes writes."""
        return self._queue.writing

    def connect(self) -> bool:
        """Ping Redis once; on failure log a warning and keep retrying in the background."""
        try:
            self.ping()
        except StoreUnavailable:
            return False
        return True

    def ping(self) -> None:
        """Ping Redis once; raise ``StoreUnavailable`` naming Redis and the reason when it does not answer."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            if not is_outage(exc):
                error = self._refusal(exc, "accept this client")
                if self._background:  # a server logs it; the CLI prints what it raises
                    logger.error("%s", error)
                raise error from None
            self._queue.went_down(exc)
            raise StoreUnavailable(f"cannot reach Redis at {self.settings.describe()}: {reason(exc)}") from None
        self._queue.answered()

    def _refusal(self, exc: redis.RedisError, action: str) -> StoreRefused:
        return StoreRefused(
            f"Redis at {self.settings.describe()} refused to {action}: {reason(exc)}; {refusal_hint(exc, self._keys)}",
            reply_code(exc),
        )

    def pending_ids(self) -> set[str]:
        """Tenant ids whose latest write has not reached Redis (queued, or refused by Redis)."""
        return self._queue.unpersisted()

    # -- entries ------------------------------------------------------------------------------

    def key(self, tenant_id: str) -> str:
        """The Redis key of a tenant."""
        return self.entries.key(tenant_id)

    def encode(self, config: TenantConfig) -> dict[str, Any]:
        """The JSON object stored for ``config``: secret fields sealed when a key is set."""
        return self.entries.encode(config)

    def decode(self, tenant_id: str, raw: bytes | str) -> C:
        """Parse a stored value; any defect is a ``CorruptEntry`` naming the tenant."""
        return self.entries.decode(tenant_id, raw)

    def get(self, tenant_id: str) -> C | None:
        """The stored config of ``tenant_id``, or None when there is none.

        Raises ``StoreUnavailable`` when Redis is down and ``CorruptEntry`` for a bad entry.
        """
        key = self.key(tenant_id)
        pending = self._queue.pending()
        if tenant_id in pending:
            # Redis lags behind this process: answer with what it will hold after the flush.
            entry = pending[tenant_id]
            return None if entry is _DELETE else self.entries.decode(tenant_id, entry)
        try:
            raw = self._read(self._client.execute_command, "GET", key, **_RAW)
        except StoreRefused as exc:
            if exc.code == "WRONGTYPE":
                raise self._wrong_type(tenant_id) from None
            raise
        return None if raw is None else self.entries.decode(tenant_id, raw)

    def _wrong_type(self, tenant_id: str) -> CorruptEntry:
        try:
            kind = _text(self._client.type(self.key(tenant_id)))
        except redis.RedisError:
            kind = "another type"
        return self.entries.corrupt(tenant_id, f"is a Redis {kind}, not a string")

    def put(self, config: TenantConfig, *, queue: bool = True) -> bool:
        """Write ``config``: True when Redis has it; False when an outage queued it for later.

        ``queue=False`` (and a store without background retries) raises ``StoreUnavailable``
        instead of queueing; a refusal always raises ``StoreRefused``.
        """
        return self._write(config.tenant_id, self.encode(config), queue=queue)

    def delete(self, tenant_id: str, *, queue: bool = True) -> bool:
        """Delete the entry (of any Redis type); True or False as for ``put``."""
        return self._write(tenant_id, _DELETE, queue=queue)

    def _write(self, tenant_id: str, entry: Entry, *, queue: bool) -> bool:
        self.key(tenant_id)  # validates the id before Redis is touched
        queue = queue and self._background
        if queue and self._queue.hold(tenant_id, entry):
            return False
        try:
            self._send(tenant_id, entry)
        except redis.RedisError as exc:
            action = f"{'delete' if entry is _DELETE else 'store'} tenant {tenant_id!r}"
            if not is_outage(exc):
                raise self._refusal(exc, action) from None
            if not queue:
                if is_unreachable(exc):
                    self._queue.went_down(exc)
                raise StoreUnavailable(
                    f"Redis at {self.settings.describe()} could not {action}: {reason(exc)}; nothing was changed"
                ) from None
            self._queue.enqueue(tenant_id, entry)
            self._queue.went_down(exc, writes_only=not is_unreachable(exc))
            return False
        self._queue.sent(tenant_id)
        self._queue.answered()
        return True

    def _send(self, tenant_id: str, entry: Entry) -> None:
        """One write to Redis with its change-log entry (one MULTI), then its announcement.

        Under Sentinel, when the master has replicas, a write counts only once one of them has
        it too (``WAIT``, on the connection that wrote, in the same round trip): the master may
        be replaced at any moment, and what only it held is then gone. Raises redis-py's errors
        as they are (without the pipeline's note, which quotes the value).
        """
        key = self.key(tenant_id)
        confirm = self.settings.sentinel_master is not None and self._master_has_replicas()
        # To confirm, MULTI and EXEC are sent by hand, so that WAIT follows on the same connection.
        with self._client.pipeline(transaction=not confirm) as pipe:
            if confirm:
                pipe.execute_command("MULTI")
            if entry is _DELETE:
                pipe.delete(key)
            else:
                pipe.set(key, json.dumps(entry))
            self.changes.append(pipe, tenant_id, self._origin)
            if confirm:
                pipe.execute_command("EXEC")
                pipe.execute_command("WAIT", 1, _REPLICA_WAIT_MS)
            try:
                answers = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:  # nothing was written (EXECABORT, or no answer)
                raise without_pipeline_note(exc) from None
        if confirm:
            done, confirmed = answers[-2], answers[-1]
            if isinstance(done, redis.RedisError):
                raise without_pipeline_note(done)  # EXECABORT: nothing was written
            written, logged = done
        else:
            written, logged = answers
        if isinstance(written, redis.RedisError):
            raise without_pipeline_note(written)
        if confirm and (isinstance(confirmed, redis.RedisError) or int(confirmed) < 1):
            # The write stands on the master; it is queued and sent again (the same value, so
            # twice is harmless) until a replica confirms it or a new master has it.
            raise redis.exceptions.ConnectionError(
                f"no replica confirmed the write within {_REPLICA_WAIT_MS} ms (a failover would lose it)"
            )
        self._announce(tenant_id, self.changes.appended(tenant_id, logged))

    def _master_has_replicas(self) -> bool:
        """True when the master streams to at least one replica (``ROLE``); a master alone can
        only be as durable as itself, and a WAIT there would only wait out its timeout."""
        role = self._client.execute_command("ROLE")
        return isinstance(role, list) and len(role) > 2 and bool(role[2])

    def _read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one reading Redis call: fail fast while Redis is unreachable; errors become ours.

        Until the change watcher has found its place in the change log (a moment after start), a
        read waits for it: a change made after the read is then always after that place.
        """
        if self._watcher is not None and not self._watcher.positioned.is_set():
            self._watcher.positioned.wait(_POSITION_WAIT)
        if self._queue.reachable is False:
            raise StoreUnavailable(f"Redis at {self.settings.describe()} is unavailable")
        try:
            result = fn(*args, **kwargs)
        except redis.RedisError as exc:
            if is_unreachable(exc):
                self._queue.went_down(exc)
                raise StoreUnavailable(f"Redis at {self.settings.describe()} is unavailable: {reason(exc)}") from None
            if is_outage(exc):  # e.g. BUSY on a read: no reason to hold writes
                raise StoreUnavailable(f"Redis at {self.settings.describe()} is busy: {reason(exc)}") from None
            raise self._refusal(exc, "read tenants") from None
        if self._queue.reachable is not True:
            self._queue.answered()
        return result

    # -- change announcements -----------------------------------------------------------------

    def _announce(self, tenant_id: str, entry_id: str | None) -> None:
        """Tell other processes at once that ``tenant_id`` changed (best effort: the change log
        brings it within a second anyway); ``entry_id`` is the change's entry in the log."""
        message = {"tenant_id": tenant_id, "origin": self._origin, "id": entry_id}
        try:
            self._client.publish(self.channel, json.dumps(message))
        except redis.RedisError:
            logger.debug("could not announce a change of tenant %r", tenant_id)

    def watch(self, on_change: Callable[[str | None], None]) -> None:
        """Call ``on_change(tenant_id)`` when another process changes a tenant, from a daemon thread.

        Within a second, whatever happens to the pub/sub subscription (``storewatch.py``).
        ``on_change(None)`` means "changes may have been missed": the receiver should compare
        everything it holds with Redis, and raise ``StoreUnavailable`` when it could not (it is
        then asked again).
        """
        if self._watcher is not None:
            return
        self._watcher = ChangeWatcher(
            self._client,
            self.channel,
            self._origin,
            on_change,
            log=self.changes,
            max_backoff=self._max_backoff,
        )
        self._watcher.thread.start()

    # -- enumeration ----------------------------------------------------------------------------

    def scan(self) -> tuple[set[str], dict[str, bytes]]:
        """(every stored tenant id, with this process's pending writes applied; keys under the
        prefix that hold no valid tenant id, by printable label → raw key)."""
        prefix = self.prefix.encode()
        ids: set[str] = set()
        strange: dict[str, bytes] = {}
        cursor: int | bytes = 0
        while True:
            cursor, keys = self._read(
                self._client.execute_command, "SCAN", cursor, "MATCH", prefix + b"*", "COUNT", _SCAN_BATCH, **_RAW
            )
            for key in keys:
                suffix = key[len(prefix) :]
                try:
                    ids.add(validate_tenant_id(suffix.decode("utf-8")))
                except (UnicodeDecodeError, InvalidInput):
                    strange[key_label(suffix)] = key
            if int(cursor) == 0:
                break
        for tenant_id, entry in self._queue.pending().items():
            (ids.discard if entry is _DELETE else ids.add)(tenant_id)
        return ids, strange

    def ids(self) -> set[str]:
        """Every tenant id stored in Redis (SCAN; keys only), with this process's pending writes applied."""
        return self.scan()[0]

    def strange_key_errors(self, strange: dict[str, bytes]) -> dict[str, CorruptEntry]:
        """An error for each key under the prefix whose name is no tenant id."""
        return {
            label: CorruptEntry(
                f"key {self.prefix}{label} is not a tenant entry (its name is no valid tenant id); "
                f"remove it with `mcp-tenants remove '{label}'`"
            )
            for label in strange
        }

    def delete_strange_key(self, label: str) -> bool:
        """Delete the key under the prefix that ``scan`` labels ``label``; False when there is none."""
        key = self.scan()[1].get(label)
        if key is None:
            return False
        try:
            self._client.delete(key)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis at {self.settings.describe()}: {reason(exc)}") from None
        return True

    def load_all(self) -> tuple[dict[str, C], dict[str, CorruptEntry]]:
        """Every stored config, and an error for each entry that could not be read."""
        ids, strange = self.scan()
        configs, errors = self.load_many(ids)
        return configs, {**errors, **self.strange_key_errors(strange)}

    def load_many(self, tenant_ids: Iterable[str]) -> tuple[dict[str, C], dict[str, CorruptEntry]]:
        """The stored configs of ``tenant_ids`` (MGET in batches); missing ones are left out."""
        configs: dict[str, C] = {}
        errors: dict[str, CorruptEntry] = {}
        pending = self._queue.pending()
        wanted = sorted(tenant_ids)
        for tenant_id in wanted:
            entry = pending.get(tenant_id, _DELETE)
            if entry is not _DELETE:
                # Writes this process still owes Redis win over what Redis holds.
                configs[tenant_id] = self.entries.decode(tenant_id, entry)
        remote = [tid for tid in wanted if tid not in pending]
        for start in range(0, len(remote), _SCAN_BATCH):
            batch = remote[start : start + _SCAN_BATCH]
            values = self._read(self._client.execute_command, "MGET", *(self.key(tid) for tid in batch), **_RAW)
            absent = []
            for tenant_id, raw in zip(batch, values, strict=True):
                if raw is None:
                    absent.append(tenant_id)  # deleted since SCAN, or not a string
                    continue
                try:
                    configs[tenant_id] = self.entries.decode(tenant_id, raw)
                except CorruptEntry as exc:
                    errors[tenant_id] = exc
            errors.update(self._wrong_types(absent))
        return configs, errors

    def _wrong_types(self, tenant_ids: list[str]) -> dict[str, CorruptEntry]:
        """MGET answers nil for a key of another type: tell those apart from deleted ones."""
        if not tenant_ids:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for tenant_id in tenant_ids:
            pipe.type(self.key(tenant_id))
        kinds = self._read(pipe.execute)
        return {
            tid: self.entries.corrupt(tid, f"is a Redis {_text(kind)}, not a string")
            for tid, kind in zip(tenant_ids, kinds, strict=True)
            if _text(kind) not in ("none", "string")
        }

    def reseal(self, tenant_id: str) -> bool:
        """Re-encrypt one entry's secrets with the current (first) key; False when already current.

        The entry is replaced whole in a WATCH/MULTI transaction, so a concurrent write is never
        overwritten with stale data and an interrupted rotation leaves every entry readable.
        """
        key = self.key(tenant_id)
        fields = self.entries.config_type.SECRET_FIELDS
        while True:
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.watch(key)
                    raw = pipe.execute_command("GET", key, **_RAW)
                    if raw is None:
                        return False
                    config = self.entries.decode(tenant_id, raw)  # raises CorruptEntry
                    if self._codec.is_sealed_with_current(json.loads(raw), fields):
                        return False
                    data = self.entries.encode(config)
                    pipe.multi()
                    pipe.set(key, json.dumps(data))
                    pipe.execute()
                    return True
            except redis.exceptions.WatchError:
                continue  # written meanwhile: read it again
            except redis.RedisError as exc:
                raise StoreUnavailable(f"Redis at {self.settings.describe()}: {reason(exc)}") from None

    def close(self) -> None:
        """Stop the threads, make a last attempt at pending writes, close the connections."""
        if self._watcher is not None:
            self._watcher.close()
        self._queue.close()
        self._client.close()
