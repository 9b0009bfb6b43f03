"""The Redis client factory every part of the project uses (store, CLI, keys, audit)."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mcp_tenants.config import RedisSettings


def make_redis_client(settings: RedisSettings, *, timeout: float = 2.0) -> redis.Redis:
    """A Redis client that fails fast: short timeouts and a single retry."""
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
        "decode_responses": True,
        "health_check_interval": 30,
    }
    kwargs = settings.client_kwargs()
    url = kwargs.pop("url", None)
    if url:
        return redis.Redis.from_url(url, username=settings.username, password=settings.password, **options)
    return redis.Redis(**kwargs, **options)
