"""Scoped redaction: what one call returns masks only the secrets that call could meet.

The process-wide ``config.redact`` masks every secret the process knows, which is right for logs
and wrong for tool output: a caller who can make text come back (``SELECT $$guess1 guess2$$::int``
echoes its input in the error) would learn, from which word comes back masked, another tenant's
password. So a call's result and error mask only:

- the secrets of the tenant the call used, and the server's own (auth token, Redis password,
  encryption keys), since those are the only ones its own code paths could leak;
- and never a secret that occurs in the call's own arguments: the caller already sent that text,
  so masking it would only confirm a guess.

Residual risk, by construction of any masking: text a caller makes the database compute (not
send) is still masked when it equals the used tenant's or the server's own secret. Keep those
secrets long and random (the generated tokens and keys are).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mcp_tenants.config import Redactor


def _strings(value: Any) -> Iterator[str]:
    """Every string inside an argument value (dict keys and values, list items)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def tenant_secrets(config: Any) -> list[str]:
    """The secret field values of a tenant config (``password``, ``secret_key``)."""
    return [value for name in config.SECRET_FIELDS if isinstance(value := getattr(config, name, None), str)]


class ScopedRedaction:
    """Builds the redactor of each call. Immutable after construction: thread-safe."""

    def __init__(self, server_secrets: Iterable[str | None] = ()) -> None:
        self._server = tuple(s for s in server_secrets if s)

    @classmethod
    def from_settings(cls, settings: Any, *extra: str | None) -> ScopedRedaction:
        """The server's own secrets: auth token, Redis and Sentinel passwords, encryption keys, and ``extra``."""
        from urllib.parse import unquote, urlsplit

        redis = settings.redis
        url_password = urlsplit(redis.url).password if redis.url else None
        return cls(
            [
                settings.auth_token,
                redis.password,
                url_password,
                unquote(url_password) if url_password else None,
                getattr(redis, "sentinel_password", None),
                *settings.encryption_keys,
                *extra,
            ]
        )

    def for_call(self, tenant_secrets: Iterable[str | None], arguments: Mapping[str, Any]) -> Redactor:
        """The redactor for one call's result and error text."""
        texts = [*_strings(arguments), json.dumps(arguments, default=str)]
        redactor = Redactor()
        for secret in (*self._server, *tenant_secrets):
            if secret and not any(secret in text for text in texts):
                redactor.add(secret)
        return redactor
