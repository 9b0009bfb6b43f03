"""The tenant commands: list, show, add, remove, doctor, generate-key (export, import, rotate-key:
``transfer.py``).

Each is a function of the ``Context`` that returns an exit code; ``main`` turns a raised
``TenantsError`` into one line on stderr (``InvalidInput``: exit 2, others: exit 1).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

from mcp_tenants.cli.context import EXIT_FAILED, EXIT_OK, Context, Handler, Problem, did_you_mean
from mcp_tenants.cli.transfer import cmd_export, cmd_import, cmd_rotate_key, field_problem
from mcp_tenants.config import TenantConfig, redact, validate_tenant_id
from mcp_tenants.errors import CorruptEntry, InvalidInput, StoreUnavailable, TenantNotFound, TenantsError


def cmd_list(ctx: Context) -> int:
    """Tenants from Redis and the environment, and every tenant or entry that cannot be used."""
    env = ctx.env
    configs: dict[str, TenantConfig] = {}
    unreadable: dict[str, str] = dict(env.invalid)
    redis_error = None
    try:
        ctx.connect()
        configs, errors = ctx.store.load_all()
        unreadable.update({k: str(v) for k, v in errors.items() if k not in env.ids})
    except StoreUnavailable as exc:
        redis_error = str(exc)
    rows = [{**c.public(), "source": "redis"} for tid, c in configs.items() if tid not in env.ids]
    rows += [{**c.public(), "source": "env"} for c in env.valid.values()]
    rows.sort(key=lambda r: r["tenant_id"])
    lines = [f"{r['tenant_id']:<24} {r['source']:<6} {r['access']:<10} {_target(r)}" for r in rows]
    lines += [f"{tid:<24} ERROR  {err}" for tid, err in sorted(unreadable.items())]
    empty = "no tenants in the environment" if redis_error else "no tenants"
    ctx.emit({"tenants": rows, "unreadable": unreadable}, "\n".join(lines) or empty)
    if redis_error:
        ctx.warn(f"only the environment's tenants are listed: {redis_error}")
    return EXIT_FAILED if unreadable or redis_error else EXIT_OK


def _target(row: dict[str, Any]) -> str:
    if "endpoint" in row:
        return f"{'https' if row.get('secure') else 'http'}://{row['endpoint']}"
    return f"{row.get('user')}@{row.get('host')}:{row.get('port')}/{row.get('database')}"


def _unknown(ctx: Context, tenant_id: str, doing: str = "") -> TenantNotFound:
    known = set(ctx.env.ids)
    with contextlib.suppress(StoreUnavailable):
        known |= ctx.store.ids()
    other = "minio" if ctx.server == "postgres" else "postgres"
    return TenantNotFound(
        f"unknown tenant {tenant_id!r}{did_you_mean(tenant_id, known)}{doing}: not in Redis at "
        f"{ctx.settings.redis.describe()} nor in the environment; `mcp-tenants list` shows the known ones "
        f"(tenants of the {other} server: --server {other})"
    )


def cmd_show(ctx: Context) -> int:
    """One tenant, secrets redacted."""
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    if tenant_id in ctx.env.invalid:
        raise Problem(ctx.env.invalid[tenant_id])
    if tenant_id in ctx.env.valid:
        config: TenantConfig | None = ctx.env.valid[tenant_id]
        source = "env"
    else:
        ctx.connect()
        config, source = ctx.store.get(tenant_id), "redis"
    if config is None:
        raise _unknown(ctx, tenant_id)
    data = {**config.redacted(), "source": source}
    ctx.emit(data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return EXIT_OK


def parse_fields(ctx: Context, pairs: Sequence[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` arguments of ``add``: only known, non-secret fields, each named once."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInput(f"expected FIELD=VALUE, got {pair.split('=')[0]!r}")
        if name in ctx.config_type.SECRET_FIELDS:
            # Shell history and `ps` would keep it: secrets come from a prompt or stdin only.
            raise InvalidInput(
                f"{name} is never taken from the command line (shell history and ps would show it): "
                f"leave out {name}=..., and type it at the prompt or pipe it with --secret-stdin"
            )
        problem = field_problem(ctx, name)
        if problem:
            raise InvalidInput(problem)
        if name in fields:
            raise InvalidInput(f"{name} is given twice")
        fields[name] = value
    return fields


def read_secret(ctx: Context, name: str) -> str:
    """The secret from stdin (--secret-stdin) or a prompt on the terminal; never a traceback."""
    if ctx.args.secret_stdin:
        line = sys.stdin.readline()
        if not line.strip("\r\n"):
            raise InvalidInput(f"--secret-stdin: no {name} on stdin: pipe it as the first line")
        return line.rstrip("\r\n")
    if not _has_terminal():
        raise InvalidInput(
            f"no terminal to prompt for the {name}: pipe it with --secret-stdin, e.g. "
            f"printf '%s\\n' \"${name.upper()}\" | mcp-tenants add {ctx.args.tenant_id} ... --secret-stdin"
        )
    try:
        return getpass.getpass(f"{name} for tenant {ctx.args.tenant_id}: ")
    except EOFError:
        raise InvalidInput(f"no {name} was typed; nothing was stored") from None


def _has_terminal() -> bool:
    """True when getpass can prompt: the process has a controlling terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return sys.stdin.isatty()
    return True


def cmd_add(ctx: Context) -> int:
    """Add or replace a tenant in Redis, after checking its target (unless --no-verify)."""
    tenant_id = validate_tenant_id(ctx.args.tenant_id)
    if tenant_id in ctx.env.ids:
        raise InvalidInput(
            f"tenant {tenant_id!r} is defined in the environment ({ctx.env_variables(tenant_id)}), which "
            "wins over Redis: change those variables, or pick another id"
        )
    fields = parse_fields(ctx, ctx.args.fields)
    missing = [
        f for f in ctx.config_type.required_fields() if f not in fields and f not in ctx.config_type.SECRET_FIELDS
    ]
    if missing:
        raise InvalidInput(f"missing field(s): {', '.join(missing)}; give them as {missing[0]}=VALUE")
    for secret in ctx.config_type.SECRET_FIELDS:
        fields[secret] = read_secret(ctx, secret)
    # Added by the operator: trusted (its target is not checked on connect).
    config = ctx.config_type.from_dict({**ctx.config_type.coerce_env(fields), "tenant_id": tenant_id, "origin": "cli"})
    ctx.connect()
    if not ctx.args.no_verify:
        ctx.backend.verify(config)
    ctx.store.put(config, queue=False)
    ctx.emit({"tenant": config.public(), "persisted": True}, f"added {tenant_id}")
    return EXIT_OK


def cmd_remove(ctx: Context) -> int:
    """Delete a tenant (or any unreadable entry that `list` shows) from Redis."""
    name = ctx.args.tenant_id
    try:
        tenant_id = validate_tenant_id(name)
    except InvalidInput:
        # `list` shows keys that name no valid tenant id by a label: remove those by it too.
        ctx.connect()
        if ctx.store.delete_strange_key(name):
            ctx.emit({"tenant_id": name, "removed": True}, f"removed the entry {ctx.store.prefix}{name}")
            return EXIT_OK
        raise
    ctx.connect()
    try:
        stored = ctx.store.get(tenant_id) is not None
    except CorruptEntry:
        stored = True  # an unreadable entry is removed like any other
    if not stored:
        if tenant_id in ctx.env.ids:
            raise Problem(
                f"tenant {tenant_id!r} is defined in the environment ({ctx.env_variables(tenant_id)}), not in "
                "Redis: remove those variables where the servers run, and restart them"
            )
        raise _unknown(ctx, tenant_id, ": nothing to remove")
    ctx.store.delete(tenant_id, queue=False)
    ctx.emit({"tenant_id": tenant_id, "removed": True}, f"removed {tenant_id}")
    if tenant_id in ctx.env.ids:
        ctx.warn(f"the environment still defines {tenant_id!r} ({ctx.env_variables(tenant_id)}); servers use that")
    return EXIT_OK


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
        check("redis", False, f"unreachable: {exc}")
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
    env = ctx.env
    detail = f"{len(env.valid)} tenant(s): {', '.join(sorted(env.valid)) or 'none'}"
    check("environment", not env.invalid, detail + "".join(f"; skipped {m}" for _, m in sorted(env.invalid.items())))
    if not ctx.args.skip_targets:
        for tenant_id, config in sorted({**configs, **env.valid}.items()):
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
