"""The plain JSON format: the whole reply is one call object or a list of them, optionally in a ```json fence."""

from __future__ import annotations

import json

from gymbox.agent.parsers.base import Parser, ParseResult
from gymbox.agent.parsers.calls import (
    ParseError,
    call_args,
    call_from_object,
    decode_json,
    example_call,
    make_calls,
    tool_list,
)
from gymbox.environments.api.models import Action, ToolSpec


def unfence(text: str) -> str | None:
    """The inside of a reply that is exactly one fenced block (```json or ```), else None."""
    if not (text.startswith("```") and text.endswith("```") and len(text) >= 6):
        return None
    first_line, newline, rest = text[3:-3].partition("\n")
    if not newline or first_line.strip() not in ("", "json", "JSON"):
        return None
    return rest


class JsonParser(Parser):
    """`{"name": ..., "arguments": {...}}` or `[call, ...]` and nothing else ("parameters" is accepted too).

    Prose has no place in this format: a reply that is not such JSON is an error, and `render` drops `action.text`.
    """

    name = "json"

    def _parse(self, text: str) -> ParseResult:
        stripped = text.strip()
        inside = unfence(stripped)
        body = (stripped if inside is None else inside).strip()
        if not body:
            raise ParseError('the reply is empty; send a JSON call object {"name": ..., "arguments": {...}}')
        if body[0] not in "{[":
            raise ParseError(f'the reply is not JSON (it starts with {body[:20]!r}); send only a call object '
                             '{"name": ..., "arguments": {...}} or a list of them')
        value = decode_json(body, "of the reply" if inside is None else "inside the ``` fence")
        objects = value if isinstance(value, list) else [value]
        self.check_count(len(objects))
        notes: list[str] = []
        calls = [call_from_object(obj, f"call #{i}" if isinstance(value, list) else "the call", notes)
                 for i, obj in enumerate(objects, 1)]
        return ParseResult(action=Action(text=text, tool_calls=make_calls(calls, "call")), format_ok=not notes,
                           notes=notes)

    def render(self, action: Action) -> str:
        """One call as an object, several (or none) as a list."""
        objects = [{"name": c.function.name, "arguments": call_args(c)} for c in action.tool_calls]
        return json.dumps(objects[0] if len(objects) == 1 else objects, ensure_ascii=False)

    def instructions(self, tools: list[ToolSpec]) -> str:
        name, arguments = example_call(tools)
        example = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
        return (
            'Reply with JSON only: one call object {"name": ..., "arguments": {...}}, or a list of them to make '
            f"several calls, and no other text. For example:\n{example}\n{tool_list(tools)}"
        )
