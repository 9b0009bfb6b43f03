"""The stored form of a tenant: key names, the JSON value, sealed secrets, and every way it can be bad.

A value in Redis may have been written by anyone with access to it: by an older version, by hand
with ``redis-cli``, or by an attacker. Decoding therefore treats it as untrusted input. Whatever
is wrong with it (not UTF-8, not JSON, nested 50,000 deep, megabytes long, the wrong Redis type,
a field of the wrong type, sealed with a key this process lacks) becomes a ``CorruptEntry`` that
names the tenant and the key, and never affects another tenant.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Generic, TypeVar

from mcp_tenants.config import TenantConfig, shown, validate_tenant_id
from mcp_tenants.crypto import SecretCodec
from mcp_tenants.errors import CorruptEntry, InvalidInput

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TenantConfig)

#: A tenant entry is a few hundred bytes; anything far larger was not written by us.
MAX_ENTRY_BYTES = 64 * 1024


def key_prefix(server: str) -> str:
    """The Redis key prefix of a server's tenants."""
    return f"mcp:{server}:tenant:"


def events_channel(server: str) -> str:
    """The pub/sub channel on which every write to a server's tenants is announced."""
    return f"mcp:{server}:tenant-events"


def changes_key(server: str) -> str:
    """The Redis stream that logs every write to a server's tenants (``changelog.py``)."""
    return f"mcp:{server}:tenant-changes"


def key_label(suffix: bytes) -> str:
    """A printable, unambiguous name for the part of a key after the prefix (bytes escaped)."""
    return suffix.decode("utf-8", errors="backslashreplace")


class EntryCodec(Generic[C]):
    """Turns configs into stored values and stored values (bytes) back into configs."""

    def __init__(self, server: str, config_type: type[C], codec: SecretCodec) -> None:
        self.prefix = key_prefix(server)
        self.config_type = config_type
        self.codec = codec

    def key(self, tenant_id: str) -> str:
        """The Redis key of a tenant."""
        return self.prefix + validate_tenant_id(tenant_id)

    def encode(self, config: TenantConfig) -> dict[str, Any]:
        """The JSON object stored for ``config``: secret fields sealed when a key is set."""
        return self.codec.seal(config.to_dict(), config.SECRET_FIELDS)

    def decode(self, tenant_id: str, raw: bytes | str | dict[str, Any]) -> C:
        """Parse a stored value (or a pending entry); any defect is a ``CorruptEntry`` naming the tenant."""
        try:
            return self._decode(tenant_id, raw)
        except CorruptEntry:
            raise
        except Exception as exc:  # untrusted data: whatever else breaks stays this tenant's problem
            logger.debug("decoding tenant %r failed", tenant_id, exc_info=True)
            raise self.corrupt(tenant_id, f"cannot be read ({type(exc).__name__})") from None

    def corrupt(self, tenant_id: str, what: str) -> CorruptEntry:
        """The error for a bad entry: names the tenant, the key and how to remove it."""
        return CorruptEntry(
            f"tenant {tenant_id!r}: the stored entry {self.prefix}{tenant_id} {what}; "
            f"remove it with remove_tenant or `mcp-tenants remove {tenant_id}`, then register the tenant again"
        )

    def _decode(self, tenant_id: str, raw: bytes | str | dict[str, Any]) -> C:
        if isinstance(raw, dict):
            data: Any = raw
        else:
            if len(raw) > MAX_ENTRY_BYTES:
                raise self.corrupt(tenant_id, f"is {len(raw)} bytes long (at most {MAX_ENTRY_BYTES})")
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.corrupt(tenant_id, "is not UTF-8 text") from None
            try:
                data = json.loads(raw)
            except RecursionError:
                raise self.corrupt(tenant_id, "is JSON nested too deeply") from None
            except ValueError:
                raise self.corrupt(tenant_id, "is not valid JSON") from None
        if not isinstance(data, dict):
            raise self.corrupt(tenant_id, "is not a JSON object")
        data = self.codec.open(data, self.config_type.SECRET_FIELDS, tenant_id=tenant_id)
        if data.get("tenant_id", tenant_id) != tenant_id:
            raise self.corrupt(tenant_id, f"holds tenant_id {shown(data.get('tenant_id'))}, not its own")
        data["tenant_id"] = tenant_id
        try:
            return self.config_type.from_dict(data)
        except InvalidInput as exc:
            raise self.corrupt(tenant_id, f"is invalid: {exc}") from None
