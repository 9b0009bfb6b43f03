"""JSON that is already encoded, carried to the client without being parsed and encoded again.

A tool may put a ``RawJson`` at the top level of its result (the PostgreSQL server does, for
rows that PostgreSQL serialised itself). The core splices its text into the result's text block,
and the stdio transport splices it into the message it writes; a transport that cannot (the
SDK's streamable HTTP) gets the parsed value instead (``decoded``).

Splicing works by serialising a unique placeholder string in its place and replacing the
placeholder's JSON form in the output: one ``bytes.replace`` per value, however large.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from typing import Any

import pydantic_core

# Placeholders: a random prefix per process (a caller cannot guess it, so no value of theirs can
# be taken for one) and a counter (unique, and cheaper than a random value per placeholder).
_PLACEHOLDER_PREFIX = f"\x00rawjson:{uuid.uuid4().hex}:"
_placeholder_numbers = itertools.count()


class RawJson:
    """One JSON value as text. The producer vouches that ``text`` is valid, compact JSON."""

    __slots__ = ("_placeholder", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._placeholder = f"{_PLACEHOLDER_PREFIX}{next(_placeholder_numbers)}"

    def decode(self) -> Any:
        """The value as Python objects."""
        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"RawJson({len(self.text)} characters)"

    def __eq__(self, other: object) -> bool:
        """Equal to another ``RawJson`` of the same text, or to the value its text stands for."""
        if isinstance(other, RawJson):
            return self.text == other.text
        return bool(self.decode() == other)

    __hash__ = None  # type: ignore[assignment]  # compares by value, like the list or dict it stands for


class Splicer:
    """Serialises objects that may hold ``RawJson`` values, then puts their text in place."""

    def __init__(self) -> None:
        self._found: list[RawJson] = []

    def fallback(self, value: Any) -> Any:
        """For ``to_json``/``model_dump_json``: a ``RawJson`` becomes its placeholder."""
        if isinstance(value, RawJson):
            self._found.append(value)
            return value._placeholder
        return str(value)

    def splice(self, data: bytes) -> bytes:
        """``data`` with each placeholder met so far replaced by its JSON text."""
        for raw in self._found:
            data = data.replace(json.dumps(raw._placeholder).encode(), raw.text.encode(), 1)
        self._found.clear()
        return data


def dumps(value: Any) -> str:
    """Compact JSON text of ``value``, ``RawJson`` values spliced in; other unknown types as str."""
    splicer = Splicer()
    return splicer.splice(pydantic_core.to_json(value, fallback=splicer.fallback)).decode()


def decoded(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` with its top-level ``RawJson`` values parsed."""
    return {key: value.decode() if isinstance(value, RawJson) else value for key, value in result.items()}


def holds_raw(result: Mapping[str, Any]) -> bool:
    """True when a top-level value of ``result`` is a ``RawJson``."""
    return any(isinstance(value, RawJson) for value in result.values())
