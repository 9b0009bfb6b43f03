"""The audit trail: one record per tool call, in a Redis stream and on the ``mcp_tenants.audit`` logger.

``record`` never blocks and never fails the call: it appends the record to a bounded queue and
returns (no formatting, no lock, no I/O on the caller's path). One writer thread drains the
queue every ``POLL_S`` seconds, writes one JSON line per record on the logger, and appends the
records to ``mcp:{server}:audit`` with pipelined ``XADD ... MAXLEN ~ N``. While Redis is down the
records wait in a bounded buffer and are flushed, oldest first, once it answers again; what does
not fit is dropped, counted (``dropped``) and logged.

Concurrency: the queue (a ``deque``: append and popleft are atomic) is the only thing callers and
the writer share; the writer alone owns the buffer; ``_dropped`` is guarded by ``_lock``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import redis

logger = logging.getLogger(__name__)
audit_logger = logging.getLogger("mcp_tenants.audit")

#: The fields of a record, in the order they are written; others are kept after these.
FIELDS = ("time", "principal", "kind", "tenant", "tool", "subject", "outcome", "error", "duration_ms", "rows", "bytes")
NUMERIC = frozenset({"duration_ms", "rows", "bytes"})
SUBJECT_MAX_BYTES = 2048
#: Every other string field is cut too: a caller chooses the tool name (an unknown one is recorded
#: as sent) and an OAuth ``sub``, and a record must stay small whatever they send.
FIELD_MAX_BYTES = {"tool": 128, "principal": 256, "kind": 32, "tenant": 64, "outcome": 32, "error": 128}
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError)
#: How often the writer looks for new records (they reach Redis within about this long).
POLL_S = 0.1


def stream_key(server: str) -> str:
    """The Redis stream of a server's audit trail."""
    return f"mcp:{server}:audit"


def cut(text: str, limit: int = SUBJECT_MAX_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, marked with "..." when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def iso(epoch: float) -> str:
    """A time as UTC ISO 8601 with milliseconds."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Writes audit records off the hot path; a context manager (``start`` / ``close``)."""

    def __init__(
        self,
        client: redis.Redis | None,
        server: str,
        *,
        max_len: int = 100_000,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        redact: Callable[[str], str] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.key = stream_key(server)
        self._client = client
        self._max_len = max_len
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._redact = redact or _global_redact()
        self._max_backoff = max_backoff
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    # -- callers ------------------------------------------------------------------------------

    def record(self, **fields: Any) -> None:
        """Queue one record (``time`` is added when missing). Never blocks, never raises."""
        self._put(fields)

    def _put(self, fields: dict[str, Any]) -> None:
        if "time" not in fields:
            fields["time"] = time.time()
        # Check, then append: racing callers may overshoot the cap by a few, which is harmless.
        if len(self._queue) >= self._buffer_size:
            with self._lock:
                self._dropped += 1
            return
        self._queue.append(fields)

    def call_started(self, tool: str) -> None:
        """The core's ``CallObserver``: nothing to record before a call."""

    def call_finished(self, record: Mapping[str, Any]) -> None:
        """The core's ``CallObserver``: queue the record of a finished call."""
        self._put(dict(record))

    @property
    def dropped(self) -> int:
        """Records lost so far (queue or buffer full while Redis was down)."""
        with self._lock:
            return self._dropped

    @property
    def queued(self) -> int:
        """Records waiting for the writer (approximate)."""
        return len(self._queue)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> AuditLog:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> AuditLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (one last try at Redis), then stop the writer."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout)

    # -- the writer thread --------------------------------------------------------------------

    def _prepare(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Order the fields, cut the subject, mask every known secret in every string."""
        if isinstance(fields.get("time"), (int, float)):
            fields = {**fields, "time": iso(fields["time"])}
        ordered = {name: fields[name] for name in FIELDS if fields.get(name) is not None}
        ordered.update({k: v for k, v in fields.items() if k not in ordered and v is not None})
        for name, value in ordered.items():
            if isinstance(value, str):
                ordered[name] = cut(value, FIELD_MAX_BYTES.get(name, SUBJECT_MAX_BYTES))
        return {k: self._redact(v) if isinstance(v, str) else v for k, v in ordered.items()}

    def _run(self) -> None:
        buffer: deque[dict[str, Any]] = deque()
        delay, retry_at, down = 0.25, 0.0, False
        reported, reported_at = 0, 0.0
        while True:
            stopping = self._stopping  # read before draining: what was queued before close() is kept
            if not self._queue and not stopping:
                self._wake.wait(POLL_S)
            items: list[dict[str, Any]] = []
            while self._queue and len(items) < self._batch_size:
                items.append(self._queue.popleft())
            for item in items:
                try:
                    entry = self._prepare(item)
                    audit_logger.info("%s", json.dumps(entry, default=str, ensure_ascii=False))
                except Exception:  # one bad record must not stop the trail
                    logger.exception("audit: could not write a record")
                    continue
                if len(buffer) < self._buffer_size:
                    buffer.append(entry)
                else:
                    with self._lock:
                        self._dropped += 1
            final = stopping and not self._queue  # at close: one last try once everything is drained
            due = final or (not stopping and time.monotonic() >= retry_at)
            if buffer and self._client is not None and due:
                try:
                    self._flush(buffer)
                except (*_REDIS_ERRORS, OSError) as exc:
                    retry_at, delay = time.monotonic() + delay, min(delay * 2, self._max_backoff)
                    if not down:
                        down = True
                        logger.warning(
                            "audit: Redis is unavailable (%s); keeping up to %d records in memory",
                            type(exc).__name__,
                            self._buffer_size,
                        )
                else:
                    if down:
                        logger.info("audit: Redis is reachable again; queued records written")
                    down, delay, retry_at = False, 0.25, 0.0
            elif self._client is None:
                buffer.clear()
            dropped = self.dropped
            if dropped > reported and (final or time.monotonic() - reported_at >= 10.0):
                logger.warning("audit: %d record(s) dropped so far (no room while Redis was unavailable)", dropped)
                reported, reported_at = dropped, time.monotonic()
            if final:
                break
        if buffer:
            logger.warning("audit: %d record(s) not written to Redis at shutdown", len(buffer))

    def _flush(self, buffer: deque[dict[str, Any]]) -> None:
        """Append the buffered records to the stream, a batch per round trip; raise on a Redis error."""
        assert self._client is not None
        while buffer:
            batch = [buffer[i] for i in range(min(self._batch_size, len(buffer)))]
            pipe = self._client.pipeline(transaction=False)
            for entry in batch:
                pipe.xadd(self.key, _stream_fields(entry), maxlen=self._max_len, approximate=True)
            pipe.execute()
            for _ in batch:
                buffer.popleft()


def _stream_fields(entry: dict[str, Any]) -> dict[Any, Any]:
    """A record as stream field values (strings; None left out)."""
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in entry.items()}


def from_stream(fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry's fields back as a record (numbers as numbers)."""
    record: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
        if key in NUMERIC:
            with contextlib.suppress(TypeError, ValueError):
                value = json.loads(value)
        record[key] = value
    return record


def _global_redact() -> Callable[[str], str]:
    from mcp_tenants.config import redact

    return redact
