"""The parser contract: `Parser` turns generated text into an `Action` and back, `ParseResult`, `format_reminder`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from gymbox.agent.parsers.calls import ParseError
from gymbox.environments.api.models import Action, Message, ToolSpec


class ParseLimits(BaseModel):
    """Hard limits, so that a degenerate generation costs little and fails with a clear error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(default=1_000_000, gt=0, description="longest reply parsed, in UTF-8 bytes")
    max_calls: int = Field(default=64, gt=0, description="most tool calls in one reply")


class ParseResult(BaseModel):
    """What a parser made of one reply.

    `action` holds the raw text and, when `error` is None, every tool call (with an error it has none, so a
    half-understood reply is never executed). `content` is the message text outside the call syntax.
    `format_ok` is True only when the reply followed the format exactly; tolerated deviations are in `notes`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    content: str = ""
    error: str | None = None
    format_ok: bool = False
    notes: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


class Parser(ABC):
    """One tool-call format. `parse` never raises; `render` is its inverse; `instructions` describes it.

    Every parser takes the offered tools (only `react` needs them to parse) and the limits, so a harness can
    build any parser from the table the same way: `get_parser(name)(tools=tools)`.
    """

    name: ClassVar[str]

    def __init__(self, *, tools: Sequence[ToolSpec] = (), limits: ParseLimits | None = None) -> None:
        self.tools = list(tools)
        self.limits = limits or ParseLimits()

    def parse(self, text: str) -> ParseResult:
        """Parse one reply; every problem, including a reply past the limits, comes back as `error`."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_bytes:
            return self.failure(text, f"the reply is {size:,} bytes long; at most {self.limits.max_bytes:,} are parsed")
        try:
            return self._parse(text)
        except ParseError as exc:
            return self.failure(text, str(exc))

    def failure(self, text: str, error: str) -> ParseResult:
        return ParseResult(action=Action(text=text), error=error)

    def check_count(self, count: int) -> None:
        if count > self.limits.max_calls:
            raise ParseError(f"the reply has {count} tool calls; at most {self.limits.max_calls} are allowed")

    @abstractmethod
    def _parse(self, text: str) -> ParseResult:
        """Parse text already known to be within the size limit; raise `ParseError` at the first problem."""

    @abstractmethod
    def render(self, action: Action) -> str:
        """The text of `action` in this format, `action.text` being the prose around the calls.

        `parse(render(action))` gives back the same tool calls. `ValueError` when the format cannot express it.
        """

    @abstractmethod
    def instructions(self, tools: list[ToolSpec]) -> str:
        """What to tell the model about this format, with an example call of one of `tools`."""


def format_reminder(parser: Parser, error: str, tools: list[ToolSpec]) -> Message:
    """The observation after a reply that could not be parsed: what was wrong, then the expected format."""
    return Message(role="user", content=(
        f"Your last reply could not be parsed: {error.rstrip('.')}.\n"
        f"Reply in the {parser.name} format:\n\n{parser.instructions(tools)}"
    ))
