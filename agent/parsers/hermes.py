"""The Hermes/Qwen format: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks within free text."""

from __future__ import annotations

import json
import re
from typing import Any

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

TAG = re.compile(r"<(/?)tool_call>")
TAGS = ("<tool_call>", "</tool_call>")


def dump_call(name: str, arguments: dict[str, Any], key: str, tags: tuple[str, ...]) -> str:
    """One call object as JSON in which no tag can appear (a `<` inside a string is written `\\u003c`)."""
    encoded = json.dumps({"name": name, key: arguments}, ensure_ascii=False)
    for tag in tags:
        encoded = encoded.replace(tag, "\\u003c" + tag[1:])
    return encoded


class HermesParser(Parser):
    """Zero or more `<tool_call>` blocks anywhere in the reply; the text outside them is the message.

    Tolerated (noted, `format_ok` False): "parameters" for "arguments", arguments as a JSON string, and a
    last block left open at the end of the reply (generation stopped at the stop token).
    Errors: a stray `</tool_call>`, a block opened inside another, an empty block, anything but one call object.
    """

    name = "hermes"

    def _parse(self, text: str) -> ParseResult:
        tags = list(TAG.finditer(text))
        self.check_count(sum(1 for tag in tags if not tag.group(1)))
        outside: list[str] = []
        bodies: list[str] = []
        notes: list[str] = []
        position, body_start = 0, -1  # body_start >= 0 while a block is open
        for tag in tags:
            closing = bool(tag.group(1))
            if body_start < 0 and closing:
                raise ParseError(f"</tool_call> at character {tag.start()} has no opening <tool_call>")
            if body_start >= 0 and not closing:
                raise ParseError(f"<tool_call> #{len(bodies) + 2} opens inside <tool_call> #{len(bodies) + 1}; "
                                 "close each block with </tool_call> before opening the next")
            if closing:
                bodies.append(text[body_start:tag.start()])
                position, body_start = tag.end(), -1
            else:
                outside.append(text[position:tag.start()])
                body_start = tag.end()
        if body_start >= 0:
            bodies.append(text[body_start:])
            notes.append(f"<tool_call> #{len(bodies)} has no closing </tool_call> (accepted at the end of the reply)")
        else:
            outside.append(text[position:])
        calls = []
        for number, body in enumerate(bodies, 1):
            where = f"<tool_call> #{number}"
            if not body.strip():
                raise ParseError(f'{where} is empty; put one JSON object {{"name": ..., "arguments": {{...}}}} in it')
            obj = decode_json(body.strip(), f"inside {where}")
            if isinstance(obj, dict) and "parameters" in obj:
                notes.append(f'{where} uses "parameters" instead of "arguments"')
            calls.append(call_from_object(obj, where, notes))
        content = "\n".join(part.strip() for part in outside if part.strip())
        return ParseResult(action=Action(text=text, tool_calls=make_calls(calls, "<tool_call>")), content=content,
                           format_ok=not notes, notes=notes)

    def render(self, action: Action) -> str:
        """Qwen 2.5's chat template: the message, then each call on its own lines inside its block."""
        blocks = [f"<tool_call>\n{dump_call(c.function.name, call_args(c), 'arguments', TAGS)}\n</tool_call>"
                  for c in action.tool_calls]
        prose = action.text.strip()
        return "\n".join(([prose] if prose else []) + blocks)

    def instructions(self, tools: list[ToolSpec]) -> str:
        name, arguments = example_call(tools)
        return (
            'To call a tool, write a JSON object with its "name" and "arguments" between <tool_call> and '
            "</tool_call> tags, one block per call. Text outside the blocks is your message. For example:\n"
            f"<tool_call>\n{dump_call(name, arguments, 'arguments', TAGS)}\n</tool_call>\n{tool_list(tools)}"
        )

