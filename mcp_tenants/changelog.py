"""The tenant change log: a capped Redis stream beside the pub/sub announcements.

Pub/sub delivers a change at once, but only to a subscriber that is listening: an announcement
sent to a half-open subscription (noticed only by the 30 s health check) or while a process
resubscribes is lost for good. So every write to a tenant also appends an entry (the tenant id
and the writer's origin) to the stream ``mcp:{server}:tenant-changes``, in the same MULTI as the
write: Redis never holds a change without its entry. Each process reads the entries after the
last one it has handled, twice a second (``storewatch.py``), and so catches up within a second
whatever pub/sub did.

The stream is capped (``XADD MAXLEN ~``). A reader whose last entry is no longer there (trimmed
while the process was cut off for longer than the stream holds, or lost with Redis's data) may
have missed anything: ``read_after`` says so, and the process compares everything with Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import NEVER_DECODE

from mcp_tenants.config import validate_tenant_id
from mcp_tenants.errors import InvalidInput
from mcp_tenants.redisfaults import reason, without_pipeline_note

logger = logging.getLogger(__name__)

#: Entries the stream keeps (about that many: Redis trims whole nodes). An entry is about 100
#: bytes, so ~1 MB: far more changes than a fleet makes while one process is cut off for a while.
MAX_LEN = 10_000
#: Entries read per XRANGE.
_BATCH = 500
#: Read entries as bytes even on a client that decodes: one entry that is not UTF-8 must not
#: fail the whole reply, nor every later read.
_RAW = {NEVER_DECODE: True}


@dataclass(frozen=True)
class Change:
    """One entry of the log: ``tenant_id`` was written by the process ``origin``."""

    id: str
    tenant_id: str
    origin: str


def entry_order(entry_id: str) -> tuple[int, int] | None:
    """The sort key of a stream entry id (``"1700000000000-3"``), or None when it is none."""
    ms, _, seq = entry_id.partition("-")
    if not all(part.isascii() and part.isdigit() and len(part) <= 20 for part in (ms, seq)):
        return None  # anything else, from anyone who can publish: never an exception
    return int(ms), int(seq)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _strict(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ChangeLog:
    """Appends to and reads the change log of one server's tenants.

    Thread-safe: no state besides the client, whose connection pool is thread-safe.
    """

    def __init__(self, client: redis.Redis, key: str, *, max_len: int = MAX_LEN) -> None:
        self._client = client
        self.key = key
        self.max_len = max_len

    def append(self, pipe: redis.client.Pipeline, tenant_id: str, origin: str) -> None:
        """Queue the entry of a change on ``pipe``, the MULTI that makes it; its reply is the entry's id."""
        pipe.xadd(self.key, {"tenant_id": tenant_id, "origin": origin}, maxlen=self.max_len, approximate=True)

    def appended(self, tenant_id: str, reply: Any) -> str | None:
        """The id of the entry from ``append``'s reply; None (logged) when Redis refused it."""
        if not isinstance(reply, redis.RedisError):
            return _text(reply)
        # MULTI has no rollback: the write stands, only the log misses it.
        logger.error(
            "tenant %r was written, but Redis refused its entry in the change log %s (%s); other "
            "processes learn of this change through pub/sub only; if that key is no stream, delete it",
            tenant_id,
            self.key,
            reason(without_pipeline_note(reply)),
        )
        return None

    def anchor(self, origin: str) -> str:
        """The id of the newest entry, where a reader starts; raises redis-py's errors.

        An empty stream first gets an entry that names no tenant (readers skip it): a reader
        always starts on a real entry, so it always notices when entries after it were trimmed.
        """
        newest = self._client.execute_command("XREVRANGE", self.key, "+", "-", "COUNT", 1, **_RAW)
        if newest:
            return _text(newest[0][0])
        return _text(self._client.xadd(self.key, {"origin": origin}, maxlen=self.max_len, approximate=True))

    def read_after(self, last: str) -> tuple[list[Change], str] | None:
        """The changes after entry ``last`` and the id of the newest entry read (``last`` when none).

        None when entry ``last`` is gone: entries after it may have been trimmed unread.
        Raises redis-py's errors.
        """
        changes: list[Change] = []
        while True:
            # Inclusive of ``last``: finding it first proves nothing after it was trimmed.
            reply = self._client.execute_command("XRANGE", self.key, last, "+", "COUNT", _BATCH + 1, **_RAW)
            if not reply or _text(reply[0][0]) != last:
                return None
            for entry_id, fields in reply[1:]:
                last = _text(entry_id)
                change = self._parse(last, fields)
                if change is not None:
                    changes.append(change)
            if len(reply) <= _BATCH:
                return changes, last

    def _parse(self, entry_id: str, fields: Any) -> Change | None:
        """A change from an entry written by anyone; None for an anchor or a malformed entry."""
        try:
            named = {_text(name): value for name, value in fields.items()}
            if "tenant_id" not in named:
                return None  # an anchor (see ``anchor``)
            tenant_id = validate_tenant_id(_strict(named["tenant_id"]))
            origin = _strict(named.get("origin", ""))
        except (AttributeError, UnicodeDecodeError, InvalidInput):
            logger.warning("ignoring a malformed entry %s in %s", entry_id, self.key)
            return None
        return Change(entry_id, tenant_id, origin)
