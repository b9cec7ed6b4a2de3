"""The τ²-bench expert: replays the task's gold actions one call per turn and says what the task says to communicate.

The plan is a list of steps in the gold actions' order: each agent action is a call; each run of user actions (the
user's phone, in telecom) is one message asking the user to do them (the `gold` user does them when asked); the last
step tells the user every string the task requires to be communicated. In solo mode every action, the user's too, is
the agent's call, and the last step calls `done`. Where the conversation stands is read from it: the agent's turns
since the user's first message (solo: since the start).
"""

from __future__ import annotations

import json
from typing import Any

from gymbox.agent.experts.base import NoDemonstration
from gymbox.environments.api.models import Action, Message, ToolCall
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.toolcall.tau2 import package_task

CLOSING = "Your request has been handled."


def plan(task: Any, solo: bool) -> list[Action]:
    """The expert's actions, in order, for one package task."""
    actions = task.evaluation_criteria.actions or []
    steps: list[Action] = []
    asking: list[str] = []
    for i, action in enumerate(actions):
        if action.requestor == "user" and not solo:
            asking.append(f"{action.name}({json.dumps(action.arguments)})")
            continue
        if asking:
            steps.append(_ask(asking))
            asking = []
        steps.append(Action(tool_calls=[ToolCall.make(action.name, dict(action.arguments), id=f"gold_{i}")]))
    if asking:
        steps.append(_ask(asking))
    if solo:
        steps.append(Action(tool_calls=[ToolCall.make("done", {}, id="gold_done")]))
    else:
        said = [str(s) for s in (task.evaluation_criteria.communicate_info or [])]
        steps.append(Action(text=" ".join([CLOSING, *said])))
    return steps


def _ask(calls: list[str]) -> Action:
    return Action(text="Please do the following on your phone, then tell me when it is done: " + "; ".join(calls))


def tau2(task: TaskSpec, messages: list[Message]) -> Action:
    payload = task.payload
    solo = bool(payload.get("solo"))
    try:
        steps = plan(package_task(str(payload.get("domain")), str(payload.get("task_id"))), solo)
    except KeyError as exc:
        raise NoDemonstration(f"{task.id}: {exc.args[0]}") from exc
    first_user = next((i for i, m in enumerate(messages) if m.role == "user"), 0 if solo else len(messages))
    done = sum(m.role == "assistant" for m in messages[first_user:])
    if done >= len(steps):
        raise NoDemonstration(f"{task.id}: all {len(steps)} gold steps are played and the conversation goes on")
    return steps[done]
