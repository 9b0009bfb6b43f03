"""Tool definitions: the schemas a client sees and the argument errors it gets."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import Field
from typing_extensions import TypedDict

from mcp_tenants.errors import InvalidInput
from mcp_tenants.server import READS, WRITES
from mcp_tenants.toolspec import build_spec

SECRET = "hunter2-do-not-echo"


class Rows(TypedDict):
    rows: list[list[Any]]
    names: list[str]
    row_count: int


def register_tenant(
    tenant_id: str,
    host: str,
    password: str,
    port: Annotated[int, Field(ge=1, le=65535)] = 5432,
    access: Literal["read-only", "read-write"] = "read-only",
) -> Rows:
    """Register."""
    return {"rows": [], "names": [], "row_count": 0}


def query(tenant_id: str, sql: str) -> Rows:
    """Query."""
    return {"rows": [], "names": [], "row_count": 0}


def test_listing_describes_arguments_and_results_without_pydantic_titles():
    spec = build_spec(register_tenant, WRITES)
    listing = spec.listing
    assert listing.input_schema["required"] == ["tenant_id", "host", "password"]
    port = {"default": 5432, "maximum": 65535, "minimum": 1, "type": "integer"}
    assert listing.input_schema["properties"]["port"] == port
    assert "title" not in str(listing.input_schema)
    assert listing.output_schema is not None
    assert set(listing.output_schema["properties"]) == {"rows", "names", "row_count"}


def test_output_schema_never_makes_a_validator_visit_every_row():
    schema = build_spec(query, READS).listing.output_schema
    assert schema is not None
    # An array of rows is one type check; element schemas that say something are kept.
    assert schema["properties"]["rows"] == {"type": "array", "items": {"type": "array"}}
    assert schema["properties"]["names"] == {"type": "array", "items": {"type": "string"}}


def test_actions_follow_annotations_and_tenant_management_is_admin():
    assert build_spec(query, READS).action == "read"
    assert build_spec(register_tenant, WRITES).action == "admin"
    assert build_spec(query, WRITES).action == "write"
    assert build_spec(query, READS).tenant_scoped


def test_missing_and_mistyped_arguments_are_named_without_their_values():
    spec = build_spec(register_tenant, WRITES)
    with pytest.raises(InvalidInput) as missing:
        spec.parse({"tenant_id": "a", "port": SECRET})
    text = str(missing.value)
    assert "host: required" in text and "password: required" in text and "port:" in text
    assert SECRET not in text

    with pytest.raises(InvalidInput) as wrong_type:
        spec.parse({"tenant_id": "a", "host": "h", "password": {"nested": SECRET}})
    assert "password: Input should be a valid string" in str(wrong_type.value)
    assert SECRET not in str(wrong_type.value)


def test_an_unknown_argument_gets_a_did_you_mean():
    spec = build_spec(register_tenant, WRITES)
    with pytest.raises(InvalidInput, match=r"unknown argument 'pasword' \(did you mean 'password'\?\)"):
        spec.parse({"tenant_id": "a", "host": "h", "pasword": SECRET})
    with pytest.raises(InvalidInput, match=r"unknown argument 'zzz' \(arguments: tenant_id, host"):
        spec.parse({"tenant_id": "a", "host": "h", "password": "p", "zzz": 1})


def test_valid_arguments_come_back_with_defaults():
    spec = build_spec(register_tenant, WRITES)
    assert spec.parse({"tenant_id": "a", "host": "h", "password": "p"}) == {
        "tenant_id": "a",
        "host": "h",
        "password": "p",
        "port": 5432,
        "access": "read-only",
    }
