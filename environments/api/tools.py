"""`ToolEnv`: an environment whose tools are typed methods; dispatch and the answers to bad calls are written once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from gymbox.environments.api.env import Environment, no_tool_call, tool_message, unknown_tool_text
from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.api.models import Action, Message, Observation, StepResult, ToolCall
from gymbox.environments.api.signature import Signature, signature

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__gymbox_tool__"


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer when its text alone is not enough: a call that was not valid, or one that ends the episode.

    A tool returns its message's text, or one of these. `signals`, `info` and `reward` go onto the step's result;
    `done` ends the episode (the calls after it in the same reply are not run).
    """

    content: str
    valid: bool = True
    done: bool = False
    reward: float | None = None
    signals: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@overload
def tool(fn: F) -> F: ...
@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...
def tool(fn: F | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Mark a method of a `ToolEnv` as a tool: `@tool`, or `@tool(name=..., description=...)` to override what the
    method's name and docstring say (a description that holds computed values, a name that a method cannot have)."""

    def mark(method: F) -> F:
        setattr(method, _MARK, (name, description))
        return method

    return mark(fn) if fn is not None else mark


class ToolEnv(Environment):
    """An environment whose tools are its methods marked `@tool`.

    Each tool's JSON schema comes from the method's signature (types, required parameters, defaults) and its
    Google-style docstring (the summary, and `Args:` for the parameters). `step` runs the calls of an action in
    order and answers every bad one (no call at all, an unknown tool, arguments that are not a JSON object, missing,
    unexpected or mistyped arguments) with a message that says what is allowed, and `valid_action` 0. A tool that
    raises `InvalidAction` is answered the same way with its own message. Subclasses write `reset` and the tools;
    `step_signals` adds what every step reports.
    """

    _tools: ClassVar[dict[str, tuple[str, Signature]]] = {}  # tool name -> (method name, signature)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        marked: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):  # a subclass's method replaces its base's, in the base's place
            marked.update((attr, value) for attr, value in vars(klass).items() if hasattr(value, _MARK))
        table: dict[str, tuple[str, Signature]] = {}
        for attr, method in marked.items():
            name, description = getattr(method, _MARK)
            made = signature(method, name or attr, description)
            if made.name in table:
                raise TypeError(f"{cls.__name__}: two methods declare the tool {made.name!r}")
            table[made.name] = (attr, made)
        cls._tools = table
        cls.tools = [made.spec for _, made in table.values()]

    def first_observation(self, text: str) -> Observation:
        """What `reset` returns: the task's text as a user message, and the tools."""
        return Observation(messages=[Message(role="user", content=text)], tools=self.tools)

    def step_signals(self) -> dict[str, float]:
        """Signals every step that reached the tools reports besides `valid_action`; none by default."""
        return {}

    def step(self, action: Action) -> StepResult:
        if not action.tool_calls:
            return StepResult(observation=Observation(messages=[no_tool_call(self.tools)]),
                              signals={"valid_action": 0.0})
        messages, results = [], []
        for call in action.tool_calls:
            result = self.run_tool(call)
            messages.append(tool_message(call, result.content))
            results.append(result)
            if result.done:
                break
        signals = {"valid_action": float(all(r.valid for r in results)), **self.step_signals()}
        info: dict[str, Any] = {}
        reward = None
        for result in results:
            signals.update(result.signals)
            info.update(result.info)
            reward = result.reward if result.reward is not None else reward
        return StepResult(observation=Observation(messages=messages), reward=reward, terminated=results[-1].done,
                          signals=signals, info=info)

    def run_tool(self, call: ToolCall) -> ToolResult:
        """Validate one call and run its tool; a bad call gets an answer that says what is allowed."""
        entry = self._tools.get(call.function.name)
        if entry is None:
            return ToolResult(f"Error: {unknown_tool_text(call.function.name, self.tools)}", valid=False)
        attr, made = entry
        try:
            answer = getattr(self, attr)(**made.bind(call))
        except InvalidAction as err:
            return ToolResult(f"Error: {err.message}", valid=False)
        return answer if isinstance(answer, ToolResult) else ToolResult(str(answer))
