"""The servers a user would pick instead of ours, installed by the bench itself, and the data all
of them read.

Peers, pinned (``bench/peers/``; nothing installed there is committed):

- PostgreSQL, from npm (``package.json`` + ``package-lock.json``, ``npm ci``):
  ``@modelcontextprotocol/server-postgres`` 0.6.2 (the reference server; a postgres URL argument,
  tool ``query``) and ``@bytebase/dbhub`` 1.4 (``--dsn``, tool ``execute_sql``).
- S3, from PyPI (one venv each, from a ``pip freeze`` of a working install, because they need
  different major versions of the MCP SDK): ``aws-s3-mcp`` 0.1.3 (FastMCP on mcp 1.x, aioboto3)
  and ``s3-mcp`` 0.1.0 (fastmcp 4 on mcp 2.x, boto3). No S3 MCP server on npm ran here. Both
  reach the bench's S3 server through botocore's ``AWS_ENDPOINT_URL``.

The bare servers (``bench/minimal_server.py`` on ``MCPServer``, ``bench/lowlevel_server.py`` on
the SDK's low-level ``Server``) return, from memory, the very results our ``query`` returned
for the same SQL: the bench saves them in a JSON file (``BENCH_RESULTS``) after asking our server
once with its caps lifted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.harness import MINIMAL_MODULE, PG_MODULE, ROOT, Services, StdioServer

PEERS_DIR = ROOT / "bench" / "peers"
NODE_MODULES = PEERS_DIR / "node_modules"
PY_PEERS = ("aws-s3-mcp", "s3-mcp")
LOWLEVEL_MODULE = "bench.lowlevel_server"

# -- the data -----------------------------------------------------------------------------------

#: One table, 100,000 rows of the column types results usually carry.
TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_rows AS
SELECT g AS id, 'name-' || g AS name, md5(g::text) AS hash, g * 1.5::float8 AS amount,
       g % 2 = 0 AS even, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute' AS created
FROM generate_series(1, 100000) g
"""

#: workload → SQL, the same text for every server.
WORKLOADS = {
    "SELECT 1": "SELECT 1",
    "1,000 rows": "SELECT * FROM bench_rows ORDER BY id LIMIT 1000",
    "100,000 rows": "SELECT * FROM bench_rows ORDER BY id",
}
ROW_COUNTS = {"SELECT 1": 1, "1,000 rows": 1000, "100,000 rows": 100_000}

#: Our caps, lifted for the 100,000-row workload (the defaults are 1,000 rows and 1 MiB).
LIFTED_CAPS = {"MCP_QUERY_MAX_ROWS": "200000", "MCP_RESULT_MAX_BYTES": str(1 << 30)}


def create_table(services: Services) -> None:
    """The bench table, once per cluster."""
    if not services.pg.execute("SELECT 1 FROM pg_class WHERE relname = 'bench_rows'"):
        services.pg.execute(TABLE_SQL)
        services.pg.execute("ALTER TABLE bench_rows ADD PRIMARY KEY (id)")
        services.pg.execute("ANALYZE bench_rows")


def postgres_url(services: Services, *, port: int | None = None) -> str:
    pg = services.pg
    return (
        f"postgres://{quote(pg.user)}:{quote(pg.password, safe='')}@{pg.host}:{port or pg.port}/"
        f"{quote(pg.dbname)}?sslmode=disable"
    )


# -- installing the peers -----------------------------------------------------------------------


def _stamp_ok(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def install_node_peers() -> str | None:
    """``npm ci`` in bench/peers when the lockfile changed since the last install; None when done,
    else why the node peers are unavailable."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        return "node/npm not found (apt-get install nodejs npm)"
    lock = PEERS_DIR / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = NODE_MODULES / ".bench-installed"
    if _stamp_ok(stamp, digest):
        return None
    print("  [npm ci in bench/peers ...]", flush=True)
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PEERS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return f"npm ci failed: {(result.stderr or result.stdout)[-800:]}"
    stamp.write_text(digest + "\n")
    return None


def install_python_peer(name: str) -> str | None:
    """A venv in bench/peers/py/NAME from bench/peers/NAME.txt (pinned); None when ready."""
    requirements = PEERS_DIR / f"{name}.txt"
    venv = PEERS_DIR / "py" / name
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".bench-installed"
    if _stamp_ok(stamp, digest):
        return None
    print(f"  [pip install -r bench/peers/{name}.txt into bench/peers/py/{name} ...]", flush=True)
    python = os.environ.get("BENCH_PEER_PYTHON", sys.executable)
    steps = [
        [python, "-m", "venv", "--clear", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return f"{' '.join(step[:3])} failed: {(result.stderr or result.stdout)[-800:]}"
    stamp.write_text(digest + "\n")
    return None


# -- the servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One server in a comparison and how to ask it for a workload."""

    name: str
    kind: str  # "ours", "peer" or "bare"
    tool: str
    #: SQL → tool arguments
    arguments: Any

    def args_for(self, sql: str) -> dict[str, Any]:
        return dict(self.arguments(sql))


OURS = Contender("ours", "ours", "query", lambda sql: {"tenant_id": "bench", "sql": sql})
REFERENCE = Contender("server-postgres 0.6.2", "peer", "query", lambda sql: {"sql": sql})
DBHUB = Contender("dbhub 1.4", "peer", "execute_sql", lambda sql: {"sql": sql})
BARE = Contender("bare MCPServer", "bare", "result", lambda sql: {"sql": sql})
LOWLEVEL = Contender("bare lowlevel Server", "bare", "result", lambda sql: {"sql": sql})


def ours_server(services: Services, *, db: int = 7, pg_port: int | None = None, **extra: str) -> StdioServer:
    env = {**services.redis_env(db), **services.pg_tenant_env("bench"), **LIFTED_CAPS, **extra}
    if pg_port:
        env["POSTGRES_TENANT_BENCH_PORT"] = str(pg_port)
    return StdioServer(PG_MODULE, env, name="ours")


def reference_server(services: Services, *, pg_port: int | None = None) -> StdioServer:
    script = NODE_MODULES / "@modelcontextprotocol" / "server-postgres" / "dist" / "index.js"
    url = postgres_url(services, port=pg_port)
    return StdioServer("", {}, argv=["node", str(script), url], name=REFERENCE.name)


def dbhub_server(services: Services, *, pg_port: int | None = None) -> StdioServer:
    script = NODE_MODULES / "@bytebase" / "dbhub" / "dist" / "index.js"
    url = postgres_url(services, port=pg_port)
    return StdioServer("", {}, argv=["node", str(script), "--transport", "stdio", f"--dsn={url}"], name=DBHUB.name)


def bare_server(module: str, results_file: str) -> StdioServer:
    name = BARE.name if module == MINIMAL_MODULE else LOWLEVEL.name
    return StdioServer(module, {"BENCH_RESULTS": results_file}, name=name)


def text_rows(result: Any) -> int:
    """Rows in a peer's answer (text content holding JSON): a list, or an object with rows in it."""
    text = "".join(getattr(c, "text", "") for c in result.content)
    data = json.loads(text)
    if isinstance(data, list):
        return len(data)
    if isinstance(data.get("rows"), list):
        return len(data["rows"])
    statements = data.get("data", {}).get("statements") if isinstance(data.get("data"), dict) else None
    if isinstance(statements, list) and statements and isinstance(statements[-1].get("rows"), list):
        return len(statements[-1]["rows"])  # dbhub: {"data": {"statements": [{"rows": [...]}]}}
    raise AssertionError(f"no rows in the peer's answer: {text[:300]}")
