"""One page of ``list_tenants``: what this process holds, merged with what Redis stores."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from mcp_tenants.config import TenantConfig
from mcp_tenants.errors import StoreUnavailable
from mcp_tenants.store import TenantStore


def list_page(
    known: Mapping[str, tuple[TenantConfig, str]],
    invalid_env: dict[str, str],
    store: TenantStore[Any] | None,
    *,
    limit: int,
    after: str | None,
    visible: Callable[[str], bool] | None = None,
) -> tuple[list[dict[str, Any]], str | None, dict[str, str]]:
    """A page of tenants sorted by id, starting after ``after``.

    ``known``: id -> (config, source) of the tenants in memory; ``invalid_env``: id -> error of
    the environment's invalid tenants. Returns (tenants, next cursor or None, unreadable entries
    of this page: stored entries that cannot be read and invalid environment tenants, each with
    its error). Tenants stored by other processes are listed too; only the page's entries are
    read from Redis, and a Redis that is down leaves the page to what this process knows.
    ``visible`` keeps only the tenants (and unreadable entries) a caller may see.
    """
    known = dict(known)
    ids = set(known) | set(invalid_env)
    strange: dict[str, str] = {}
    if store is not None:
        with contextlib.suppress(StoreUnavailable):  # list what this process knows
            stored_ids, strange_keys = store.scan()
            ids |= stored_ids
            if after is None:  # keys that name no tenant: reported once, on the first page
                bad_keys = store.strange_key_errors(strange_keys)
                strange = {k: str(v) for k, v in bad_keys.items() if visible is None or visible(k)}
    ordered = sorted(tid for tid in ids if (after is None or tid > after) and (visible is None or visible(tid)))
    page, more = ordered[:limit], len(ordered) > limit
    errors = {**strange, **{tid: invalid_env[tid] for tid in page if tid in invalid_env}}
    missing = [tid for tid in page if tid not in known and tid not in invalid_env]
    if missing and store is not None:
        try:
            stored, corrupt = store.load_many(missing)
        except StoreUnavailable:
            stored, corrupt = {}, {}
        known.update({tid: (cfg, "redis") for tid, cfg in stored.items()})  # another process's
        errors.update({tid: str(exc) for tid, exc in corrupt.items()})
    pending = store.pending_ids() if store is not None else set()
    tenants = []
    for tid in page:
        if tid not in known:
            continue
        config, source = known[tid]
        if source != "env":
            source = "memory" if store is None or tid in pending else "redis"
        tenants.append({**config.public(), "source": source})
    return tenants, (page[-1] if more and page else None), errors
