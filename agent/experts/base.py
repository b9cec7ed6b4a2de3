"""What every expert shares: its signature, the error for a task it cannot solve, and reading the conversation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gymbox.agent.policy import PolicyError
from gymbox.environments.api.models import Action, Message, ToolCall
from gymbox.tasks.spec import TaskSpec

# An expert decides the next action from the task and the conversation so far (the environment's answers included),
# so that one expert serves any number of concurrent episodes without state of its own.
Expert = Callable[[TaskSpec, list[Message]], Action]


class NoDemonstration(PolicyError):
    """The task carries nothing an expert can play (no reference answer, no recorded plan); the message says which."""


def call(name: str, arguments: dict[str, Any] | None = None) -> Action:
    """An action of one tool call."""
    return Action(tool_calls=[ToolCall.make(name, arguments)])


def turn_index(messages: Sequence[Message]) -> int:
    """How many assistant turns the conversation already has: the index of the turn to decide."""
    return sum(m.role == "assistant" for m in messages)


def last_answer(messages: Sequence[Message]) -> str:
    """The text of the environment's answer to the last assistant turn ('' before the first)."""
    texts: list[str] = []
    for message in reversed(messages):
        if message.role == "assistant":
            break
        texts.append(message.content or "")
    return "\n".join(reversed(texts))
