"""A throwaway Redis Sentinel set-up: a master, a replica and 1-3 sentinels, on free ports.

Every process is a real ``redis-server`` (sentinels run as ``redis-server FILE --sentinel``) with
short timeouts, so a failover takes a second or two instead of half a minute. The master and the
replica share one password (either can become master); the sentinels have a password of their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from mcp_tenants.devservices.base import (
    LOOPBACK,
    ServiceUnavailable,
    free_ports,
    log_tail,
    pid_alive,
    stop_pid,
    wait_until,
)
from mcp_tenants.devservices.redis_service import RedisService

logger = logging.getLogger(__name__)


class SentinelProcess:
    """One ``redis-server --sentinel`` process; its config file lives in its own temp dir."""

    def __init__(self, port: int, master: str, monitor: tuple[str, int], quorum: int, auth: dict[str, str]) -> None:
        self.host = LOOPBACK
        self.port = port
        self.master = master
        self._monitor = monitor
        self._quorum = quorum
        self._auth = auth
        self.tmpdir = tempfile.mkdtemp(prefix="mcp-sentinel-")

    def start(self, down_after_ms: int, failover_timeout_ms: int) -> None:
        """Write the config (sentinel rewrites it as it learns) and start the process."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found: apt-get install redis-server")
        conf = os.path.join(self.tmpdir, "sentinel.conf")
        host, port = self._monitor
        lines = [
            f"port {self.port}",
            f"bind {self.host}",
            "daemonize yes",
            f"pidfile {self.tmpdir}/sentinel.pid",
            f"logfile {self.tmpdir}/sentinel.log",
            f"dir {self.tmpdir}",
            f"sentinel monitor {self.master} {host} {port} {self._quorum}",
            f"sentinel down-after-milliseconds {self.master} {down_after_ms}",
            f"sentinel failover-timeout {self.master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master} 1",
        ]
        if self._auth.get("master"):
            lines.append(f"sentinel auth-pass {self.master} {self._auth['master']}")
        if self._auth.get("sentinel"):
            # Sentinels authenticate to each other with the password they require themselves.
            lines += [f"requirepass {self._auth['sentinel']}", f"sentinel sentinel-pass {self._auth['sentinel']}"]
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        result = subprocess.run(
            [binary, conf, "--sentinel"], check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise ServiceUnavailable(f"redis-sentinel failed: {result.stderr.strip()}{log_tail(self.log)}")

    @property
    def log(self) -> str:
        return os.path.join(self.tmpdir, "sentinel.log")

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.Redis`` client on this sentinel."""
        import redis

        return redis.Redis(
            host=self.host, port=self.port, password=self._auth.get("sentinel"), socket_timeout=5, **kwargs
        )

    def pid(self) -> int | None:
        try:
            with open(os.path.join(self.tmpdir, "sentinel.pid"), "rb") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class SentinelService:
    """A master, one replica and ``sentinels`` sentinels watching them under ``master_name``.

    ``failover()`` asks a sentinel for a manual failover; ``kill_master()`` SIGKILLs the current
    master's process. Either way ``wait_for_new_master(old)`` waits until the sentinels name a
    different master. Context manager: ``stop()`` stops every process by its PID.
    """

    name = "sentinel"

    def __init__(
        self,
        *,
        sentinels: int = 1,
        master_name: str = "mcp-master",
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
    ) -> None:
        if not 1 <= sentinels <= 3:
            raise ValueError("use 1 to 3 sentinels")
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        # No 5 s wait before the first sync of a replica: the set-up is ready in a blink.
        args = ["--repl-diskless-sync-delay", "0", *(["--masterauth", password] if password else [])]
        self.nodes = [RedisService(password=password, extra_args=list(args)) for _ in range(2)]
        self._count = sentinels
        self.sentinels: list[SentinelProcess] = []

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``: ``host:port`` of every sentinel, comma-separated."""
        return ",".join(f"{s.host}:{s.port}" for s in self.sentinels)

    def env(self, db: int = 0) -> dict[str, str]:
        """The ``REDIS_*`` variables that point a server or the CLI at this set-up."""
        env = {"REDIS_SENTINELS": self.addresses, "REDIS_SENTINEL_MASTER": self.master_name, "REDIS_DB": str(db)}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def start(self) -> None:
        """Start master, replica and sentinels; return once the sentinels see the replica in sync."""
        began = time.monotonic()
        try:
            master, replica = self.nodes
            master.start()
            replica.extra_args += ["--replicaof", master.host, str(master.port)]
            replica.start()
            quorum = 1 if self._count < 3 else 2
            auth = {"master": self.password or "", "sentinel": self.sentinel_password or ""}
            for port in free_ports(self._count):
                self.sentinels.append(SentinelProcess(port, self.master_name, (master.host, master.port), quorum, auth))
            for sentinel in self.sentinels:
                sentinel.start(self.down_after_ms, self.failover_timeout_ms)
            wait_until(self.ready, 30, "sentinels watching master and replica", self.sentinels[0].log)
        except BaseException:
            self.stop()
            raise
        logger.info("sentinel set-up ready (%s) in %.2f s", self.addresses, time.monotonic() - began)

    def ready(self) -> bool:
        """Each sentinel knows the replica (and, with several, the other sentinels)."""
        import redis

        try:
            for sentinel in self.sentinels:
                client = sentinel.client(decode_responses=True)
                try:
                    state = client.sentinel_master(self.master_name)
                    # A replica is a failover candidate once the sentinel has fresh INFO from it.
                    replicas = client.sentinel_slaves(self.master_name)
                finally:
                    client.close()
                if int(state["num-other-sentinels"]) < self._count - 1:
                    return False
                known = {(r["ip"], int(r["port"])) for r in replicas if not r["is_sdown"] and r["info-refresh"] < 5000}
                if not known:
                    return False
            in_sync = any(self._in_sync(node) for node in self.nodes if (node.host, node.port) in known)
            return in_sync and self._replicated()
        except (redis.RedisError, KeyError, ValueError):
            return False

    def _replicated(self) -> bool:
        """The master itself streams to a replica that has caught up (a replica the sentinels
        have just reconfigured reconnects and resyncs first)."""
        client = self.master_client(decode_responses=True)
        try:
            role = client.execute_command("ROLE")
        finally:
            client.close()
        return role[0] == "master" and any(int(offset) >= int(role[1]) for _, _, offset in role[2])

    @staticmethod
    def _in_sync(node: RedisService) -> bool:
        client = node.client(decode_responses=True)
        try:
            return bool(client.info("replication").get("master_link_status") == "up")
        finally:
            client.close()

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is now."""
        client = self.sentinels[0].client(decode_responses=True)
        try:
            host, port = client.sentinel_get_master_addr_by_name(self.master_name)
        finally:
            client.close()
        return host, int(port)

    def node(self, address: tuple[str, int]) -> RedisService:
        """The node listening at ``address``."""
        return next(n for n in self.nodes if (n.host, n.port) == address)

    def master_client(self, **kwargs: Any) -> Any:
        """A plain client on the current master (for the test's own checks)."""
        return self.node(self.master_address()).client(**kwargs)

    def failover(self) -> None:
        """Ask a sentinel to fail over now (``SENTINEL FAILOVER``), as for maintenance."""
        client = self.sentinels[0].client()
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)
        finally:
            client.close()

    def kill_master(self) -> tuple[str, int]:
        """SIGKILL the master's process, like a crash; returns its address."""
        address = self.master_address()
        pid = self.node(address)._pid()
        if pid is not None:
            stop_pid(pid, signal.SIGKILL)
        return address

    def settle(self) -> None:
        """Make every other node a replica of the current master again, in sync; return when it is.

        After a failover a sentinel converts the old master only after about ten seconds, and a
        killed one stays down: this does at once what an operator (or the sentinel, later) would.
        """
        host, port = self.master_address()
        for node in self.nodes:
            if (node.host, node.port) == (host, port):
                continue
            if "--replicaof" in node.extra_args:
                at = node.extra_args.index("--replicaof")
                del node.extra_args[at : at + 3]
            node.extra_args += ["--replicaof", host, str(port)]
            if node._pid() is None:
                node.start()
            else:
                client = node.client()
                try:
                    client.execute_command("REPLICAOF", host, str(port))
                finally:
                    client.close()
        wait_until(self.ready, 30, "sentinels seeing a replica in sync", self.sentinels[0].log)

    def wait_for_new_master(self, old: tuple[str, int], timeout: float = 30) -> tuple[str, int]:
        """Wait until the sentinels name a master other than ``old``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                address = self.master_address()
            except Exception:  # a sentinel busy electing a leader may not answer
                address = old
            if address != old:
                return address
            time.sleep(0.1)
        raise ServiceUnavailable(f"no new master after {timeout:.0f} s{log_tail(self.sentinels[0].log)}")

    def stop(self) -> None:
        """Stop every process by its PID and remove the temp dirs."""
        for sentinel in self.sentinels:
            sentinel.stop()
        self.sentinels = []
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> SentinelService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
