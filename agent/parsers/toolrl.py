"""ToolRL's format: `<think>`, optionally `<tool_call>` lines, optionally `<response>`.

From "ToolRL: Reward is All Tool Learning Needs" (Qian et al., 2025).
"""

from __future__ import annotations

import re
from contextlib import suppress
from typing import Any, NamedTuple

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
from gymbox.agent.parsers.hermes import dump_call
from gymbox.environments.api.models import Action, ToolCall, ToolSpec

SECTIONS = ("think", "tool_call", "response")
TAG = re.compile(r"<(/?)(think|tool_call|response)>")
TAGS = tuple(f"<{slash}{name}>" for name in SECTIONS for slash in ("", "/"))


class Shape(NamedTuple):
    """Which optional sections a reply has (ToolRL's four patterns: response only, call only, both, neither)."""

    tool_call: bool
    response: bool

    @classmethod
    def of(cls, ground_truth: str) -> Shape:
        """The shape a ground-truth answer calls for, decided as ToolRL does: by the tags it contains."""
        return cls("<tool_call>" in ground_truth, "<response>" in ground_truth)


class ToolRLResult(ParseResult):
    """A ToolRL parse with its parts, for the rewards of spec section 1.

    `shape` is None when the tags are missing, repeated, misordered or surrounded by text. `layout_ok` adds
    ToolRL's exact spacing (sections one newline apart, the `<tool_call>` tags on lines of their own).
    `calls` is what R_correct reads: extracted as ToolRL does (between the first `<tool_call>` and the next
    `</tool_call>`, one JSON object per non-blank line) even when the layout is wrong; None when the tags are
    missing or a line is not a valid call.
    """

    think: str | None = None
    response: str | None = None
    calls: list[ToolCall] | None = None
    shape: Shape | None = None
    layout_ok: bool = False

    def matches(self, expected: Shape) -> bool:
        """R_format = 1: the exact layout, with the sections the ground truth calls for."""
        return self.layout_ok and self.shape == expected


def split_sections(text: str) -> tuple[dict[str, str], list[str]]:
    """The sections' bodies and the gaps around them; `ParseError` unless each tag is used once, in order."""
    tags = list(TAG.finditer(text))
    for tag in TAGS:
        if (count := sum(1 for t in tags if t.group(0) == tag)) > 1:
            raise ParseError(f"{tag} appears {count} times; each tag may appear once")
    if not text.startswith("<think>"):
        found = "it has no <think>" if "<think>" not in text else f"it starts with {text[:20]!r}"
        raise ParseError(f"the reply must start with <think>...</think> ({found})")
    sections: dict[str, str] = {}
    gaps: list[str] = []
    position, open_name, last = 0, "", -1
    for tag in tags:
        closing, name = bool(tag.group(1)), tag.group(2)
        if not open_name and closing:
            raise ParseError(f"</{name}> has no opening <{name}>")
        if not open_name:
            if SECTIONS.index(name) <= last:
                raise ParseError(f"<{name}> comes after </{SECTIONS[last]}>; the order is <think>, <tool_call>, "
                                 "<response>")
            gaps.append(text[position:tag.start()])
            position, open_name = tag.end(), name
        elif closing and name == open_name:
            sections[name] = text[position:tag.start()]
            position, open_name, last = tag.end(), "", SECTIONS.index(name)
        else:
            raise ParseError(f"<{open_name}> is not closed before {tag.group(0)}")
    if open_name:
        raise ParseError(f"<{open_name}> is never closed; end it with </{open_name}>")
    gaps.append(text[position:])
    for gap in gaps:
        if gap.strip():
            raise ParseError(f"text outside the tags ({gap.strip()[:40]!r}); everything goes inside <think>, "
                             "<tool_call> or <response>")
    return sections, gaps


class ToolRLParser(Parser):
    """ToolRL's layout, anchored at both ends of the stripped reply; see `ToolRLResult` for the parts."""

    name = "toolrl"

    def failure(self, text: str, error: str) -> ToolRLResult:
        return ToolRLResult(action=Action(text=text), error=error)

    def call_lines(self, body: str, notes: list[str]) -> list[ToolCall]:
        """The calls of a `<tool_call>` body, one JSON object per non-blank line."""
        lines = [(number, line.strip()) for number, line in enumerate(body.strip().split("\n"), 1) if line.strip()]
        if not lines:
            raise ParseError('the <tool_call> block has no call; write one JSON object {"name": ..., '
                             '"parameters": {...}} per line')
        self.check_count(len(lines))
        return make_calls([call_from_object(decode_json(line, f"on line {number} of <tool_call>"),
                                            f"the call on line {number} of <tool_call>", notes)
                           for number, line in lines], "call")

    def _parse(self, text: str) -> ToolRLResult:
        stripped = text.strip()
        try:
            sections, gaps = split_sections(stripped)
        except ParseError as exc:
            calls = None
            if "<tool_call>" in stripped and "</tool_call>" in stripped:  # ToolRL reads the calls regardless
                with suppress(ParseError):
                    calls = self.call_lines(stripped.split("<tool_call>")[1].split("</tool_call>")[0], [])
            return ToolRLResult(action=Action(text=text), error=str(exc), calls=calls)
        body = sections.get("tool_call")
        notes = []
        if any(gap != "\n" for gap in gaps[1:-1]):
            notes.append("sections must be separated by exactly one newline")
        if body is not None and not (len(body) >= 2 and body[0] == body[-1] == "\n"):
            notes.append("<tool_call> and </tool_call> must be on lines of their own")
        response = sections.get("response")
        parts: dict[str, Any] = dict(think=sections["think"], response=response, layout_ok=not notes,
                                     shape=Shape(body is not None, response is not None))
        try:
            calls = self.call_lines(body, notes) if body is not None else []
        except ParseError as exc:
            return ToolRLResult(action=Action(text=text), error=str(exc), notes=notes, **parts)
        return ToolRLResult(action=Action(text=text, tool_calls=calls), content=(response or "").strip(),
                            calls=calls if body is not None else None, format_ok=not notes, notes=notes, **parts)

    def render_parts(self, think: str, calls: list[ToolCall], response: str | None) -> str:
        """The full layout, e.g. for supervised data with recorded thoughts."""
        parts = [f"<think>{think}</think>"]
        if calls:
            lines = [dump_call(c.function.name, call_args(c), "parameters", TAGS) for c in calls]
            parts.append("<tool_call>\n" + "\n".join(lines) + "\n</tool_call>")
        if response is not None:
            parts.append(f"<response>{response}</response>")
        return "\n".join(parts)

    def render(self, action: Action) -> str:
        """An empty `<think>`, the calls, and `action.text` as the `<response>` when there is any."""
        return self.render_parts("", action.tool_calls, action.text.strip() or None)

    def instructions(self, tools: list[ToolSpec]) -> str:
        name, arguments = example_call(tools)
        example = self.render_parts("reasoning about what to do", [ToolCall.make(name, arguments)], None)
        return (
            "Start with your reasoning in <think>...</think>. Then, to call tools, write <tool_call> on its own "
            'line, one JSON object {"name": ..., "parameters": {...}} per line, and </tool_call> on its own line. '
            "Then, to answer the user, write <response>...</response>. Each tag at most once, in this order, "
            f"one newline between sections and no text outside the tags. For example:\n{example}\n{tool_list(tools)}"
        )
