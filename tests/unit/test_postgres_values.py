"""JSON conversion of result values and binding of JSON parameters, without a database."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from mcp_tenants.postgres.values import bind_params, json_size, to_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (42, 42),
        (2**53, 2**53),
        (2**53 + 1, "9007199254740993"),
        (-(2**63), "-9223372036854775808"),
        (1.5, 1.5),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (Decimal("1234.50"), 1234.5),
        (Decimal("0.1"), 0.1),
        (Decimal("100"), 100),
        (Decimal("12345678901234567890.5"), "12345678901234567890.5"),
        (Decimal("0.1000000000000000000001"), "0.1000000000000000000001"),
        (Decimal("0.000000001234567890123456789"), "0.000000001234567890123456789"),
        (Decimal("1E+30"), "1000000000000000000000000000000"),
        (Decimal("NaN"), "NaN"),
        (Decimal("-Infinity"), "-Infinity"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 2, 29, 13, 14, 15, 500000), "2024-02-29T13:14:15.500000"),
        (dt.datetime(2024, 2, 29, 13, 14, tzinfo=dt.UTC), "2024-02-29T13:14:00+00:00"),
        (dt.time(1, 2, 3), "01:02:03"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"\xde\xad\xbe\xef", "3q2+7w=="),
        (memoryview(b"ab"), "YWI="),
        (ipaddress.ip_interface("10.0.0.1/8"), "10.0.0.1/8"),
        (ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
        ([1, [2, None]], [1, [2, None]]),
        ({"a": Decimal("1.5"), "b": [float("nan")]}, {"a": 1.5, "b": ["NaN"]}),
        (("1", "a"), ["1", "a"]),
        (Range(1, 5), {"lower": 1, "upper": 5, "bounds": "[)", "empty": False}),
        (Range(empty=True), {"lower": None, "upper": None, "bounds": None, "empty": True}),
    ],
)
def test_to_json(value: Any, expected: Any) -> None:
    converted = to_json(value)
    assert converted == expected and type(converted) is type(expected)
    json.dumps(converted, allow_nan=False)


def test_unknown_types_become_their_text() -> None:
    class Point:
        def __str__(self) -> str:
            return "(1,2)"

    assert to_json(Point()) == "(1,2)"


def test_json_size_counts_escaped_non_ascii() -> None:
    assert json_size(["é"]) == len('["\\u00e9"]')


def test_bind_params_turns_objects_into_jsonb() -> None:
    bound = bind_params(["s", 1, None, [1, 2], {"k": 1}, [{"k": 1}]])
    assert bound[:4] == ["s", 1, None, [1, 2]]
    assert isinstance(bound[4], Jsonb) and isinstance(bound[5], Jsonb)
