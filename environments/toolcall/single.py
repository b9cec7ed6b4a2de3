"""A single-turn episode: one reply, checked against BFCL's possible answers (or for relevance)."""

from __future__ import annotations

from typing import Any

from gymbox.environments.api import Action, Message, Observation, StepResult, TaskSpec, tool_message
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.toolcall.calls import Toolset
from gymbox.tasks.toolcall.checker import check_calls

# payload.check: how a reply is judged.
CHECKS = {
    "calls": "the calls must match the possible answers, in order",
    "calls_any_order": "the calls must match the possible answers, in any order",
    "no_call": "no function may be called (irrelevance)",
    "any_call": "at least one function must be called (relevance)",
}


def chat_messages(raw: list[dict[str, Any]]) -> list[Message]:
    """BFCL's question messages as chat messages; `InvalidTask` for a role outside the chat conventions."""
    roles = ("system", "user", "assistant")
    for m in raw:
        if not isinstance(m, dict) or m.get("role") not in roles:
            raise InvalidTask(f"task message {m!r:.80} needs a role among {roles}")
    return [Message(role=m["role"], content=str(m.get("content", ""))) for m in raw]


class SingleTurnEpisode:
    """Offers the task's functions, takes one action, and ends."""

    def __init__(self, task: TaskSpec) -> None:
        payload = task.payload
        if not isinstance(payload.get("messages"), list) or not isinstance(payload.get("functions"), list):
            raise InvalidTask(f"toolcall task {task.id!r} needs payload.messages and payload.functions (lists)")
        self.check = payload.get("check", "calls")
        if self.check not in CHECKS:
            raise InvalidTask(f"toolcall task {task.id!r} has payload.check {self.check!r}; use one of {list(CHECKS)}")
        self.answers: list[dict[str, Any]] | None = payload.get("ground_truth")
        if self.check.startswith("calls") and not isinstance(self.answers, list):
            raise InvalidTask(f"toolcall task {task.id!r} needs payload.ground_truth, the possible answers")
        self.functions: list[dict[str, Any]] = payload["functions"]
        self.messages = chat_messages(payload["messages"])
        self.tools = Toolset()
        self.tools.add(self.functions)
        self.calls = 0
        self.done = False

    def start(self) -> Observation:
        return Observation(messages=self.messages, tools=self.tools.specs)

    def step(self, action: Action) -> StepResult:
        decoded = [self.tools.decode(call) for call in action.tool_calls]
        well_formed = all(d.well_formed for d in decoded)
        messages = [
            tool_message(call, f"Error: {d.error}" if d.error else "Recorded. This task ends after one reply.")
            for call, d in zip(action.tool_calls, decoded, strict=True)
        ] or [Message(role="user", content="Recorded: no function was called. This task ends after one reply.")]
        mismatch = self._mismatch([(d.name, d.args) for d in decoded if d.args is not None], len(decoded))
        match = float(mismatch is None)
        self.calls, self.done = len(decoded), True
        signals = {"well_formed": float(well_formed), "valid_action": float(well_formed), "match": match,
                   "success": match, "num_calls": float(len(decoded))}
        info: dict[str, Any] = {"check": self.check}
        if mismatch:
            info["mismatch"] = mismatch
        return StepResult(observation=Observation(messages=messages), reward=match, terminated=True,
                          signals=signals, info=info)

    def _mismatch(self, calls: list[tuple[str, dict[str, Any]]], made: int) -> str | None:
        """Why the reply fails the task's check, or None when it passes."""
        if self.check == "no_call":
            return None if made == 0 else f"no function should be called here, got {made} call(s)"
        if self.check == "any_call":
            return None if made > 0 else "a function call was expected, got none"
        if len(calls) < made:
            return f"{made - len(calls)} of {made} call(s) had arguments that are not a JSON object"
        assert self.answers is not None
        return check_calls(calls, self.answers, self.functions, any_order=self.check == "calls_any_order")

    def state(self) -> dict[str, Any]:
        return {"kind": "single", "check": self.check, "turn": int(self.done), "calls": self.calls}
