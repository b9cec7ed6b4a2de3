"""JSON helpers shared by the parsers: strict decoding, call objects, compact arguments, example arguments."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.api.models import FunctionCall, ToolCall, ToolSpec


class ParseError(ValueError):
    """Raised inside a parser to stop at the first problem; `Parser.parse` turns it into `ParseResult.error`."""


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
              type(None): "null"}
CALL_KEYS = frozenset({"name", "arguments", "parameters"})


def json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        duplicate = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(text: str, where: str) -> Any:
    """Decode strict JSON (no NaN or Infinity, no duplicate keys); `ParseError` naming `where` otherwise."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ParseError(f"the JSON {where} is invalid: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ParseError(f"the JSON {where} is nested too deeply") from None
    except ValueError as exc:  # duplicate keys, NaN, integers past Python's digit limit
        raise ParseError(f"the JSON {where} is invalid: {exc}") from None


def compact(arguments: dict[str, Any], where: str) -> str:
    """Arguments as compact JSON, the form every parser puts on the wire."""
    encoded = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(f"the arguments {where} contain an unpaired surrogate escape (\\ud800-\\udfff)") from None
    return encoded


def call_from_object(obj: Any, where: str, notes: list[str]) -> tuple[str, dict[str, Any]]:
    """Name and arguments of one `{"name": ..., "arguments"|"parameters": {...}}` object.

    Arguments given as a JSON string are decoded (and noted in `notes`); missing arguments mean `{}`.
    """
    if not isinstance(obj, dict):
        raise ParseError(f'{where} must be a JSON object {{"name": ..., "arguments": {{...}}}}, got {json_type(obj)}')
    extra = sorted(set(obj) - CALL_KEYS)
    if extra:
        raise ParseError(f'{where} has unexpected key(s) {", ".join(map(repr, extra))}; '
                         'a call has only "name" and "arguments"')
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParseError(f'{where} needs "name", a non-empty string' + ("" if name is None else f", got {name!r}"))
    if "arguments" in obj and "parameters" in obj:
        raise ParseError(f'{where} has both "arguments" and "parameters"; give one')
    key = "arguments" if "arguments" in obj else "parameters"
    arguments = obj.get(key, {})
    if isinstance(arguments, str):
        arguments = decode_json(arguments, f'in the "{key}" string of {where}')
        notes.append(f'{where} gives "{key}" as a JSON string instead of an object')
    if not isinstance(arguments, dict):
        raise ParseError(f'"{key}" of {where} must be a JSON object, got {json_type(arguments)}')
    return name, arguments


def make_calls(calls: list[tuple[str, dict[str, Any]]], where: str) -> list[ToolCall]:
    """Tool calls with deterministic ids (call_0, call_1, ...) and compact JSON arguments."""
    return [ToolCall(id=f"call_{i}", function=FunctionCall(name=name, arguments=compact(args, f"{where} #{i + 1}")))
            for i, (name, args) in enumerate(calls)]


def call_args(call: ToolCall) -> dict[str, Any]:
    """The decoded arguments of a call being rendered; `ValueError` when they are not a JSON object."""
    try:
        return call.args()
    except InvalidAction as exc:
        raise ValueError(exc.message) from None


def example_value(schema: Any) -> Any:
    """A plausible value for a JSON-schema property, for the format examples shown to the model."""
    if not isinstance(schema, dict):
        return "..."
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}.get(kind, "...")


def example_arguments(tool: ToolSpec) -> dict[str, Any]:
    """Arguments for an example call: the required properties, or the first property when none is required."""
    properties = tool.function.parameters.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = tool.function.parameters.get("required")
    names = [n for n in required if n in properties] if isinstance(required, list) else []
    names = names or list(properties)[:1]
    return {name: example_value(properties[name]) for name in names}


def example_call(tools: list[ToolSpec]) -> tuple[str, dict[str, Any]]:
    """The first offered tool with example arguments, or a placeholder when no tool is offered."""
    if not tools:
        return "tool_name", {"argument": "value"}
    return tools[0].function.name, example_arguments(tools[0])


def tool_list(tools: list[ToolSpec]) -> str:
    return "Available tools: " + (", ".join(t.function.name for t in tools) if tools else "none") + "."
