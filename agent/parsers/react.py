"""The ReAct format for text games: "Thought: ...", then one "Action: go north" line (or a tool call on that line)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gymbox.agent.parsers.base import ParseLimits, Parser, ParseResult
from gymbox.agent.parsers.calls import (
    ParseError,
    call_args,
    decode_json,
    example_call,
    json_type,
    make_calls,
    tool_list,
)
from gymbox.environments.api.models import Action, ToolSpec

ACTION_LINE = re.compile(r"^[ \t]*Action(?:[ \t]+\d+)?[ \t]*:(.*)$", re.MULTILINE)
THOUGHT = re.compile(r"Thought(?:[ \t]+\d+)?[ \t]*:")
TOOL_FORM = re.compile(r"([A-Za-z_][\w.\-]*)(?:\[(.*)\]|\((.*)\))")


class ReactParser(Parser):
    """Exactly one `Action:` line (`Action 3:` too); the text before it, less a `Thought:` label, is the content.

    The action is `tool[argument]` (a tool with one parameter) or `tool({...JSON...})` when `tool` is offered
    (or is the command tool); anything else is a game command, sent as `{command_arg: action}` to the command
    tool, or an error when `command_tool` is None. Text after the Action line is ignored (`format_ok` False).
    """

    name = "react"

    def __init__(self, *, tools: Sequence[ToolSpec] = (), limits: ParseLimits | None = None,
                 command_tool: str | None = "command", command_arg: str = "command") -> None:
        super().__init__(tools=tools, limits=limits)
        if command_tool == "" or not command_arg:
            raise ValueError("command_tool and command_arg must be non-empty (command_tool=None turns commands off)")
        self.command_tool = command_tool
        self.command_arg = command_arg
        self.by_name = {tool.function.name: tool for tool in self.tools}

    def single_key(self, name: str) -> str | None:
        """The parameter that `name[argument]` fills: the tool's only property, or its only required one."""
        if name == self.command_tool:
            return self.command_arg
        schema = self.by_name[name].function.parameters
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        if len(properties) == 1:
            return str(next(iter(properties)))
        required = schema.get("required")
        return required[0] if isinstance(required, list) and len(required) == 1 else None

    def interpret(self, action: str) -> tuple[str, dict[str, Any]]:
        """The tool call an action string stands for."""
        form = TOOL_FORM.fullmatch(action)
        if form and (form.group(1) in self.by_name or form.group(1) == self.command_tool):
            name, bracket, paren = form.groups()
            if bracket is not None:
                if (key := self.single_key(name)) is None:
                    raise ParseError(f"{name} takes several parameters; write Action: {name}({{...JSON object...}})")
                return name, {key: bracket}
            if not paren.strip():
                return name, {}
            arguments = decode_json(paren.strip(), f"in Action: {name}(...)")
            if not isinstance(arguments, dict):
                raise ParseError(f"the argument of Action: {name}(...) must be a JSON object, got "
                                 f"{json_type(arguments)}")
            return name, arguments
        if self.command_tool is None:
            raise ParseError(f"{action[:40]!r} is not a call of an offered tool; write Action: tool[argument] or "
                             f"Action: tool({{...}}) with one of: {', '.join(self.by_name) or 'none'}")
        return self.command_tool, {self.command_arg: action}

    def _parse(self, text: str) -> ParseResult:
        lines = list(ACTION_LINE.finditer(text))
        if not lines:
            example = "go north" if self.command_tool is not None else self.example_action(self.tools)
            raise ParseError(f"the reply has no 'Action:' line; end it with a line such as 'Action: {example}'")
        if len(lines) > 1:
            raise ParseError(f"the reply has {len(lines)} 'Action:' lines; write exactly one action per reply")
        line = lines[0]
        action = line.group(1).strip()
        if not action:
            raise ParseError("the 'Action:' line is empty; write the action after 'Action:'")
        call = self.interpret(action)
        thought = text[:line.start()].strip()
        if label := THOUGHT.match(thought):
            thought = thought[label.end():].strip()
        notes = ["text after the 'Action:' line is ignored"] if text[line.end():].strip() else []
        return ParseResult(action=Action(text=text, tool_calls=make_calls([call], "Action")), content=thought,
                           format_ok=not notes, notes=notes)

    def action_string(self, name: str, arguments: dict[str, Any]) -> str:
        """The shortest action string that parses back to this call: a bare command, `tool[arg]`, `tool({...})`."""
        candidates = []
        if len(arguments) == 1:
            value = next(iter(arguments.values()))
            if isinstance(value, str) and value and value == value.strip() and not {"\n", "\r"} & set(value):
                candidates += [value, f"{name}[{value}]"]
        candidates.append(f"{name}({json.dumps(arguments, ensure_ascii=False)})")
        for candidate in candidates:
            try:
                if self.interpret(candidate) == (name, arguments):
                    return candidate
            except ParseError:
                continue
        raise ValueError(f"{name!r} is neither an offered tool nor the command tool ({self.command_tool!r})")

    def render(self, action: Action) -> str:
        """`Thought: <action.text>` (when there is text) and the one Action line."""
        if len(action.tool_calls) != 1:
            raise ValueError(f"the react format has exactly one action per reply, not {len(action.tool_calls)}")
        call = action.tool_calls[0]
        line = f"Action: {self.action_string(call.function.name, call_args(call))}"
        prose = action.text.strip()
        return f"Thought: {prose}\n{line}" if prose else line

    def example_action(self, tools: list[ToolSpec]) -> str:
        """An action string calling the first of `tools` with example arguments."""
        name, arguments = example_call(tools)
        parser = ReactParser(tools=tools, command_tool=self.command_tool, command_arg=self.command_arg)
        try:
            return parser.action_string(name, arguments)
        except ValueError:  # a placeholder name, or one that the tool form cannot spell
            return f"{name}({json.dumps(arguments, ensure_ascii=False)})"

    def instructions(self, tools: list[ToolSpec]) -> str:
        lines = ["Think about what to do, then end your reply with exactly one line that starts with 'Action:'."]
        if self.command_tool is not None:
            lines.append("For a game command, write it after 'Action:'. For example:\n"
                         "Thought: I should see what is in the room.\nAction: look")
        if others := [tool for tool in tools if tool.function.name != self.command_tool]:
            lines.append("To call a tool, write Action: tool[argument] for a tool with one parameter, or "
                         "Action: tool({...JSON arguments...}). For example:\n"
                         f"Action: {self.example_action(others)}")
        if tools:
            lines.append(tool_list(tools))
        return "\n".join(lines)
