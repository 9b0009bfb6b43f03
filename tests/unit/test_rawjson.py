"""Pre-encoded JSON reaches the output as it was, exactly where its value would have been."""

from __future__ import annotations

import json

import mcp_types as types

from mcp_tenants.rawjson import RawJson, Splicer, decoded, dumps, holds_raw


def test_dumps_splices_the_text_in_place_of_the_value():
    result = {"columns": [{"name": "a"}], "rows": RawJson('[[1,"x"],[2,"\\u00e9"]]'), "row_count": 2}
    text = dumps(result)
    assert json.loads(text) == {"columns": [{"name": "a"}], "rows": [[1, "x"], [2, "é"]], "row_count": 2}
    assert holds_raw(result) and decoded(result)["rows"] == [[1, "x"], [2, "é"]]


def test_a_protocol_message_carries_raw_values_inside_its_structured_content():
    rows = RawJson("[[1],[2]]")
    text = dumps({"rows": rows})
    message = types.JSONRPCResponse(
        jsonrpc="2.0",
        id=7,
        result={"content": [{"type": "text", "text": text}], "structuredContent": {"rows": rows}, "isError": False},
    )
    splicer = Splicer()
    line = splicer.splice(message.model_dump_json(by_alias=True, fallback=splicer.fallback).encode())
    sent = json.loads(line)
    assert sent["result"]["structuredContent"] == {"rows": [[1], [2]]}
    assert json.loads(sent["result"]["content"][0]["text"]) == {"rows": [[1], [2]]}


def test_a_value_that_looks_like_a_placeholder_is_left_alone():
    rows = RawJson("[1]")
    other = rows._placeholder.replace("rawjson", "rawjsom")
    assert json.loads(dumps({"rows": rows, "note": other})) == {"rows": [1], "note": other}


def test_raw_json_compares_by_the_value_it_stands_for() -> None:
    assert RawJson("[[1, 2]]") == [[1, 2]]
    assert RawJson("[[1,2]]") != [[1, 3]]
    assert RawJson("[1]") == RawJson("[1]")
