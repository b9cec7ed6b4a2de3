"""The `Environment` base class that every environment implements, and helpers for tool-calling environments."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from gymbox.environments.api.models import Action, Message, Observation, StepResult, ToolCall, ToolSpec
from gymbox.tasks.spec import TaskSpec


class Environment(ABC):
    """One episode at a time: `reset` starts it, `step` advances it, `close` frees it.

    Subclasses set `name`, `version` and the tools they always offer; the server enforces the task's limits
    (turns, time) and keeps sessions apart, so an environment holds only its own game logic.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "v1"
    description: ClassVar[str] = ""
    tools: ClassVar[list[ToolSpec]] = []
    suites: ClassVar[list[str]] = []
    # "shared": one server hosts many sessions; "container": each episode gets its own container.
    isolation: ClassVar[str] = "shared"
    # True when the environment starts containers of its own through the Docker engine (`swe`), whatever its
    # isolation: it needs the engine wherever it runs.
    uses_docker: ClassVar[bool] = False
    # True when reset and step are cheap and never block: the server then runs them on its event loop
    # instead of a worker thread.
    inline: ClassVar[bool] = False
    # Sessions one server hosts at once unless `gymbox serve --capacity` says otherwise.
    capacity: ClassVar[int] = 256

    @classmethod
    def env_id(cls) -> str:
        return f"{cls.name}@{cls.version}"

    @abstractmethod
    def reset(self, task: TaskSpec, seed: int) -> Observation:
        """Start an episode of `task`; the same task and seed give the same observation."""

    @abstractmethod
    def step(self, action: Action) -> StepResult:
        """Apply the agent's action. Agent mistakes become observations, never exceptions."""

    def step_now(self, action: Action) -> StepResult | None:
        """`step`, on the server's event loop, when it is short and cannot block there; None (the default) when not.

        The server tries this before sending a step to a worker thread: on a small VM the hop to the thread and back
        costs about a millisecond, which is a large share of a text game's step. Resets always go to the thread.
        """
        return None

    def grade(self) -> dict[str, float]:
        """Signals for an episode that a limit cut off (turns, time, a harness's tokens); environments that grade on
        submit grade here.

        The server calls it once: after the step that reached its own limit (merging what it returns into that
        step's signals), or when a client's own limit ended the episode (a `grade` request); never for an episode
        that has already ended.
        """
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, most environments hold nothing to free
        """Free what the episode holds; called once per session."""

    def state(self) -> dict[str, Any]:
        """A JSON-able summary of the episode's state, for `state` requests and debugging."""
        return {}


def tool_message(call: ToolCall, content: str) -> Message:
    """The observation message answering one tool call."""
    return Message(role="tool", tool_call_id=call.id, name=call.function.name, content=content)


def unknown_tool_text(name: str, tools: list[ToolSpec]) -> str:
    """Why a call to `name` cannot run, and which tools can."""
    names = ", ".join(t.function.name for t in tools) or "none"
    return f"there is no tool named {name!r}. Available tools: {names}."


def unknown_tool(call: ToolCall, tools: list[ToolSpec]) -> Message:
    return tool_message(call, f"Error: {unknown_tool_text(call.function.name, tools)}")


def no_tool_call(tools: list[ToolSpec]) -> Message:
    names = ", ".join(t.function.name for t in tools)
    return Message(role="user", content=f"No tool call was found in your reply. Call one of the tools: {names}.")
