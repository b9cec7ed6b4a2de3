"""The toolcall expert: BFCL's ground truth as calls, under the tool names the agent is shown.

Single-turn tasks get one reply: a correct call set built from the possible answers (the first allowed value of each
parameter), or no call for irrelevance. Multi-turn tasks replay each user turn's ground-truth calls one per reply,
then end the turn with a reply that calls nothing (that is how an agent ends a turn there).
"""

from __future__ import annotations

import ast
import math
from typing import Any

from gymbox.agent.experts.base import NoDemonstration
from gymbox.agent.experts.tau2 import tau2
from gymbox.environments.api.models import Action, Message, ToolCall
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.toolcall.checker import reference_calls
from gymbox.tasks.toolcall.schema import ToolNames

NO_CALL = "None of the functions I have can do this, so I call none of them."
TURN_DONE = "Done: I have carried out your request."
CANNOT = "I cannot do this yet: a function or a detail I need is missing. Please tell me more."
# The leaderboard's limit of tool-calling replies within one user turn (the environment's too): a turn with more
# ground-truth calls than fit one a reply puts several in a reply.
STEPS_PER_TURN = 20


def toolcall(task: TaskSpec, messages: list[Message]) -> Action:
    if task.payload.get("kind") == "tau2":
        return tau2(task, messages)
    if task.payload.get("kind") == "multi":
        return _multi(task, messages)
    return _single(task)


def _names(functions: list[dict[str, Any]]) -> ToolNames:
    """BFCL names to the tool names the environment offers, registered in the environment's order."""
    names = ToolNames()
    for doc in functions:
        names.add(doc["name"])
    return names


def _single(task: TaskSpec) -> Action:
    check = task.payload.get("check", "calls")
    if check == "no_call":
        return Action(text=NO_CALL)
    if check == "any_call":
        raise NoDemonstration(f"{task.id}: relevance tasks have no reference answer (any call passes), so there "
                              "is no correct call to demonstrate")
    functions: list[dict[str, Any]] = task.payload["functions"]
    names = _names(functions)
    calls = reference_calls(task.payload["ground_truth"], functions)
    return Action(tool_calls=[ToolCall.make(names.to_openai[name], args, id=f"call_{i}")
                              for i, (name, args) in enumerate(calls)])


def _all_functions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every function in the order the environment offers them: the first ones, then those revealed by turn."""
    missed = payload.get("missed_functions") or {}
    return [*payload["functions"], *(doc for turn in sorted(missed, key=int) for doc in missed[turn])]


def parse_ground_truth(text: str, docs: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """A ground-truth call such as `cd(folder='documents')` as (name, keyword arguments); positional arguments take
    their parameter names in the function document's order. Only literals are read (nothing is evaluated)."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise NoDemonstration(f"ground-truth call {text!r} is not a plain function call")
    name = node.func.id
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    if node.args:
        order = list(((docs.get(name) or {}).get("parameters") or {}).get("properties") or {})
        if len(node.args) > len(order):
            raise NoDemonstration(f"ground-truth call {text!r} passes more positional arguments than {name} declares")
        kwargs = {**dict(zip(order, (ast.literal_eval(a) for a in node.args), strict=False)), **kwargs}
    return name, _json_ready(kwargs)


def _json_ready(value: Any) -> Any:
    """Python literals as JSON values (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    return value


def _multi(task: TaskSpec, messages: list[Message]) -> Action:
    """The next call of the current user turn, or the reply that ends it. Where the conversation stands is read from
    it: every assistant reply without calls ended a user turn; those with calls since then are this turn's calls."""
    answers: list[list[str]] = task.payload["ground_truth"]
    replies = [m for m in messages if m.role == "assistant"]
    turn = sum(not m.tool_calls for m in replies)
    done = 0
    for message in reversed(replies):
        if not message.tool_calls:
            break
        done += len(message.tool_calls)
    if turn >= len(answers):
        raise NoDemonstration(f"{task.id}: all {len(answers)} user turns are answered and the conversation goes on")
    if not answers[turn]:
        return Action(text=CANNOT)  # the leaderboard's miss_func / miss_param turns: nothing can be done yet
    if done >= len(answers[turn]):
        return Action(text=TURN_DONE)
    functions = _all_functions(task.payload)
    docs = {doc["name"]: doc for doc in functions}
    names = _names(functions)
    per_reply = math.ceil(len(answers[turn]) / (STEPS_PER_TURN - 1))  # one reply is left to end the turn
    calls = []
    for i, text in enumerate(answers[turn][done:done + per_reply]):
        name, args = parse_ground_truth(text, docs)
        if name not in names.to_openai:
            raise NoDemonstration(f"{task.id}: the ground truth calls {name!r}, which the task does not offer")
        calls.append(ToolCall.make(names.to_openai[name], args, id=f"call_{i}"))
    return Action(tool_calls=calls)
