"""The wire models: OpenAI chat form, strict validation, typed errors that survive the wire."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gymbox.environments.api import errors
from gymbox.environments.api.errors import InvalidAction, SessionExpired, from_wire
from gymbox.environments.api.models import REQUEST, Action, Message, StepResult, ToolCall, ToolSpec
from gymbox.tasks.spec import TaskSpec, derive_seed


def test_messages_and_tools_are_openai_chat_form() -> None:
    call = ToolCall.make("get_weather", {"city": "Paris"}, id="call_7")
    message = Message(role="assistant", content=None, tool_calls=[call])
    wire = json.loads(message.model_dump_json(exclude_none=True))
    assert wire == {"role": "assistant", "tool_calls": [
        {"id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    tool = ToolSpec.make("get_weather", "Weather now", {"city": {"type": "string"}}, required=["city"])
    assert tool.model_dump()["function"]["parameters"]["required"] == ["city"]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Action.model_validate({"text": "hi", "tool_calls": [], "mood": "happy"})
    with pytest.raises(ValidationError):
        TaskSpec.model_validate({"id": "t", "env": "echo", "surprise": 1})


@pytest.mark.parametrize("arguments, reason", [("{oops", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_tool_call_arguments_errors_say_what_to_send(arguments: str, reason: str) -> None:
    call = ToolCall.model_validate({"id": "c", "function": {"name": "f", "arguments": arguments}})
    with pytest.raises(InvalidAction, match=reason):
        call.args()


def test_signals_must_be_numbers() -> None:
    with pytest.raises(ValidationError):
        StepResult.model_validate({"observation": {"messages": []}, "signals": {"success": "yes"}})


def test_requests_are_one_discriminated_union() -> None:
    step = REQUEST.validate_json('{"op": "step", "session": "s1", "action": {"text": "x"}}')
    assert type(step).__name__ == "StepRequest"
    with pytest.raises(ValidationError):
        REQUEST.validate_json('{"op": "dance"}')


@pytest.mark.parametrize("cls", list(errors.ERRORS.values()))
def test_every_error_code_round_trips(cls: type[errors.EnvError]) -> None:
    rebuilt = from_wire(json.loads(json.dumps(cls("what happened", limit=3).to_wire())))
    assert type(rebuilt) is cls and rebuilt.message == "what happened" and rebuilt.detail == {"limit": 3}


def test_unknown_error_code_becomes_base_error() -> None:
    assert type(from_wire({"code": "from_the_future", "message": "m"})) is errors.EnvError
    assert issubclass(SessionExpired, errors.UnknownSession)


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "task-1", 0) == derive_seed(0, "task-1", 0)
    seeds = {derive_seed(0, "task-1", i) for i in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize("arguments", ['{"n": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000])
def test_pathological_arguments_are_an_agent_mistake(arguments: str) -> None:
    call = ToolCall.model_validate({"id": "c", "function": {"name": "f", "arguments": arguments}})
    with pytest.raises(InvalidAction):
        call.args()
