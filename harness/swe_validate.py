"""Checking a swe task through the environment itself: its gold patch, applied with the agent's tools, resolves it,
and submitting nothing does not. The environment comes from the registry, played in this process."""

from __future__ import annotations

import time
from typing import Any

from gymbox.environments.api import Action, Environment, StepResult, TaskSpec
from gymbox.environments.api.models import ToolCall
from gymbox.environments.api.registry import load_target


def call(name: str, **args: Any) -> Action:
    """An action with one tool call, as a policy would send it."""
    return Action(tool_calls=[ToolCall.make(name, args, id=f"call-{name}")])


def apply_with_tools(env: Environment, patch: str) -> StepResult:
    """Write the patch with `create` and apply it with `bash`, as an agent could."""
    env.step(call("create", path="/home/agent/fix.patch", file_text=patch))
    return env.step(call("bash", command="git apply /home/agent/fix.patch && rm /home/agent/fix.patch"))


def play(task: TaskSpec, patch: str | None, seed: int = 0,
         actions: list[Action] | None = None) -> tuple[dict[str, float], StepResult | None]:
    """One episode: apply `patch` (if any) with the tools, take `actions`, submit; returns the signals and the
    patch's apply step."""
    env = load_target("swe")()
    try:
        env.reset(task, seed)
        applied = apply_with_tools(env, patch) if patch else None
        for action in actions or []:
            env.step(action)
        result = env.step(call("submit"))
        return result.signals, applied
    finally:
        env.close()


def check_task(task: TaskSpec) -> dict[str, Any]:
    """Gold patch resolves, unpatched does not; with the reason when either fails."""
    started = time.monotonic()
    gold, applied = play(task, task.payload["gold_patch"])
    gold_seconds = time.monotonic() - started
    bare, _ = play(task, None)
    why = []
    if applied is not None and applied.signals.get("commands_failed", 0.0) > 0:
        why.append(f"the gold patch did not apply: {applied.observation.messages[-1].content}")
    if gold["resolved"] != 1.0:
        why.append(f"the gold patch does not resolve it (FAIL_TO_PASS passing {gold['f2p_passed']:.2f}, "
                   f"PASS_TO_PASS broken {gold['p2p_broken']:g})")
    if bare["resolved"] != 0.0 or bare["f2p_passed"] == 1.0:
        why.append("it is resolved without any patch")
    return {"task": task.id, "package": task.category, "ok": not why, "why": "; ".join(why),
            "gold_resolved": gold["resolved"] == 1.0, "bare_resolved": bare["resolved"] == 1.0,
            "gold_seconds": gold_seconds, "tests_seconds": gold["tests_seconds"]}
