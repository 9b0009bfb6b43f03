"""Tool definitions: from a plain function to what ``tools/list`` shows and ``tools/call`` accepts.

A tool is a plain synchronous function. Its signature (pydantic-annotated parameters) becomes the
input schema and the validator of its arguments; its return annotation (a TypedDict) becomes the
output schema. Built once at start-up, so a call costs one pydantic validation of its arguments.

Validation errors name the argument and the rule it broke, never the value given: a password sent
where a port was expected must not come back in the error text.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from mcp_tenants.errors import InvalidInput

Action = Literal["read", "write", "admin"]
#: What a call needs: one action for every call of the tool, or one that depends on the arguments.
ActionRule = Action | Callable[[Mapping[str, Any]], Action]
#: Tools that manage the tenant registry itself; they need the admin role.
ADMIN_TOOLS = frozenset({"register_tenant", "remove_tenant"})


@dataclass(frozen=True)
class ToolSpec:
    """One tool: the function to run, its listing, its argument model and what it needs."""

    name: str
    fn: Callable[..., Any]
    listing: types.Tool
    arguments: type[BaseModel]
    action: ActionRule
    #: True when the tool's first parameter is ``tenant_id``: the call acts on one tenant.
    tenant_scoped: bool

    def action_for(self, kwargs: Mapping[str, Any]) -> Action:
        """What this call needs (``kwargs`` as ``parse`` returned them)."""
        return self.action(kwargs) if callable(self.action) else self.action

    def parse(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated keyword arguments for ``fn``; ``InvalidInput`` names what is wrong, not the value."""
        given = dict(arguments or {})
        fields = self.arguments.model_fields
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise InvalidInput(f"{self.name}: {'; '.join(_unknown(name, fields) for name in unknown)}")
        try:
            model = self.arguments.model_validate(given)
        except ValidationError as exc:
            raise InvalidInput(f"{self.name}: invalid arguments: {describe_errors(exc)}") from None
        values = model.__dict__  # not getattr: a field may share a name with a BaseModel method
        return {name: values[name] for name in fields}


def _unknown(name: str, fields: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (arguments: {', '.join(fields)})"
    return f"unknown argument {name[:60]!r}{hint}"


def describe_errors(exc: ValidationError) -> str:
    """Every error as ``location: message``, without the input values pydantic would echo."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = "required" if error["type"] == "missing" else error["msg"]
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


def build_spec(
    fn: Callable[..., Any],
    annotations: types.ToolAnnotations,
    *,
    title: str | None = None,
    action: ActionRule | None = None,
) -> ToolSpec:
    """Describe ``fn`` as a tool. Annotations are evaluated in the function's own module."""
    name = fn.__name__
    signature = inspect.signature(fn, eval_str=True)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (parameter.annotation, default)
    with warnings.catch_warnings():
        # An argument named like a BaseModel attribute ("schema") works, and pydantic warns.
        warnings.filterwarnings("ignore", "Field name .* shadows an attribute", UserWarning)
        arguments = create_model(  # type: ignore[call-overload]
            f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
    input_schema = _without_titles(arguments.model_json_schema())
    output_schema = None
    if signature.return_annotation is not inspect.Signature.empty:
        output_schema = _flat(TypeAdapter(signature.return_annotation).json_schema(mode="serialization"))
    description = inspect.getdoc(fn) or ""
    listing = types.Tool(
        name=name,
        title=title,
        description=description,
        input_schema=input_schema,
        output_schema=output_schema,
        annotations=annotations,
    )
    if action is None:
        action = "admin" if name in ADMIN_TOOLS else "read" if annotations.read_only_hint else "write"
    return ToolSpec(
        name=name,
        fn=fn,
        listing=listing,
        arguments=arguments,
        action=action,
        tenant_scoped=next(iter(signature.parameters), None) == "tenant_id",
    )


def _without_titles(schema: Any) -> Any:
    """Drop pydantic's generated ``title`` keys (noise for a reader of ``tools/list``)."""
    if isinstance(schema, dict):
        return {
            key: (_without_titles(value) if key != "properties" else {k: _without_titles(v) for k, v in value.items()})
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    return schema


def _flat(schema: Any) -> Any:
    """The output schema without ``items: {}``: it accepts the same documents, but a validator
    that meets it still visits every element. Clients re-validate every result (the Python SDK
    does), so an array of rows must cost one type check, not one per row."""
    schema = _without_titles(schema)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if not (key == "items" and value == {})}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return strip(schema)
