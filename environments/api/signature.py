"""Tool schemas and argument validators from typed Python functions: the signature gives the JSON schema's types,
required parameters and defaults, the Google-style docstring its descriptions, and pydantic validates a call."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.api.models import ToolCall, ToolSpec

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns?|Raises|Yields?|Examples?|Notes?|Note):\s*$")
_ARG_LINE = re.compile(r"^(\s*)\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
# Strict: a JSON string is not an integer and a boolean is not a number, as JSON schema says; JSON mode, so that an
# array fills a tuple and a value fills an enum.
_STRICT = ConfigDict(extra="forbid", strict=True)


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """A Google-style docstring's summary (the text before its first section) and its `Args:` descriptions.

    Lines of a paragraph are joined with spaces, paragraphs with a blank line; an argument's description may
    continue on more indented lines.
    """
    paragraphs: list[list[str]] = [[]]
    args: dict[str, str] = {}
    section: str | None = None
    current, indent = None, -1
    for line in inspect.cleandoc(doc or "").splitlines():
        header = _SECTION.match(line)
        if header:
            section, current, indent = header.group(1), None, -1
        elif section is None:
            if line.strip():
                paragraphs[-1].append(line.strip())
            elif paragraphs[-1]:
                paragraphs.append([])
        elif section in ("Args", "Arguments", "Parameters"):
            match = _ARG_LINE.match(line)
            if match and (indent < 0 or len(match.group(1)) <= indent):
                current, indent = match.group(2), len(match.group(1))
                args[current] = match.group(3).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    summary = "\n\n".join(" ".join(lines) for lines in paragraphs if lines)
    return summary, args


def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a parameter's type; common types by hand (so keys read `type` first), others by pydantic."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])} if args else {"type": "array"}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1])} if args else {"type": "object"}
    if origin is Literal:
        kinds = {_SCALARS.get(type(value)) for value in args}
        kind = kinds.pop() if len(kinds) == 1 else None
        return {"type": kind, "enum": list(args)} if kind else {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [type_schema(a) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    return _pydantic_schema(annotation)


def _pydantic_schema(annotation: Any) -> dict[str, Any]:
    """pydantic's schema of a type, with `$ref`s inlined and titles left out (a tool schema stands alone)."""
    schema = TypeAdapter(annotation).json_schema()
    defs = schema.pop("$defs", {})

    def clean(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        if in_properties:  # keys here are property names, which may well be "title"
            return {key: clean(value) for key, value in node.items()}
        if "$ref" in node:
            return clean(defs[node["$ref"].rsplit("/", 1)[-1]])
        return {key: clean(value, key == "properties") for key, value in node.items() if key != "title"}

    return clean(schema)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` with a default of None is an optional X: leaving the argument out is how to say None."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        return rest[0] if len(rest) == 1 else {**schema, "anyOf": rest}
    return schema


def _kind(schema: dict[str, Any]) -> str:
    """A parameter's type in a word, for messages: `string`, `array`, ...; `any` when the schema has none."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_kind(option) for option in schema["anyOf"])
    return "any"


def describe_parameters(schema: dict[str, Any]) -> str:
    """A one-line summary of a tool's parameters, for error messages: `path (string, required), ...`."""
    required = set(schema.get("required") or [])
    parts = [f"{name} ({_kind(sub)}{', required' if name in required else ''})"
             for name, sub in (schema.get("properties") or {}).items()]
    return ", ".join(parts) or "no parameters"


@dataclass(frozen=True)
class Signature:
    """One tool made from a function: its spec, and how to turn a call into the function's keyword arguments."""

    spec: ToolSpec
    arguments: type[BaseModel]  # one field per parameter, aliased to the parameter's name
    parameters: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.function.name

    def takes(self) -> str:
        return f"{self.name} takes: {describe_parameters(self.spec.function.parameters)}."

    def bind(self, call: ToolCall) -> dict[str, Any]:
        """The call's validated arguments, defaults filled in; `InvalidAction` saying what is allowed when not."""
        try:
            call.args()  # the JSON object check, with the messages the environments have always given
            values = self.arguments.model_validate_json(call.function.arguments or "{}")
        except InvalidAction as err:
            raise InvalidAction(f"{err.message}. {self.takes()}") from None
        except ValidationError as err:
            raise InvalidAction(f"{self._explain(err)}. {self.takes()}") from None
        return {name: getattr(values, f"p{i}") for i, name in enumerate(self.parameters)}

    def _explain(self, error: ValidationError) -> str:
        properties = self.spec.function.parameters.get("properties", {})
        problems: list[str] = []
        # Missing arguments first: they are what a model that misspelled a name most needs to read.
        for err in sorted(error.errors(), key=lambda e: e["type"] != "missing"):
            where = str(err["loc"][0]) if err["loc"] else ""
            loc = err["loc"][:1] if "anyOf" in properties.get(where, {}) else err["loc"]  # not the union's members
            path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
            kind = _kind(properties.get(where, {}))
            if err["type"] == "missing":
                problems.append(f"{self.name} needs {_a(kind)} argument {where!r}" if kind != "any" else
                                f"{self.name} needs the argument {where!r}")
            elif err["type"] == "extra_forbidden":
                problems.append(f"{self.name} has no argument {where!r}")
            else:
                value = err["input"]
                got = "got null" if value is None else f"got {_json_type(value)} {json.dumps(value, default=str)[:60]}"
                schema = properties.get(where, {}) if len(loc) == 1 else {}
                if "enum" in schema:
                    allowed = ", ".join(json.dumps(v) for v in schema["enum"])
                    problems.append(f"argument {path!r} of {self.name} must be one of {allowed}, {got}")
                elif _kind(schema) != "any":
                    problems.append(f"argument {path!r} of {self.name} must be {_a(_kind(schema))}, {got}")
                else:  # nested, or a type without a word: pydantic's own words
                    problems.append(f"argument {path!r} of {self.name}: {err['msg']}, {got}")
        return "; ".join(list(dict.fromkeys(problems))[:3])


def _a(kind: str) -> str:
    """A type's word with its article: `a string`, `an integer`, `one of "a", "b"`."""
    if kind.startswith("one of"):
        return kind
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def signature(fn: Callable[..., Any], name: str | None = None, description: str | None = None,
              skip_first: bool = True) -> Signature:
    """The tool for a function (a method: `skip_first` leaves out `self`); `name` and `description` override."""
    summary, docs = parse_docstring(fn.__doc__)
    # The parameters' annotations only: the return annotation may name a class defined later in the module.
    annotations = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != "return"}
    hints = typing.get_type_hints(types.SimpleNamespace(__annotations__=annotations, __globals__=fn.__globals__),
                                  include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[1 if skip_first else 0:]
    properties: dict[str, Any] = {}
    required: list[str] = []
    fields: dict[str, Any] = {}
    for i, param in enumerate(params):
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"tool {fn.__qualname__}: parameter {param.name!r} must be a plain or keyword-only one")
        annotation = hints.get(param.name, Any)
        schema = type_schema(annotation)
        if param.default is param.empty:
            required.append(param.name)
            fields[f"p{i}"] = (annotation, Field(alias=param.name))
        else:
            fields[f"p{i}"] = (annotation, Field(default=param.default, alias=param.name))
            if param.default is None:
                schema = _without_null(schema)
        if param.name in docs:
            schema["description"] = docs[param.name]
        if param.default is not param.empty and param.default is not None:
            schema["default"] = param.default
        properties[param.name] = schema
    tool_name = name or fn.__name__
    model = create_model(f"{tool_name}_arguments", __config__=_STRICT, **fields)
    spec = ToolSpec.make(tool_name, description if description is not None else summary, properties, required)
    return Signature(spec, model, tuple(p.name for p in params))


__all__ = ["Signature", "describe_parameters", "parse_docstring", "signature", "type_schema"]
