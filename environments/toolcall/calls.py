"""Decoding the agent's tool calls against the offered tools, with messages that say what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gymbox.environments.api import ToolCall, ToolSpec, unknown_tool_text
from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.api.signature import describe_parameters
from gymbox.environments.toolcall.schema import schema_error, tool_specs
from gymbox.tasks.toolcall.schema import ToolNames


@dataclass(frozen=True)
class Decoded:
    """One call as the environment understood it."""

    name: str  # the BFCL name when the tool is known, else the name as called
    args: dict[str, Any] | None  # None when the arguments are not a JSON object
    error: str | None  # why the call is not well formed (unknown tool, bad JSON, schema violation); None if it is
    known: bool = True  # whether the name is one of the offered tools

    @property
    def well_formed(self) -> bool:
        return self.error is None

    @property
    def runnable(self) -> bool:
        """A known tool with a JSON object of arguments: a backend can be asked, even if the schema is broken."""
        return self.known and self.args is not None


# Backends compute with Python numbers: `power(10, 10**9)` or a logarithm to a million digits would stall the
# server for minutes. No BFCL answer comes near these bounds (its precisions are at most 10).
LARGEST_INTEGER = 10**12
COSTLY_ARGUMENTS = {"precision": 1000, "exponent": 1000}  # argument name -> largest magnitude accepted


def too_costly(args: dict[str, Any]) -> str | None:
    """Why running a call with these arguments is refused, or None when it may run."""
    for name, limit in COSTLY_ARGUMENTS.items():
        value = args.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > limit:
            return f"{name} may be at most {limit} in this environment"
    pending: list[Any] = [args]  # iterative: arguments may nest deeper than the recursion limit allows
    while pending:
        item = pending.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > LARGEST_INTEGER:
            return f"integers beyond +-{LARGEST_INTEGER} are refused in this environment"
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return None


class Toolset:
    """The tools offered in an episode: their OpenAI specs, names, and schemas by BFCL name."""

    def __init__(self) -> None:
        self.names = ToolNames()
        self.specs: list[ToolSpec] = []
        self.schemas: dict[str, dict[str, Any]] = {}

    def add(self, functions: list[dict[str, Any]]) -> None:
        """Offer more BFCL functions (miss_func reveals some in a later turn)."""
        for doc, spec in zip(functions, tool_specs(functions, self.names), strict=True):
            self.specs.append(spec)
            self.schemas[doc["name"]] = spec.function.parameters

    def decode(self, call: ToolCall) -> Decoded:
        """Resolve the tool, decode the JSON arguments and validate them against the tool's schema."""
        try:
            args: dict[str, Any] | None = call.args()
            bad_json = None
        except InvalidAction as err:
            args, bad_json = None, err.message
        except (ValueError, RecursionError) as err:  # integers with too many digits, nesting too deep
            args, bad_json = None, f"arguments of {call.function.name!r} cannot be decoded: {err}"
        name = self.names.resolve(call.function.name)
        if name is None:
            return Decoded(call.function.name, args, unknown_tool_text(call.function.name, self.specs), known=False)
        if args is None:
            return Decoded(name, None, bad_json)
        schema = self.schemas[name]
        error = schema_error(args, schema)
        if error:
            return Decoded(name, args, f"{error}. {self.names.to_openai[name]} takes: {describe_parameters(schema)}.")
        return Decoded(name, args, None)

    def backend_arguments(self, decoded: Decoded) -> dict[str, Any]:
        """Arguments to pass to a backend method: nulls of optional parameters dropped, integral floats as ints."""
        schema = self.schemas[decoded.name]
        required = set(schema.get("required") or [])
        properties = schema.get("properties") or {}
        args = {}
        for key, value in (decoded.args or {}).items():
            if value is None and key not in required:
                continue
            if isinstance(value, float) and value.is_integer() and properties.get(key, {}).get("type") == "integer":
                value = int(value)
            args[key] = value
        return args
