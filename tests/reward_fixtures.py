"""Hand-made trajectories and ToolRL replies for the reward tests."""

from __future__ import annotations

import json
from typing import Any

from gymbox.environments.api.models import Action, Message
from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.tasks.spec import TaskSpec


def reply(*calls: tuple[str, dict[str, Any]], response: str | None = None, think: str = "plan") -> str:
    """A reply in ToolRL's exact layout."""
    parts = [f"<think>{think}</think>"]
    if calls:
        lines = [json.dumps({"name": name, "parameters": args}) for name, args in calls]
        parts.append("<tool_call>\n" + "\n".join(lines) + "\n</tool_call>")
    if response is not None:
        parts.append(f"<response>{response}</response>")
    return "\n".join(parts)


def turn(index: int, text: str = "<think>x</think>", *, signals: dict[str, float] | None = None,
         parsed: bool = True, answer: str = "done") -> Turn:
    return Turn(index=index, text=text, action=Action(text=text) if parsed else None,
                parse_error=None if parsed else "no closing tag", signals=signals or {},
                observation=[Message(role="tool", content=answer, tool_call_id="call_0")])


def toolcall_payload(answers: list[dict[str, Any]] | None, *, check: str = "calls",
                     functions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A single-turn toolcall payload; by default every function named in `answers` requires all its parameters."""
    if functions is None:
        functions = [{"name": name, "description": "", "parameters": {"type": "dict", "properties": {},
                                                                       "required": list(params)}}
                     for answer in answers or [] for name, params in answer.items()]
    return {"kind": "single", "check": check, "messages": [{"role": "user", "content": "do it"}],
            "functions": functions, "ground_truth": answers}


def trajectory(turns: list[Turn], *, payload: dict[str, Any] | None = None, env: str = "toolcall@v1",
               signals: dict[str, float] | None = None, truncated: bool = False,
               error: EpisodeError | None = None) -> Trajectory:
    task = TaskSpec(id="t1", env=env, payload=payload or {})
    last = signals if signals is not None else (turns[-1].signals if turns else {})
    return Trajectory(id="r1", task=task, group="t1", sample=0, base_seed=0, seed=1,
                      provenance=Provenance(env=env, runtime="local", policy="scripted"), turns=turns,
                      terminated=not truncated, truncated=truncated, truncated_by="max_turns" if truncated else None,
                      signals=last, error=error)


def single(text: str, answers: list[dict[str, Any]] | None, *, check: str = "calls",
           functions: list[dict[str, Any]] | None = None, success: float = 0.0) -> Trajectory:
    """A single-turn toolcall episode with one reply."""
    return trajectory([turn(0, text, signals={"success": success, "valid_action": 1.0})],
                      payload=toolcall_payload(answers, check=check, functions=functions))
