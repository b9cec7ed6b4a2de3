"""BFCL function documents as JSON schema, and the two-way map between BFCL names and valid OpenAI tool names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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
