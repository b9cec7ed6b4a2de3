"""BFCL function documents as OpenAI tool schemas, reversible tool names, and validation of call arguments."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gymbox.environments.api.models import FunctionSpec, ToolSpec

# BFCL's Python-flavoured type names -> JSON-schema types; "any" (and anything unknown) gets no type at all.
JSON_TYPES = {
    "dict": "object", "object": "object", "float": "number", "number": "number", "integer": "integer",
    "string": "string", "boolean": "boolean", "array": "array", "tuple": "array",
}
_COPIED_KEYS = ("description", "enum", "default", "format", "minimum", "maximum", "minItems", "maxItems")
_INVALID_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_MAX_NAME = 64  # OpenAI function names match ^[a-zA-Z0-9_-]{1,64}$


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Convert one BFCL parameter schema (and its nested properties and items) to JSON schema."""
    out: dict[str, Any] = {}
    json_type = JSON_TYPES.get(str(schema.get("type")))
    if json_type:
        out["type"] = json_type
    for key in _COPIED_KEYS:
        if key in schema:
            out[key] = schema[key]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: to_json_schema(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = to_json_schema(schema["items"])
    if out.get("type") == "array" and "enum" in out:
        # BFCL puts the allowed values of an array's items on the array itself.
        out.setdefault("items", {}).setdefault("enum", out.pop("enum"))
    if schema.get("required"):
        out["required"] = list(schema["required"])
    return out


def openai_name(name: str) -> str:
    """A valid OpenAI function name for a BFCL name: dots (and any other invalid character) become `_`."""
    return _INVALID_NAME_CHARS.sub("_", name)[:_MAX_NAME] or "_"


@dataclass
class ToolNames:
    """The two-way map between the names the agent sees and BFCL's names (`math_factorial` <-> `math.factorial`)."""

    to_bfcl: dict[str, str] = field(default_factory=dict)
    to_openai: dict[str, str] = field(default_factory=dict)

    def add(self, bfcl: str) -> str:
        """Register a BFCL name; its OpenAI name gets a numeric suffix if another name already maps to it."""
        if bfcl in self.to_openai:
            return self.to_openai[bfcl]
        name, n = openai_name(bfcl), 1
        while name in self.to_bfcl:
            n += 1
            suffix = f"_{n}"
            name = openai_name(bfcl)[: _MAX_NAME - len(suffix)] + suffix
        self.to_bfcl[name], self.to_openai[bfcl] = bfcl, name
        return name

    def resolve(self, name: str) -> str | None:
        """The BFCL name of a called tool; the original BFCL spelling is accepted too. None when unknown."""
        if name in self.to_bfcl:
            return self.to_bfcl[name]
        return name if name in self.to_openai else None


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
