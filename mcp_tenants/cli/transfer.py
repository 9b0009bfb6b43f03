"""Moving tenants in bulk: export, import, rotate-key."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from mcp_tenants.cli.context import EXIT_FAILED, EXIT_OK, Context, config_type_of, did_you_mean
from mcp_tenants.config import redact, validate_tenant_id
from mcp_tenants.errors import InvalidInput, TenantsError

#: Keys that `list --json` adds to a tenant; an import ignores them.
_LISTING_KEYS = {"source"}


def field_problem(ctx: Context, name: str) -> str | None:
    """Why ``name`` is not a field of this server's tenants (None when it is one)."""
    ours = [f.name for f in dataclasses.fields(ctx.config_type) if f.name != "tenant_id"]
    if name in ours:
        return None
    if name == "tenant_id":
        return "give the tenant id as the first argument, not as tenant_id=..."
    other = "minio" if ctx.server == "postgres" else "postgres"
    if name in {f.name for f in dataclasses.fields(config_type_of(other))}:
        return f"{name!r} is a field of {other} tenants, and this is --server {ctx.server}: use --server {other}"
    shown = [n for n in ours if n not in ctx.config_type.SECRET_FIELDS]
    return f"unknown field {name!r}{did_you_mean(name, ours)}; {ctx.server} tenants have: {', '.join(shown)}"


def cmd_export(ctx: Context) -> int:
    """Every stored tenant as one JSON document; secrets only with --include-secrets."""
    ctx.connect()
    configs, errors = ctx.store.load_all()
    secrets = bool(ctx.args.include_secrets)
    tenants = [c.to_dict() if secrets else c.public() for _, c in sorted(configs.items())]
    print(json.dumps({"server": ctx.server, "secrets_included": secrets, "tenants": tenants}, indent=2))
    for err in errors.values():
        ctx.warn(f"not exported: {err}")
    if not secrets and tenants:
        ctx.warn("secrets were left out: such an export documents tenants but cannot restore them (--include-secrets)")
    return EXIT_FAILED if errors else EXIT_OK


def _load_document(ctx: Context) -> list[Any]:
    name = ctx.args.file
    source = sys.stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    with source:
        try:
            document = json.load(source)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise InvalidInput(f"{name}: JSON nested too deeply") from None
    server = document.get("server") if isinstance(document, dict) else None
    if server is not None and server != ctx.server:
        raise InvalidInput(
            f"{name} is an export of the {server} server's tenants, and this is --server {ctx.server}: "
            f"run `mcp-tenants --server {server} import {name}`"
        )
    entries = document.get("tenants") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise InvalidInput(f"{name}: expected an export document or a JSON list of tenants")
    other = "minio" if ctx.server == "postgres" else "postgres"
    theirs = {f.name for f in dataclasses.fields(config_type_of(other))} - {
        f.name for f in dataclasses.fields(ctx.config_type)
    }
    for entry in entries:
        foreign = sorted(set(entry) & theirs) if isinstance(entry, dict) else []
        if foreign:
            raise InvalidInput(
                f"{name} holds {other} tenants ({foreign[0]} is a {other} field), and this is --server "
                f"{ctx.server}: run `mcp-tenants --server {other} import {name}`"
            )
    secrets = ctx.config_type.SECRET_FIELDS
    if entries and all(isinstance(e, dict) and not any(e.get(s) for s in secrets) for e in entries):
        raise InvalidInput(
            f"{name} holds no {'/'.join(secrets)} for any tenant: it is an export made without secrets. "
            "Make one with `mcp-tenants export --include-secrets > FILE` (it holds secrets in plain text: "
            "keep it safe), or add each tenant with `mcp-tenants add`"
        )
    return entries


def _entry_problem(ctx: Context, entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "not a JSON object"
    for key in entry:
        problem = None if key in _LISTING_KEYS or key == "tenant_id" else field_problem(ctx, str(key))
        if problem:
            return problem
    for secret in ctx.config_type.SECRET_FIELDS:
        if not entry.get(secret):
            return f"no {secret} (exported without --include-secrets?)"
    return None


def cmd_import(ctx: Context) -> int:
    """Store the tenants of an export document (or a JSON list of tenants)."""
    entries = _load_document(ctx)
    env_ids = ctx.env.ids
    results: dict[str, str] = {}
    ctx.connect()
    for index, entry in enumerate(entries):
        label = str(entry.get("tenant_id")) if isinstance(entry, dict) else f"#{index + 1}"
        try:
            problem = _entry_problem(ctx, entry)
            if problem:
                raise InvalidInput(problem)
            tenant_id = validate_tenant_id(entry.get("tenant_id"))
            if tenant_id in env_ids:
                raise InvalidInput(f"defined in the environment ({ctx.env_variables(tenant_id)}), which wins")
            # Imported by the operator: trusted (its target is not checked on connect).
            fields = {k: v for k, v in entry.items() if k not in _LISTING_KEYS}
            config = ctx.config_type.from_dict({**fields, "origin": "cli"})
            if not ctx.args.replace and ctx.store.get(tenant_id) is not None:
                results[label] = "skipped (exists; use --replace)"
                continue
            if ctx.args.verify:
                ctx.backend.verify(config)
            ctx.store.put(config, queue=False)
            results[label] = "imported"
        except TenantsError as exc:
            results[label] = f"failed: {redact(str(exc))}"
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
