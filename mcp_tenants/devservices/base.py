"""What every throwaway service shares: free ports, PIDs, waiting, the LocalService base."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServiceUnavailable(Exception):
    """A local service could not be found, or did not start and answer in time."""


def http_server_command(module: str, host: str, port: int, *args: str) -> list[str]:
    """The command line of one of our servers (``python -m module``) on streamable HTTP."""
    return [sys.executable, "-m", module, "--transport", "streamable-http", "--host", host, "--port", str(port), *args]


def free_ports(count: int = 1) -> list[int]:
    """Return ``count`` distinct ports the OS reports free (bound to port 0, then released)."""
    # Keep every socket bound until all are chosen so the OS cannot hand out one port twice.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone (its parent may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` seconds for it to exit, then SIGKILL it."""
    for current, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, current)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
        logger.warning("pid %d still alive %.0f s after signal %d", pid, wait, current)
    raise ServiceUnavailable(f"process {pid} survived SIGKILL")


def log_tail(path: str | None, lines: int = 20) -> str:
    try:
        with open(path or "", encoding="utf-8", errors="replace") as log:
            tail = log.read().splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(tail)


def wait_until(ready: Callable[[], bool], timeout: float, what: str, log: str) -> None:
    """Poll ``ready`` until it is true; on timeout raise with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} not ready after {timeout:.0f} s{log_tail(log)}")


class LocalService:
    """Shared life cycle: a temp dir, a port kept across restarts, use as a context manager."""

    name = "service"

    def __init__(self, port: int | None = None) -> None:
        self.host = LOOPBACK
        self.tmpdir: str | None = None
        self._port = port

    @property
    def port(self) -> int:
        """The TCP port, chosen once and kept for every later start."""
        if self._port is None:
            self._port = free_ports()[0]
        return self._port

    def start(self) -> None:
        """Start the server and wait until it answers; on failure clean up and raise."""
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix=f"mcp-{self.name}-")
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        logger.info("%s ready on %s:%d in %.2f s", self.name, self.host, self.port, time.monotonic() - began)

    def stop(self) -> None:
        """Stop the server if it runs and remove its data."""
        try:
            self._stop()
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- PostgreSQL -------------------------------------------------------------------------------
