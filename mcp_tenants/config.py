"""Tenant configs: their fields, parsing from the environment, validation, and the redaction of
their secrets. (The process's own settings are in ``settings``.)

Everything here is built once and then read-only (frozen dataclasses), so it is shared between
threads without locks. Validation happens where a value is built; every error names the field and
the bad value, except for secrets, whose value is never repeated.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit, urlunsplit

from mcp_tenants.errors import InvalidInput

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ACCESS_MODES = ("read-only", "read-write")
#: Where a tenant came from: a tool call (checked on every connect), the operator CLI, the environment.
ORIGINS = ("tool", "cli", "env")
REDACTED = "***"


def shown(value: object, limit: int = 60) -> str:
    """A bad value as it may appear in an error message: repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_tenant_id(value: object) -> str:
    """Return ``value`` if it is a valid tenant id, else raise ``InvalidInput``."""
    if not isinstance(value, str) or not _TENANT_ID_RE.fullmatch(value):
        raise InvalidInput(
            f"tenant_id {shown(value)} is invalid: use 1-64 characters of lower-case letters, "
            "digits, '_' and '-', starting with a letter or digit"
        )
    return value


def validate_access(value: object) -> str:
    """Return ``value`` if it is a known access mode, else raise ``InvalidInput``."""
    if value not in ACCESS_MODES:
        raise InvalidInput(f"access {shown(value)} is invalid: use 'read-only' or 'read-write'")
    return str(value)


def parse_bool(name: str, value: str) -> bool:
    """Parse a boolean setting (true/false, 1/0, yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{name}={shown(value)} is not a boolean: use true or false")


def parse_int(name: str, value: str, *, minimum: int, maximum: int) -> int:
    """Parse an integer setting within ``[minimum, maximum]``."""
    try:
        number = int(value.strip())
    except ValueError:
        raise InvalidInput(f"{name}={shown(value)} is not an integer") from None
    if not minimum <= number <= maximum:
        raise InvalidInput(f"{name}={number} is out of range: use {minimum}..{maximum}")
    return number


def mask_url(url: str) -> str:
    """The URL with any password in it replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}{REDACTED}@{netloc}"))


class Redactor:
    """Masks known secret strings in text; the one mechanism used for errors and logs.

    Secrets are indexed by their first 4, 8 or 16 characters (the longest their length allows),
    so masking costs a few dict lookups per character of text however many tenants (secrets)
    the process knows, even when many secrets share a beginning. Most text holds no secret: one
    set intersection of its 4-character windows with the secrets' first four characters says so
    at C speed, and only text that shares such a window is scanned.
    Thread-safety: ``add`` takes a lock and only ever appends to a bucket; appending to a list
    that another thread iterates is safe in CPython, so ``__call__`` reads without a lock.
    """

    # Secrets shorter than this are not masked: masking "a" would garble every message,
    # and such a value protects nothing anyway.
    MIN_LENGTH = 4
    _WIDTHS = (16, 8, 4)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._index: dict[int, dict[str, list[str]]] = {width: {} for width in self._WIDTHS}
        self._heads: set[str] = set()  # the first MIN_LENGTH characters of every secret

    def add(self, *secrets: str | None) -> None:
        """Remember more secrets to mask."""
        with self._lock:
            for secret in secrets:
                if isinstance(secret, str) and len(secret) >= self.MIN_LENGTH and secret not in self._known:
                    self._known.add(secret)
                    self._heads.add(secret[: self.MIN_LENGTH])
                    width = next(w for w in self._WIDTHS if len(secret) >= w)
                    self._index[width].setdefault(secret[:width], []).append(secret)

    def _match(self, text: str, position: int) -> str | None:
        """The longest known secret that starts at ``position``, if any."""
        found: str | None = None
        for width, index in self._index.items():
            for secret in index.get(text[position : position + width], ()):
                if text.startswith(secret, position) and (found is None or len(secret) > len(found)):
                    found = secret
        return found

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if not self._known:
            return text
        width = self.MIN_LENGTH
        windows = {text[i : i + width] for i in range(len(text) - width + 1)}
        # Membership tests only: ``add`` may grow the set meanwhile, which iterating it would not allow.
        if not any(map(self._heads.__contains__, windows)):
            return text
        parts: list[str] = []
        start = position = 0
        while position <= len(text) - self.MIN_LENGTH:
            found = self._match(text, position)
            if found is None:
                position += 1
                continue
            parts += [text[start:position], REDACTED]
            position = start = position + len(found)
        return "".join([*parts, text[start:]]) if parts else text


#: The process-wide redactor: tenant configs register their secrets here when built.
redact = Redactor()


@dataclass(frozen=True)
class TenantConfig:
    """Fields and behaviour shared by every kind of tenant config."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    #: Environment variable prefix of this kind, e.g. ``POSTGRES_TENANT_``.
    ENV_PREFIX: ClassVar[str] = ""

    tenant_id: str
    access: str = field(default="read-only", kw_only=True)
    #: Provenance, stored with the entry; an entry stored without it counts as tool-registered.
    origin: str = field(default="tool", kw_only=True)

    def __post_init__(self) -> None:
        validate_tenant_id(self.tenant_id)
        validate_access(self.access)
        if self.origin not in ORIGINS:
            raise InvalidInput(f"origin {shown(self.origin)} is invalid: use tool, cli or env")
        redact.add(*(getattr(self, name) for name in self.SECRET_FIELDS))

    def target_host(self) -> str:
        """The host this tenant connects to, for the registration guard."""
        raise NotImplementedError

    @property
    def writable(self) -> bool:
        """True for a ``read-write`` tenant."""
        return self.access == "read-write"

    def to_dict(self) -> dict[str, Any]:
        """Every field, secrets included: for the store only, never for a result or a log."""
        return dataclasses.asdict(self)

    def redacted(self) -> dict[str, Any]:
        """Every field, with secrets replaced by ``***``."""
        data = self.to_dict()
        for name in self.SECRET_FIELDS:
            if data.get(name):
                data[name] = REDACTED
        return data

    @property
    def trusted(self) -> bool:
        """True for environment and CLI tenants, whose targets are not checked."""
        return self.origin != "tool"

    def public(self) -> dict[str, Any]:
        """The fields that results and listings show: every field but the secrets (and the origin)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.SECRET_FIELDS and k != "origin"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a stored or submitted mapping; unknown keys are ignored, missing ones named."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {key: value for key, value in data.items() if key in names}
        try:
            return cls(**kwargs)
        except TypeError:
            required = sorted(
                f.name
                for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            missing = [name for name in required if name not in kwargs]
            raise InvalidInput(f"missing field(s): {', '.join(missing) or '?'}") from None

    @classmethod
    def env_ids(cls, environ: Mapping[str, str]) -> set[str]:
        """Tenant ids defined by ``<ENV_PREFIX><ID>_<FIELD>`` variables (lower-cased)."""
        ids = set()
        prefix = cls.ENV_PREFIX
        for key in environ:
            if key.upper().startswith(prefix):
                rest = key[len(prefix) :]
                for suffix in cls.env_fields():
                    if rest.upper().endswith("_" + suffix.upper()) and len(rest) > len(suffix) + 1:
                        ids.add(rest[: -len(suffix) - 1].lower())
                        break
        return ids

    @classmethod
    def env_fields(cls) -> dict[str, str]:
        """Environment suffix → field name; subclasses extend it."""
        return {"ACCESS": "access"}

    @classmethod
    def env_variable(cls, tenant_id: str, field: str) -> str:
        """The environment variable that sets ``field`` of tenant ``tenant_id``."""
        suffix = next(suffix for suffix, name in cls.env_fields().items() if name == field)
        return f"{cls.ENV_PREFIX}{tenant_id.upper()}_{suffix}"

    @classmethod
    def required_fields(cls) -> list[str]:
        """Fields without a default, in declaration order (``tenant_id`` left out)."""
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.name != "tenant_id" and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    @classmethod
    def from_env(cls, tenant_id: str, environ: Mapping[str, str]) -> Self | None:
        """The tenant ``tenant_id`` as defined in ``environ``, or None when it is not there.

        An invalid definition raises ``InvalidInput`` naming the variable to fix (never its value
        when it is a secret).
        """
        validate_tenant_id(tenant_id)
        prefix = f"{cls.ENV_PREFIX}{tenant_id.upper()}_"
        variables = {name: cls.env_variable(tenant_id, name) for name in cls.env_fields().values()}
        wanted = {variable.upper(): name for name, variable in variables.items()}
        values: dict[str, Any] = {}
        for key, value in environ.items():
            name = wanted.get(key.upper())
            if name is not None:
                values[name] = value
        if not values:
            return None
        problems = [f"{variables[name]} is not set" for name in cls.required_fields() if name not in values]
        try:
            coerced = cls.coerce_env(values)
            if not problems:
                return cls.from_dict({**coerced, "tenant_id": tenant_id, "origin": "env"})
        except InvalidInput as exc:
            # Validators name the field first ("port 'abc' is ...", "PORT='abc' is ..."): name its variable.
            text = str(exc)
            longest_first = sorted(variables.items(), key=lambda item: -len(item[0]))  # access_key before access
            culprit = next((v for n, v in longest_first if text.lower().startswith(n.lower())), f"{prefix}*")
            problems.append(f"{culprit}: {text}")
        raise InvalidInput(f"environment tenant {tenant_id!r}: {'; '.join(problems)}")

    @classmethod
    def coerce_env(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Convert string values from the environment to field types; subclasses extend it."""
        return values


def env_tenants(config_type: type[TenantConfig], environ: Mapping[str, str]) -> dict[str, TenantConfig]:
    """Every tenant of ``config_type`` defined in ``environ``, by id."""
    tenants: dict[str, TenantConfig] = {}
    for tenant_id in sorted(config_type.env_ids(environ)):
        config = config_type.from_env(tenant_id, environ)
        if config is not None:
            tenants[tenant_id] = config
    return tenants
