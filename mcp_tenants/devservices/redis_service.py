"""A throwaway Redis on a free port, optionally with a password and extra arguments."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    pass

from mcp_tenants.devservices.base import (
    LOOPBACK,
    LocalService,
    ServiceUnavailable,
    log_tail,
    pid_alive,
    stop_pid,
    wait_until,
)

logger = logging.getLogger(__name__)


class RedisService(LocalService):
    """A throwaway, non-persistent redis-server; ``start()`` after ``stop()`` reuses its port."""

    name = "redis"

    def __init__(
        self, password: str | None = None, extra_args: list[str] | None = None, port: int | None = None
    ) -> None:
        super().__init__(port)
        self.password = password
        self.extra_args = list(extra_args or [])

    @property
    def url(self) -> str:
        """``redis://`` URL of database 0 (password included when set)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def client(self, db: int = 0, **kwargs: Any) -> Any:
        """A ``redis.Redis`` client on database ``db`` (``password=`` and ``username=`` override)."""
        import redis

        kwargs.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=5, **kwargs)

    def kill(self) -> None:
        """SIGKILL the server, like a crash; ``start()`` brings it back on the same port."""
        pid = self._pid()
        if pid is not None:
            stop_pid(pid, signal.SIGKILL)

    def _pid(self) -> int | None:
        try:
            with open(os.path.join(self.tmpdir or "", "redis.pid"), "rb") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _start(self) -> None:
        assert self.tmpdir is not None
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found: apt-get install redis-server")
        log = os.path.join(self.tmpdir, "redis.log")
        args = [
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--logfile",
            log,
            "--pidfile",
            os.path.join(self.tmpdir, "redis.pid"),
            "--dir",
            self.tmpdir,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        result = subprocess.run(
            args + self.extra_args, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise ServiceUnavailable(f"redis-server failed: {result.stderr.strip()}{log_tail(log)}")
        wait_until(self._answers, 15, f"redis-server on port {self.port}", log)

    def _answers(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = self.client(retry=Retry(NoBackoff(), 0))  # a probe answers now or fails now
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            stop_pid(pid)


# --- S3 (SeaweedFS) ---------------------------------------------------------------------------
