"""Redis clients for every part of the project: one factory, plain Redis or through Sentinel.

``make_redis_client`` returns a ``redis.Redis`` that fails fast (short timeouts, one retry). With
``REDIS_SENTINELS`` it is a client of redis-py's ``Sentinel``: each new connection asks the
sentinels where the master is, and a connection to a master that was demoted fails with a
``ConnectionError`` (redis-py turns READONLY into one), so callers see an outage, never a refusal.

Redis Sentinel alone leaves a gap: after a failover the old master keeps answering as a master
until a sentinel converts it (about ten seconds), and pooled connections would keep writing to
it; those writes vanish when it resyncs from the new master. A ``FailoverWatch`` closes the gap.
It listens to the sentinels' own event channels and, for the master it follows,

- on ``+selected-slave`` (a replica is about to be promoted) *fences* the pools: a new command
  fails at once with ``MasterChanging``, a ``ConnectionError``, so the tenant store queues the
  write and retries it, instead of sending it to a master that is about to stop being one;
- on ``+switch-master`` lifts the fence and drops every pooled connection, idle or in use
  (pub/sub ones included), so the next command connects to the new master;
- on ``-failover-abort-*`` lifts the fence.

A fence lasts ``FENCE_SECONDS`` at most, so a lost event never blocks Redis for good. One watch
(a daemon thread per sentinel) serves every client of a process that follows the same master.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from mcp_tenants.settings import RedisSettings

logger = logging.getLogger(__name__)

#: Longest time a fence holds commands back when the end of a failover is never announced.
FENCE_SECONDS = 15.0
#: Sentinel event channels that tell where a failover stands.
_CHANNELS = ("+selected-slave", "+switch-master")
_ABORTS = "-failover-abort-*"


class MasterChanging(redis.exceptions.ConnectionError):
    """The sentinels are replacing the Redis master: the command was not sent; retry shortly."""


def make_redis_client(settings: RedisSettings, *, timeout: float = 2.0) -> redis.Redis:
    """A Redis client that fails fast: short timeouts and a single retry; Sentinel when configured."""
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        "decode_responses": True,
        "health_check_interval": 30,
    }
    if settings.sentinels:
        return _sentinel_client(settings, options)
    kwargs = settings.client_kwargs()
    url = kwargs.pop("url", None)
    if url:
        return redis.Redis.from_url(url, username=settings.username, password=settings.password, **options)
    return redis.Redis(**kwargs, **options)


def _master_options(settings: RedisSettings) -> tuple[dict[str, Any], bool]:
    """Database, credentials and TLS options of the master (from ``REDIS_URL`` when set); TLS on?"""
    options: dict[str, Any] = {"db": settings.db, "username": settings.username, "password": settings.password}
    if not settings.url:
        return options, False
    parsed = parse_url(settings.url)
    tls = parsed.pop("connection_class", None) is SSLConnection
    for ignored in ("host", "port", "path"):  # the sentinels say where the master is
        parsed.pop(ignored, None)
    options.update(parsed)  # what the URL says wins, as it does without Sentinel (``from_url``)
    return options, tls


def _sentinel_client(settings: RedisSettings, options: dict[str, Any]) -> redis.Redis:
    master, tls = _master_options(settings)
    assert settings.sentinel_master is not None  # RedisSettings.from_env guarantees it
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": options["socket_connect_timeout"],
        "socket_timeout": options["socket_timeout"],
        "password": settings.sentinel_password,
        "retry": Retry(NoBackoff(), 0),  # the next sentinel in the list is the retry
    }
    if tls:
        sentinel_kwargs.update(ssl=True, **{k: v for k, v in master.items() if k.startswith("ssl_")})
    sentinel = Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_kwargs)
    watch = FailoverWatch.for_settings(settings, sentinel_kwargs)
    client = sentinel.master_for(
        settings.sentinel_master,
        redis_class=SentinelRedis,
        connection_pool_class=FollowingPool,
        ssl=tls,
        watch=watch,
        **master,
        **options,
    )
    assert isinstance(client, SentinelRedis)
    client.attach(sentinel, watch)
    return client


class FollowingPool(SentinelConnectionPool):
    """A Sentinel connection pool that a ``FailoverWatch`` can fence and re-point.

    Re-pointing never closes a connection under the thread using it (redis-py's connections are
    not thread-safe): ``drop_all`` only shuts the sockets down, so a blocked read ends with a
    clean "connection closed" error in its own thread, and an idle connection of an older
    generation is closed by the thread that takes it next, before use.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, *, watch: FailoverWatch, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.watch = watch
        self._generation = 0
        self._made: weakref.WeakSet[Any] = weakref.WeakSet()
        watch.add(self)

    def make_connection(self) -> Any:
        connection: Any = super().make_connection()
        connection.fleet_generation = self._generation
        self._made.add(connection)
        return connection

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.watch.fenced():
            raise MasterChanging(f"the Redis master {self.service_name!r} is being replaced; retry shortly")
        connection: Any = super().get_connection(*args, **kwargs)
        if getattr(connection, "fleet_generation", self._generation) != self._generation:
            connection.disconnect()  # it may point at the old master: connect afresh, through the sentinels
            connection.fleet_generation = self._generation
        return connection

    def drop_all(self) -> None:
        """Make every connection, idle or in use, reconnect through the sentinels."""
        self._generation += 1
        for connection in list(self._made):
            sock = getattr(connection, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class SentinelRedis(redis.Redis):
    """A master client whose ``close()`` also closes its sentinel connections and leaves the watch."""

    _sentinel: Sentinel | None = None
    _watch: FailoverWatch | None = None

    def attach(self, sentinel: Sentinel, watch: FailoverWatch) -> None:
        """Remember what ``close()`` must release besides the pool."""
        self._sentinel, self._watch = sentinel, watch

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._watch is not None:
                self._watch.remove(self.connection_pool)
            for client in self._sentinel.sentinels if self._sentinel is not None else ():
                client.close()


class FailoverWatch:
    """Follows one master's failovers through the sentinels' event channels (see the module doc).

    Thread-safety: ``_lock`` guards the pool set, the fence deadline and the thread list; pools
    are disconnected outside it (redis-py's pool has its own lock).
    """

    def __init__(
        self, key: tuple[Any, ...], master: str, sentinels: tuple[tuple[str, int], ...], kwargs: dict[str, Any]
    ) -> None:
        self._key = key
        self.master = master
        self._sentinels = sentinels
        self._kwargs = {**kwargs, "decode_responses": True, "socket_timeout": None}
        self._lock = threading.Lock()
        self._pools: weakref.WeakSet[FollowingPool] = weakref.WeakSet()
        self._fenced_until = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_settings(cls, settings: RedisSettings, sentinel_kwargs: dict[str, Any]) -> FailoverWatch:
        """The process's watch of this master through these sentinels (created on first use)."""
        assert settings.sentinel_master is not None
        key = (settings.sentinels, settings.sentinel_master, settings.sentinel_password, sentinel_kwargs.get("ssl"))
        with _WATCHES_LOCK:
            watch = _WATCHES.get(key)
            if watch is None:
                watch = _WATCHES[key] = cls(key, settings.sentinel_master, settings.sentinels, sentinel_kwargs)
            return watch

    # -- pools --------------------------------------------------------------------------------

    def add(self, pool: FollowingPool) -> None:
        """Start following for ``pool`` (and start the listener threads if they are not running)."""
        with self._lock:
            self._pools.add(pool)
            if self._threads:
                return
            self._stop = threading.Event()
            self._threads = [
                threading.Thread(
                    target=self._listen, args=(host, port, self._stop), name=f"redis-sentinel-{port}", daemon=True
                )
                for host, port in self._sentinels
            ]
            threads = list(self._threads)
        for thread in threads:
            thread.start()

    def remove(self, pool: Any) -> None:
        """Stop following for ``pool``; the last one out stops the listener threads."""
        with self._lock:
            self._pools.discard(pool)
            if self._pools:
                return
            self._stop.set()
            self._threads = []
        with _WATCHES_LOCK:
            if _WATCHES.get(self._key) is self:
                del _WATCHES[self._key]

    def fenced(self) -> bool:
        """True while a failover of the master is under way (commands must wait)."""
        return time.monotonic() < self._fenced_until

    # -- events -------------------------------------------------------------------------------

    def _listen(self, host: str, port: int, stop: threading.Event) -> None:
        """Subscribe to one sentinel's failover events until stopped; reconnect with backoff."""
        delay = 0.25
        while not stop.is_set():
            client = redis.Redis(host=host, port=port, **self._kwargs)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*_CHANNELS)
                pubsub.psubscribe(_ABORTS)
                delay = 0.25
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self.on_event(str(message["channel"]), str(message["data"]))
            except (redis.RedisError, OSError) as exc:
                logger.debug("sentinel %s:%d: %s; reconnecting in %.2f s", host, port, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass

    def on_event(self, channel: str, data: str) -> None:
        """React to one sentinel event (public for tests)."""
        words = data.split()
        if channel == "+switch-master":
            name = words[0] if words else ""
        elif "@" in words:  # "<role> <name> <ip> <port> @ <master name> <ip> <port>"
            name = words[words.index("@") + 1] if words.index("@") + 1 < len(words) else ""
        else:  # "master <name> <ip> <port>"
            name = words[1] if len(words) > 1 else ""
        if name != self.master:
            return
        if channel == "+selected-slave":
            with self._lock:
                self._fenced_until = time.monotonic() + FENCE_SECONDS
            logger.warning("Redis master %r is being replaced: holding Redis commands until it is done", name)
        elif channel == "+switch-master":
            with self._lock:
                self._fenced_until = 0.0
                pools = list(self._pools)
            for pool in pools:
                pool.drop_all()
            old, new = ":".join(words[1:3]), ":".join(words[3:5])
            logger.warning("Redis master %r moved from %s to %s; reconnecting", name, old, new)
        else:
            with self._lock:
                self._fenced_until = 0.0
            logger.warning("the failover of Redis master %r was aborted (%s)", name, channel)


#: One watch per (sentinels, master, credentials) in this process.
_WATCHES: dict[tuple[Any, ...], FailoverWatch] = {}
_WATCHES_LOCK = threading.Lock()
