"""The tenant commands: list, show, add, remove, export, import, rotate-key, doctor, generate-key.

Each is a function of the ``Context`` that returns an exit code; ``main`` turns a raised
``TenantsError`` into a message on stderr.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Sequence
from typing import Any

from mcp_tenants.cli.context import EXIT_FAILED, EXIT_OK, Context, Handler
from mcp_tenants.config import TenantConfig, env_tenants, redact, validate_tenant_id
from mcp_tenants.errors import InvalidInput, StoreUnavailable, TenantNotFound, TenantsError


def cmd_list(ctx: Context) -> int:
    """Tenants from Redis and the environment, and every entry that cannot be read."""
    ctx.connect()
    configs, errors = ctx.store.load_all()
    env = env_tenants(ctx.config_type, ctx.environ)
    rows = [{**c.public(), "source": "redis"} for tid, c in configs.items() if tid not in env]
    rows += [{**c.public(), "source": "env"} for c in env.values()]
    rows.sort(key=lambda r: r["tenant_id"])
    lines = [f"{r['tenant_id']:<24} {r['source']:<6} {r['access']:<10} {_target(r)}" for r in rows]
    lines += [f"{tid:<24} ERROR  {err}" for tid, err in sorted(errors.items())]
    unreadable = {k: str(v) for k, v in errors.items()}
    ctx.emit({"tenants": rows, "unreadable": unreadable}, "\n".join(lines) or "no tenants")
    return EXIT_FAILED if errors else EXIT_OK


def _target(row: dict[str, Any]) -> str:
    if "endpoint" in row:
        return f"{'https' if row.get('secure') else 'http'}://{row['endpoint']}"
    return f"{row.get('user')}@{row.get('host')}:{row.get('port')}/{row.get('database')}"


def cmd_show(ctx: Context) -> int:
    """One tenant, secrets redacted."""
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    env = env_tenants(ctx.config_type, ctx.environ)
    if tenant_id in env:
        config: TenantConfig | None = env[tenant_id]
        source = "env"
    else:
        ctx.connect()
        config, source = ctx.store.get(tenant_id), "redis"
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
    """Add or replace a tenant in Redis, after checking its target (unless --no-verify)."""
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    if tenant_id in env_tenants(ctx.config_type, ctx.environ):
        raise InvalidInput(f"tenant {tenant_id!r} is defined in the environment; it cannot be added to Redis")
    fields = _parse_fields(ctx.args.fields)
    for secret in ctx.config_type.SECRET_FIELDS:
        if secret in fields:
            continue
        # Secrets never on the command line (shell history, ps): stdin or a prompt.
        fields[secret] = sys.stdin.readline().rstrip("\n") if ctx.args.secret_stdin else getpass.getpass(f"{secret}: ")
    config = ctx.config_type.from_dict({**ctx.config_type.coerce_env(fields), "tenant_id": tenant_id})
    ctx.connect()
    if not ctx.args.no_verify:
        ctx.backend.verify(config)
    if not ctx.store.put(config):
        raise StoreUnavailable(f"Redis at {ctx.settings.redis.describe()} is unavailable; nothing was stored")
    ctx.emit({"tenant": config.public(), "persisted": True}, f"added {tenant_id}")
    return EXIT_OK


def cmd_remove(ctx: Context) -> int:
    """Delete a tenant from Redis."""
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    ctx.connect()
    if ctx.store.get(tenant_id) is None:
        raise TenantNotFound(f"unknown tenant {tenant_id!r}: nothing to remove")
    if not ctx.store.delete(tenant_id):
        raise StoreUnavailable("Redis is unavailable; nothing was removed")
    ctx.emit({"tenant_id": tenant_id, "removed": True}, f"removed {tenant_id}")
    return EXIT_OK


def cmd_export(ctx: Context) -> int:
    """Every stored tenant as one JSON document; secrets only with --include-secrets."""
    ctx.connect()
    configs, errors = ctx.store.load_all()
    tenants = [c.to_dict() if ctx.args.include_secrets else c.public() for _, c in sorted(configs.items())]
    print(json.dumps({"server": ctx.server, "tenants": tenants}, indent=2))
    for err in errors.values():
        ctx.warn(f"not exported: {err}")
    return EXIT_FAILED if errors else EXIT_OK


def cmd_import(ctx: Context) -> int:
    """Store the tenants of an export document (or a JSON list of tenants)."""
    source = sys.stdin if ctx.args.file == "-" else open(ctx.args.file, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    with source:
        try:
            document = json.load(source)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{ctx.args.file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise InvalidInput(f"{ctx.args.file}: expected a list of tenants or an export document")
    env_ids = set(env_tenants(ctx.config_type, ctx.environ))
    results: dict[str, str] = {}
    ctx.connect()
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
    """Re-encrypt every entry with the first key of MCP_TENANT_ENCRYPTION_KEY."""
    if not ctx.codec.enabled:
        raise InvalidInput("MCP_TENANT_ENCRYPTION_KEY is not set: set 'NEW_KEY,OLD_KEY' (new first) and run again")
    ctx.connect()
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
    """Check Redis, the key, every entry, the environment's tenants and every target."""
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    try:
        ctx.connect()
        reachable = True
        check("redis", True, f"{ctx.settings.redis.describe()} answers")
    except StoreUnavailable as exc:
        reachable = False
        check("redis", False, f"{ctx.settings.redis.describe()} is unreachable: {exc}")
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
    env = env_tenants(ctx.config_type, ctx.environ)
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


def cmd_generate_key(ctx: Context) -> int:
    """Print a new Fernet key for MCP_TENANT_ENCRYPTION_KEY."""
    from mcp_tenants.crypto import generate_key

    print(generate_key())
    return EXIT_OK


COMMANDS: dict[str, Handler] = {
    "list": cmd_list,
    "show": cmd_show,
    "add": cmd_add,
    "remove": cmd_remove,
    "export": cmd_export,
    "import": cmd_import,
    "rotate-key": cmd_rotate_key,
    "doctor": cmd_doctor,
    "generate-key": cmd_generate_key,
}
