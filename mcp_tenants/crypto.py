"""Encryption of secret fields at rest.

A sealed field is stored as ``{"fernet": "<token>"}``. A plain secret is always a string, so the
two forms can never be mistaken for each other, and entries written either way read either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mcp_tenants.errors import CorruptEntry, InvalidInput

SEALED_KEY = "fernet"


def generate_key() -> str:
    """A new Fernet key, as text for ``MCP_TENANT_ENCRYPTION_KEY``."""
    return Fernet.generate_key().decode()


class SecretCodec:
    """Seals and opens the secret fields of a tenant entry.

    With no key it stores secrets as given (plain text) and still opens sealed ones only if it
    can: an entry sealed by another process with a key this one lacks fails with ``CorruptEntry``.
    """

    def __init__(self, keys: Sequence[str] = ()) -> None:
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                # The key itself is a secret: name its position, never its value.
                raise InvalidInput(
                    f"MCP_TENANT_ENCRYPTION_KEY: key #{index + 1} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `mcp-tenants generate-key`)"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None
        self._current = fernets[0] if fernets else None

    @property
    def enabled(self) -> bool:
        """True when secrets are encrypted on write."""
        return self._fernet is not None

    def seal(self, data: Mapping[str, Any], secret_fields: Iterable[str]) -> dict[str, Any]:
        """A copy of ``data`` with each secret field encrypted (unchanged without a key)."""
        sealed = dict(data)
        if self._fernet is None:
            return sealed
        for name in secret_fields:
            value = sealed.get(name)
            if isinstance(value, str):
                sealed[name] = {SEALED_KEY: self._fernet.encrypt(value.encode()).decode()}
        return sealed

    def open(self, data: Mapping[str, Any], secret_fields: Iterable[str], *, tenant_id: str) -> dict[str, Any]:
        """A copy of ``data`` with each sealed secret field decrypted."""
        opened = dict(data)
        for name in secret_fields:
            value = opened.get(name)
            if not isinstance(value, dict):
                continue
            if self._fernet is None:
                raise CorruptEntry(
                    f"tenant {tenant_id!r}: field {name!r} is encrypted but MCP_TENANT_ENCRYPTION_KEY is not set"
                )
            try:
                opened[name] = self._fernet.decrypt(str(value.get(SEALED_KEY, "")).encode()).decode()
            except (InvalidToken, UnicodeDecodeError):
                raise CorruptEntry(
                    f"tenant {tenant_id!r}: field {name!r} cannot be decrypted with the configured "
                    "MCP_TENANT_ENCRYPTION_KEY (wrong key, or the key it was written with was removed)"
                ) from None
        return opened

    def is_sealed_with_current(self, data: Mapping[str, Any], secret_fields: Iterable[str]) -> bool:
        """True when every secret field is sealed with the first (current) key."""
        if self._current is None:
            return all(not isinstance(data.get(name), dict) for name in secret_fields)
        for name in secret_fields:
            value = data.get(name)
            if value is None:
                continue
            if not isinstance(value, dict):
                return False
            try:
                self._current.decrypt(str(value.get(SEALED_KEY, "")).encode())
            except InvalidToken:
                return False
        return True
