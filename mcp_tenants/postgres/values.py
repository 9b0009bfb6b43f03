"""JSON values in and out: parameters to bind, and JSON-safe result values.

Choices, so that a client reading the JSON gets exactly what PostgreSQL holds:

- integers and ``numeric`` become JSON numbers only when an IEEE double represents them exactly
  (``|n| <= 2**53``, or a decimal whose shortest float repr reads back equal); otherwise the
  exact decimal text as a string, so no JavaScript client silently rounds an id or an amount.
  ``numeric`` NaN/Infinity and float NaN/Infinity become "NaN", "Infinity", "-Infinity".
- date, time, timestamp and timestamptz: ISO 8601 (``isoformat()``); values Python cannot hold
  ('infinity', BC dates, years past 9999) keep PostgreSQL's own text.
- interval: PostgreSQL's ISO 8601 duration text (``IntervalStyle = iso_8601`` is set for the
  query), e.g. "P1M2DT3H"; never converted through timedelta, which would turn months into days.
- json/jsonb: the decoded object; bytea: base64; arrays: lists; ranges: objects with lower,
  upper, bounds and empty; uuid, inet, cidr, enums and any type without a loader: its text.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import ipaddress
import json
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import errors as pg_errors
from psycopg.abc import Loader as LoaderProtocol
from psycopg.adapt import AdaptersMap, Buffer, Loader
from psycopg.types.json import Jsonb
from psycopg.types.multirange import Multirange
from psycopg.types.range import Range
from psycopg.types.string import TextLoader

JsonValue = Any  # None | bool | int | float | str | list | dict, recursively

_MAX_EXACT_INT = 2**53


def bind_params(params: Sequence[Any]) -> list[Any]:
    """Adapt JSON parameter values for psycopg: objects (and lists holding one) become jsonb.

    Strings go as PostgreSQL's ``unknown`` type, so ``$1`` takes the type its context needs
    (a date, an int, ...); numbers, booleans and null bind as themselves; lists of scalars bind
    as arrays (``= ANY($1)``).
    """
    return [Jsonb(p) if isinstance(p, dict) or _holds_object(p) else p for p in params]


def _holds_object(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(v, dict) or _holds_object(v) for v in value)


def to_json(value: Any) -> JsonValue:
    """Convert one value loaded by psycopg into a JSON-safe value (see the module docstring)."""
    converter = _CONVERTERS.get(type(value))
    if converter is not None:
        return converter(value)
    for kind, converter in _CONVERTERS.items():
        if isinstance(value, kind):
            return converter(value)
    return str(value)


def json_size(value: JsonValue) -> int:
    """Bytes of ``value`` as compact JSON (ASCII-escaped, so a non-ASCII text is not undercounted)."""
    return len(json.dumps(value, separators=(",", ":")))


def text_loaders(adapters: AdaptersMap) -> None:
    """Register, on a cursor's adapters, loaders that never lose or reject a value."""
    adapters.register_loader("interval", TextLoader)
    for name in ("date", "timestamp", "timestamptz"):
        default = adapters.get_loader(adapters.types[name].oid, TextLoader.format)
        if default is not None:
            adapters.register_loader(name, _with_text_fallback(default))


@functools.cache  # one class per default loader: a class per call cost more than the query
def _with_text_fallback(default: type[LoaderProtocol]) -> type[Loader]:
    """Wrap a date/time loader so out-of-range values come back as PostgreSQL's text."""

    class FallbackLoader(Loader):
        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._inner = default(oid, context)

        def load(self, data: Buffer) -> Any:
            try:
                return self._inner.load(data)
            except pg_errors.DataError:
                # 'infinity', BC dates and years past 9999 do not fit Python's datetime.
                return bytes(data).decode()

    FallbackLoader.__name__ = f"Fallback{default.__name__}"
    return FallbackLoader


def _int(value: int) -> JsonValue:
    return value if -_MAX_EXACT_INT <= value <= _MAX_EXACT_INT else str(value)


def _float(value: float) -> JsonValue:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _decimal(value: decimal.Decimal) -> JsonValue:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    if value == value.to_integral_value():
        return _int(int(value)) if value.adjusted() < 20 else format(value, "f")
    as_float = float(value)
    # The float's shortest repr reads back as the same decimal: the JSON number is exact.
    if decimal.Decimal(repr(as_float)) == value:
        return as_float
    return format(value, "f")  # positional, as PostgreSQL prints it (never "1E-9")


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _range(value: Range[Any]) -> JsonValue:
    if value.isempty:
        return {"lower": None, "upper": None, "bounds": None, "empty": True}
    return {
        "lower": to_json(value.lower),
        "upper": to_json(value.upper),
        "bounds": value.bounds,
        "empty": False,
    }


def _mapping(value: dict[Any, Any]) -> JsonValue:
    return {str(k): to_json(v) for k, v in value.items()}


def _sequence(value: list[Any] | tuple[Any, ...] | Multirange[Any]) -> JsonValue:
    return [to_json(v) for v in value]


def _plain(value: Any) -> JsonValue:
    return value


# Exact types first (a dict lookup); to_json falls back to isinstance in this order, so bool
# stays before int and datetime before date.
_CONVERTERS: dict[type, Callable[[Any], JsonValue]] = {
    type(None): _plain,
    bool: _plain,
    str: _plain,
    int: _int,
    float: _float,
    decimal.Decimal: _decimal,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    dt.timedelta: lambda v: f"P{v.days}DT{v.seconds + v.microseconds / 1e6:g}S",
    uuid.UUID: str,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    Range: _range,
    Multirange: _sequence,
    dict: _mapping,
    list: _sequence,  # arrays, multiranges, and JSON arrays
    tuple: _sequence,  # anonymous records
    ipaddress.IPv4Address: str,
    ipaddress.IPv6Address: str,
    ipaddress.IPv4Interface: str,
    ipaddress.IPv6Interface: str,
    ipaddress.IPv4Network: str,
    ipaddress.IPv6Network: str,
}
