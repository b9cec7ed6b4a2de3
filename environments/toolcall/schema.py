"""BFCL function documents as OpenAI tools, and validation of call arguments against their converted schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gymbox.environments.api.models import FunctionSpec, ToolSpec
from gymbox.tasks.toolcall.schema import ToolNames, to_json_schema


def tool_specs(functions: Iterable[dict[str, Any]], names: ToolNames) -> list[ToolSpec]:
    """OpenAI tools for BFCL function documents, registering each name in `names`."""
    specs = []
    for doc in functions:
        parameters = to_json_schema(doc.get("parameters") or {})
        parameters["type"] = "object"
        parameters.setdefault("properties", {})
        specs.append(ToolSpec(function=FunctionSpec(
            name=names.add(doc["name"]), description=str(doc.get("description", "")), parameters=parameters)))
    return specs


def _type_ok(value: Any, json_type: str) -> bool:
    if json_type == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    python = {"string": str, "boolean": bool, "array": list, "object": dict}[json_type]
    return isinstance(value, python)


def schema_error(value: Any, schema: dict[str, Any], path: str = "arguments", top: bool = True) -> str | None:
    """The first way `value` breaks a (converted) JSON schema, or None when it is valid.

    Checked: types, enums, required properties and nested items. Unknown keys are refused only at the top
    level, where they would be unexpected keyword arguments. A null is accepted for a property that is not
    required (it means "left at its default").
    """
    json_type = schema.get("type")
    if json_type and not _type_ok(value, json_type):
        return f"{path} must be of type {json_type}, got {type(value).__name__} {value!r:.80}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']!r:.200}, got {value!r:.80}"
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        properties: dict[str, Any] = schema["properties"]
        required = schema.get("required") or []
        for name in required:
            if name not in value:
                return f"{path} is missing the required property {name!r}"
        for name, item in value.items():
            if name not in properties:
                if top:
                    return f"{path} has an unknown property {name!r}; the properties are {sorted(properties)}"
                continue
            if item is None and name not in required:
                continue
            error = schema_error(item, properties[name], f"{path}.{name}", top=False)
            if error:
                return error
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            error = schema_error(item, schema["items"], f"{path}[{i}]", top=False)
            if error:
                return error
    return None
