"""``mcp-tenants``: the operator CLI over the same settings and Redis store as the servers.

Exit codes: 0 success; 1 the operation failed or ``doctor`` found a problem; 2 bad usage or
configuration. ``--json`` prints one JSON document on stdout for scripts; messages go to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mcp_tenants import __version__
from mcp_tenants.config import Settings, TenantConfig, env_tenants, redact, validate_tenant_id
from mcp_tenants.crypto import SecretCodec, generate_key
from mcp_tenants.errors import InvalidInput, StoreUnavailable, TenantNotFound, TenantsError
from mcp_tenants.launch import load_env_file
from mcp_tenants.registry import TenantBackend
from mcp_tenants.store import TenantStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Problem(TenantsError):
    """The command ran but found something wrong (exit code 1)."""


def make_backend(server: str, settings: Settings) -> TenantBackend[Any, Any]:
    """The backend of ``server``; imported lazily so one server's driver is not needed by the other."""
    if server == "minio":
        from mcp_tenants.minio.tenant import MinioBackend

        return MinioBackend(settings)
    from mcp_tenants.postgres.tenant import PostgresBackend

    return PostgresBackend(settings)


class Context:
    """What every subcommand needs: settings, the backend, the store and how to print."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = Settings.from_env(args.server)
        self.codec = SecretCodec(self.settings.encryption_keys)
        self.backend = make_backend(args.server, self.settings)
        self.config_type: type[TenantConfig] = self.backend.config_type
        self.store: TenantStore[TenantConfig] = TenantStore(
            self.settings.redis, args.server, self.config_type, self.codec
        )

    def emit(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON with --json, else ``text``."""
        print(json.dumps(data, indent=2, default=str) if self.args.json else text)

    def env_ids(self) -> set[str]:
        return set(env_tenants(self.config_type, os.environ))


def cmd_list(ctx: Context) -> int:
    configs, errors = ctx.store.load_all()
    env = env_tenants(ctx.config_type, os.environ)
    rows = [{**c.public(), "source": "redis"} for tid, c in configs.items() if tid not in env]
    rows += [{**c.public(), "source": "env"} for c in env.values()]
    rows.sort(key=lambda r: r["tenant_id"])
    lines = [f"{r['tenant_id']:<24} {r['source']:<6} {r['access']:<10} {_target(r)}" for r in rows]
    lines += [f"{tid:<24} ERROR  {err}" for tid, err in sorted(errors.items())]
    ctx.emit({"tenants": rows, "unreadable": {k: str(v) for k, v in errors.items()}}, "\n".join(lines) or "no tenants")
    return EXIT_FAILED if errors else EXIT_OK


def _target(row: dict[str, Any]) -> str:
    if "endpoint" in row:
        return f"{'https' if row.get('secure') else 'http'}://{row['endpoint']}"
    return f"{row.get('user')}@{row.get('host')}:{row.get('port')}/{row.get('database')}"


def cmd_show(ctx: Context) -> int:
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    env = env_tenants(ctx.config_type, os.environ)
    config, source = (env[tenant_id], "env") if tenant_id in env else (ctx.store.get(tenant_id), "redis")
    if config is None:
        raise TenantNotFound(f"unknown tenant {tenant_id!r}")
    data = {**config.redacted(), "source": source}
    ctx.emit(data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return EXIT_OK


def _parse_fields(pairs: Sequence[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"expected FIELD=VALUE, got {pair.split('=')[0]!r}")
        fields[name.strip()] = value
    return fields


def cmd_add(ctx: Context) -> int:
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    if tenant_id in ctx.env_ids():
        raise InvalidInput(f"tenant {tenant_id!r} is defined in the environment; it cannot be added to Redis")
    fields = _parse_fields(ctx.args.fields)
    for secret in ctx.config_type.SECRET_FIELDS:
        if secret in fields:
            continue
        # Secrets never on the command line (shell history, ps): stdin or a prompt.
        fields[secret] = sys.stdin.readline().rstrip("\n") if ctx.args.secret_stdin else getpass.getpass(f"{secret}: ")
    config = ctx.config_type.from_dict({**ctx.config_type.coerce_env(fields), "tenant_id": tenant_id})
    if not ctx.args.no_verify:
        ctx.backend.verify(config)
    if not ctx.store.connect() or not ctx.store.put(config):
        raise StoreUnavailable(f"Redis at {ctx.settings.redis.describe()} is unavailable; nothing was stored")
    ctx.emit({"tenant": config.public(), "persisted": True}, f"added {tenant_id}")
    return EXIT_OK


def cmd_remove(ctx: Context) -> int:
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    if ctx.store.get(tenant_id) is None:
        raise TenantNotFound(f"unknown tenant {tenant_id!r}: nothing to remove")
    if not ctx.store.delete(tenant_id):
        raise StoreUnavailable("Redis is unavailable; nothing was removed")
    ctx.emit({"tenant_id": tenant_id, "removed": True}, f"removed {tenant_id}")
    return EXIT_OK


def cmd_export(ctx: Context) -> int:
    configs, errors = ctx.store.load_all()
    tenants = [c.to_dict() if ctx.args.include_secrets else c.public() for _, c in sorted(configs.items())]
    print(json.dumps({"server": ctx.args.server, "tenants": tenants}, indent=2))
    for err in errors.values():
        print(f"not exported: {err}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def cmd_import(ctx: Context) -> int:
    source = sys.stdin if ctx.args.file == "-" else open(ctx.args.file, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    with source:
        try:
            document = json.load(source)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{ctx.args.file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise InvalidInput(f"{ctx.args.file}: expected a list of tenants or an export document")
    env_ids = ctx.env_ids()
    results: dict[str, str] = {}
    ctx.store.connect()
    for entry in entries:
        tenant_id = str(entry.get("tenant_id")) if isinstance(entry, dict) else "?"
        try:
            config = ctx.config_type.from_dict(entry)
            if tenant_id in env_ids:
                raise InvalidInput("defined in the environment")
            if not ctx.args.replace and ctx.store.get(tenant_id) is not None:
                results[tenant_id] = "skipped (exists; use --replace)"
                continue
            if ctx.args.verify:
                ctx.backend.verify(config)
            results[tenant_id] = "imported" if ctx.store.put(config) else "failed: Redis unavailable"
        except (TenantsError, AttributeError) as exc:
            results[tenant_id] = f"failed: {redact(str(exc))}"
    ctx.emit({"results": results}, "\n".join(f"{k}: {v}" for k, v in results.items()) or "nothing to import")
    return EXIT_FAILED if any(v.startswith("failed") for v in results.values()) else EXIT_OK


def cmd_rotate_key(ctx: Context) -> int:
    if not ctx.codec.enabled:
        raise InvalidInput("MCP_TENANT_ENCRYPTION_KEY is not set: set 'NEW_KEY,OLD_KEY' (new first) and run again")
    configs, errors = ctx.store.load_all()
    counts = {"resealed": 0, "current": 0}
    for tenant_id in sorted(configs):
        counts["resealed" if ctx.store.reseal(tenant_id) else "current"] += 1
    failed = {tid: str(err) for tid, err in errors.items()}
    ctx.emit(
        {**counts, "failed": failed},
        f"re-encrypted {counts['resealed']}, already current {counts['current']}, unreadable {len(failed)}"
        + "".join(f"\n  {err}" for err in failed.values()),
    )
    return EXIT_FAILED if failed else EXIT_OK


def cmd_doctor(ctx: Context) -> int:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    reachable = ctx.store.connect()
    check("redis", reachable, f"{ctx.settings.redis.describe()} {'answers' if reachable else 'is unreachable'}")
    check(
        "encryption",
        ctx.codec.enabled,
        "secrets are encrypted at rest"
        if ctx.codec.enabled
        else "MCP_TENANT_ENCRYPTION_KEY is not set: secrets are stored in plain text",
    )
    configs: dict[str, TenantConfig] = {}
    if reachable:
        configs, errors = ctx.store.load_all()
        check("entries", not errors, f"{len(configs)} readable" + "".join(f"; {e}" for e in errors.values()))
    env = env_tenants(ctx.config_type, os.environ)
    check("environment", True, f"{len(env)} tenant(s): {', '.join(sorted(env)) or 'none'}")
    if not ctx.args.skip_targets:
        for tenant_id, config in sorted({**configs, **env}.items()):
            try:
                ctx.backend.verify(config)
                check(f"tenant {tenant_id}", True, "reachable")
            except TenantsError as exc:
                check(f"tenant {tenant_id}", False, redact(str(exc)))
    # The missing key is a warning, not a failure: plain-text storage is a supported choice.
    healthy = all(c["ok"] for c in checks if c["check"] != "encryption")
    ctx.emit(
        {"healthy": healthy, "checks": checks},
        "\n".join(f"[{'ok' if c['ok'] else '!!'}] {c['check']}: {c['detail']}" for c in checks),
    )
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_generate_key(ctx: argparse.Namespace) -> int:
    print(generate_key())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-tenants",
        description="Manage the tenants of mcp-postgres-server and mcp-minio-server in Redis.",
    )
    parser.add_argument(
        "--server", choices=["postgres", "minio"], default="postgres", help="which server's tenants (default: postgres)"
    )
    parser.add_argument("--env-file", help="read settings from this .env file (default: ./.env when present)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list tenants from Redis and the environment")
    p = sub.add_parser("show", help="show one tenant, secrets redacted")
    p.add_argument("tenant_id")
    p = sub.add_parser(
        "add",
        help="add or replace a tenant in Redis",
        description="Fields as FIELD=VALUE (postgres: host port database user sslmode access; minio: "
        "endpoint access_key secure region access). The secret (password / secret_key) is read from "
        "a prompt, or from stdin with --secret-stdin.",
    )
    p.add_argument("tenant_id")
    p.add_argument("fields", nargs="*", metavar="FIELD=VALUE")
    p.add_argument("--secret-stdin", action="store_true", help="read the secret from the first line of stdin")
    p.add_argument(
        "--no-verify", action="store_true", help="store without checking that the target accepts the credentials"
    )
    p = sub.add_parser("remove", help="remove a tenant from Redis")
    p.add_argument("tenant_id")
    p = sub.add_parser("export", help="print every stored tenant as JSON (secrets left out)")
    p.add_argument("--include-secrets", action="store_true", help="include passwords / secret keys in plain text")
    p = sub.add_parser("import", help="store tenants from an export document (or a JSON list)")
    p.add_argument("file", help="path, or - for stdin")
    p.add_argument("--replace", action="store_true", help="overwrite tenants that already exist")
    p.add_argument("--verify", action="store_true", help="check each target before storing it")
    sub.add_parser("rotate-key", help="re-encrypt every entry with the first MCP_TENANT_ENCRYPTION_KEY (safe to rerun)")
    p = sub.add_parser("doctor", help="check Redis, the key, every entry and every tenant's target")
    p.add_argument("--skip-targets", action="store_true", help="do not connect to each tenant's database / store")
    sub.add_parser("generate-key", help="print a new encryption key for MCP_TENANT_ENCRYPTION_KEY")
    return parser


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "add": cmd_add,
    "remove": cmd_remove,
    "export": cmd_export,
    "import": cmd_import,
    "rotate-key": cmd_rotate_key,
    "doctor": cmd_doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``mcp-tenants``."""
    args = build_parser().parse_args(argv)
    if args.command == "generate-key":
        return cmd_generate_key(args)
    try:
        load_env_file(args.env_file)
        ctx = Context(args)
    except TenantsError as exc:
        print(f"mcp-tenants: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](ctx)
    except InvalidInput as exc:
        print(f"mcp-tenants: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (TenantsError, OSError) as exc:
        print(f"mcp-tenants: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        ctx.store.close()


if __name__ == "__main__":
    sys.exit(main())
