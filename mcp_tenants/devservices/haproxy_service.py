"""A throwaway HAProxy (Debian's ``haproxy``) balancing HTTP over server replicas on loopback.

Health checks ask each replica's ``/readyz`` every 300 ms; two failures take it out of rotation,
one success puts it back. A connection that cannot be made is retried on another replica
(``option redispatch``); a request already sent is never retried, because a tool call is not
always idempotent: when a replica dies, only the calls in flight on it fail.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

from mcp_tenants.devservices.base import LOOPBACK, LocalService, ServiceUnavailable, log_tail, stop_pid, wait_until

logger = logging.getLogger(__name__)


def haproxy_binary() -> str:
    """Path of ``haproxy`` (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServiceUnavailable("haproxy not found: apt-get install haproxy")
    return found


class HAProxyService(LocalService):
    """HAProxy on a free port in front of ``backends`` (``(host, port)`` pairs).

    ``health_path`` is the HTTP check (None: a plain TCP check). ``server_states()`` reads the
    replicas' states from the admin socket.
    """

    name = "haproxy"

    def __init__(
        self, backends: list[tuple[str, int]], *, health_path: str | None = "/readyz", check_ms: int = 300
    ) -> None:
        super().__init__()
        self.backends = list(backends)
        self.health_path = health_path
        self.check_ms = check_ms
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = ""

    @property
    def url(self) -> str:
        """Base URL of the frontend."""
        return f"http://{self.host}:{self.port}"

    def config(self) -> str:
        """The haproxy.cfg text."""
        assert self.tmpdir is not None
        check = [f"    option httpchk GET {self.health_path}", "    http-check expect status 200"]
        servers = [f"    server r{n} {host}:{port}" for n, (host, port) in enumerate(self.backends)]
        return "\n".join(
            [
                "global",
                "    maxconn 2000",
                f"    stats socket {self.tmpdir}/admin.sock mode 600 level admin",
                "defaults",
                "    mode http",
                "    log stdout format raw local0 warning",
                "    timeout connect 1s",
                "    timeout client 60s",
                "    timeout server 60s",
                "    timeout http-keep-alive 10s",
                "    retries 3",
                "    option redispatch 1",
                # Only connection failures are retried: the request never reached a replica.
                "    retry-on conn-failure",
                "frontend mcp",
                f"    bind {LOOPBACK}:{self.port}",
                "    default_backend replicas",
                "backend replicas",
                "    balance roundrobin",
                *(check if self.health_path else []),
                f"    default-server check inter {self.check_ms}ms fall 2 rise 1",
                *servers,
                "",
            ]
        )

    def _start(self) -> None:
        assert self.tmpdir is not None
        binary = haproxy_binary()
        conf = os.path.join(self.tmpdir, "haproxy.cfg")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(self.config())
        self._log = os.path.join(self.tmpdir, "haproxy.log")
        with open(self._log, "wb") as log:
            # -db: stay in the foreground, so the PID we hold is HAProxy's own.
            self._proc = subprocess.Popen(
                [binary, "-db", "-f", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._answers, 15, f"haproxy on port {self.port}", self._log)

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceUnavailable(f"haproxy exited with {self._proc.returncode}{log_tail(self._log)}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return os.path.exists(os.path.join(self.tmpdir or "", "admin.sock"))
        except OSError:
            return False

    def admin(self, command: str) -> str:
        """Run one command on the admin socket (``show stat``, ``disable server replicas/r0``...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(os.path.join(self.tmpdir or "", "admin.sock"))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """Each replica's state as the health checks see it: ``UP``, ``DOWN``, ``MAINT``..."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "replicas" and row["svname"][0] == "r"}

    def wait_states(self, want: dict[str, str], timeout: float = 30) -> None:
        """Wait until the named replicas are in the wanted states (e.g. ``{"r0": "DOWN"}``)."""

        def reached() -> bool:
            states = self.server_states()
            return all(states.get(name, "").split()[0:1] == [state] for name, state in want.items())

        wait_until(reached, timeout, f"haproxy replicas {want}", self._log)

    def get(self, path: str) -> int:
        """Status of a GET through the frontend."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_pid(proc.pid)
            proc.wait()
