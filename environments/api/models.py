"""Wire models of the step API, shared by server and client (OpenAI chat conventions for messages and tools)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gymbox.environments.api.errors import InvalidAction
from gymbox.tasks.spec import Limits, TaskSpec


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(Model):
    name: str
    arguments: str = Field(default="{}", description="JSON-encoded arguments, as in OpenAI's chat API")


class ToolCall(Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    @classmethod
    def make(cls, name: str, arguments: dict[str, Any] | None = None, id: str = "call_0") -> ToolCall:
        """Build a call from a name and a dict of arguments."""
        # Compact, as the tool-call parsers emit it: one call, one encoding (replay compares bytes).
        encoded = json.dumps(arguments or {}, separators=(",", ":"), ensure_ascii=False)
        return cls(id=id, function=FunctionCall(name=name, arguments=encoded))

    def args(self) -> dict[str, Any]:
        """The decoded arguments; `InvalidAction` when they are not a JSON object."""
        try:
            value = json.loads(self.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidAction(
                f"arguments of {self.function.name!r} are not valid JSON ({exc.msg} at {exc.pos}); "
                "send a JSON object such as {\"path\": \"a.txt\"}"
            ) from exc
        except (ValueError, RecursionError) as exc:  # integers past Python's digit limit, absurd nesting
            raise InvalidAction(f"arguments of {self.function.name!r} cannot be decoded: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidAction(
                f"arguments of {self.function.name!r} must be a JSON object, got {type(value).__name__}"
            )
        return value


class Message(Model):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionSpec(Model):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolSpec(Model):
    """A tool the agent may call, as a JSON-schema function (OpenAI `tools` entry)."""

    type: Literal["function"] = "function"
    function: FunctionSpec

    @classmethod
    def make(cls, name: str, description: str, properties: dict[str, Any] | None = None,
             required: list[str] | None = None) -> ToolSpec:
        schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
        if required:
            schema["required"] = required
        return cls(function=FunctionSpec(name=name, description=description, parameters=schema))


class Action(Model):
    """What the policy did: its raw text and the tool calls parsed from it."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)


class Observation(Model):
    """New messages for the agent; `tools` is set on reset (and whenever the tool set changes)."""

    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolSpec] | None = None


class StepResult(Model):
    observation: Observation
    reward: float | None = None
    terminated: bool = False
    truncated: bool = False
    signals: dict[str, float] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


# ---- session and server records ----------------------------------------------------------------------------

class SessionStarted(Model):
    session: str
    observation: Observation
    seed: int
    env: str
    info: dict[str, Any] = Field(default_factory=dict)


class SessionState(Model):
    session: str
    task_id: str
    seed: int
    turn: int
    done: bool
    age_seconds: float
    idle_seconds: float
    env_state: dict[str, Any] = Field(default_factory=dict)


class Closed(Model):
    session: str
    closed: bool = Field(description="false when the session was already closed")


class Graded(Model):
    """The answer to `grade`: the signals of an episode the client ended (a harness limit), as a cut-off step's."""

    session: str
    signals: dict[str, float] = Field(default_factory=dict)


class Health(Model):
    status: Literal["ok"] = "ok"
    env: str
    sessions: int
    capacity: int


class EnvSpec(Model):
    id: str
    name: str
    version: str
    description: str = ""
    tools: list[ToolSpec] = Field(default_factory=list)
    suites: list[str] = Field(default_factory=list)
    isolation: Literal["shared", "container"] = "shared"
    capacity: int = 0
    idle_timeout: float = 0.0


# ---- requests (one discriminated union, so the server validates a request in one pass) -------------------

class ResetRequest(Model):
    op: Literal["reset"] = "reset"
    task: TaskSpec
    seed: int | None = None


class StepRequest(Model):
    op: Literal["step"] = "step"
    session: str
    action: Action
    # A harness answers some turns itself (a reply it cannot parse): it says which turn this is, so the server's
    # turn limit counts the same turns as the harness's. Default: the turn after the last step.
    turn: int | None = Field(default=None, ge=0, description="the agent's turn (0-based) this action is")


class SessionRequest(Model):
    """`close` frees a session; `state` reads it; `grade` ends its episode graded (see `SessionHost.grade`)."""

    op: Literal["close", "state", "grade"]
    session: str


class ServerRequest(Model):
    op: Literal["health", "spec"]


Request = Annotated[ResetRequest | StepRequest | SessionRequest | ServerRequest, Field(discriminator="op")]


class Envelope(Model):
    """A request over the WebSocket channel: an id the reply echoes, and the request itself."""

    id: int
    request: Request


ENVELOPE = TypeAdapter(Envelope)
REQUEST = TypeAdapter(Request)

__all__ = [
    "Action", "Closed", "EnvSpec", "Envelope", "FunctionCall", "FunctionSpec", "Graded", "Health", "Limits", "Message",
    "Observation", "Request", "ResetRequest", "ServerRequest", "SessionRequest", "SessionStarted", "SessionState",
    "StepRequest", "StepResult", "TaskSpec", "ToolCall", "ToolSpec",
]
