"""A throwaway PostgreSQL cluster: initdb into a temp dir, a free port, password auth."""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from psycopg import sql as pgsql

from mcp_tenants.devservices.base import (
    LOOPBACK,
    LocalService,
    ServiceUnavailable,
    log_tail,
    stop_pid,
)

logger = logging.getLogger(__name__)


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
                + log_tail(os.path.join(self.tmpdir, "postgres.log"))
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
