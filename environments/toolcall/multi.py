"""A multi-turn episode: tool calls run on real BFCL backends; each user turn is checked against a reference run.

A user turn ends when the agent replies without a tool call. The environment then runs that turn's
ground-truth calls on a second set of backends (which follow the reference path through every turn, as on the
leaderboard) and compares: the public state of every backend (`state_match`), and whether each reference
result appears among the agent's results so far (`response_match`). Turns whose ground truth is empty (the
request cannot be done yet: miss_func, miss_param) are not checked, as on the leaderboard.

The backends keep the random seeds of the task's scenario, not the episode seed: the ground truth names ids
that those seeds generate. Episodes are therefore deterministic whatever the seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gymbox.environments.api import Action, Message, Observation, StepResult, TaskSpec, tool_message
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.toolcall.backends import (
    BackendError,
    Backends,
    missing_results,
    state_differences,
)
from gymbox.environments.toolcall.calls import Toolset, too_costly
from gymbox.environments.toolcall.single import chat_messages

MAX_STEPS_PER_TURN = 20  # the leaderboard's limit of tool-calling steps within one user turn
NEW_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
_SHOWN_RESULTS, _SHOWN_CHARS = 5, 300  # how much of the missing reference results `info` carries


@dataclass
class TurnResult:
    """How one user turn ended."""

    turn: int
    checked: bool
    calls: int
    state_match: bool = True
    response_match: bool = True
    differences: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # the first few reference results not found, shortened

    @property
    def passed(self) -> bool:
        return self.state_match and self.response_match


class MultiTurnEpisode:
    """Runs the agent's calls on the task's backends and checks each user turn when it ends."""

    def __init__(self, task: TaskSpec) -> None:
        p = task.payload
        for key, kind in (("turns", list), ("functions", list), ("involved_classes", list),
                          ("initial_config", dict), ("ground_truth", list)):
            if not isinstance(p.get(key), kind):
                raise InvalidTask(f"multi-turn toolcall task {task.id!r} needs payload.{key} ({kind.__name__})")
        if len(p["ground_truth"]) != len(p["turns"]):
            raise InvalidTask(f"task {task.id!r} has {len(p['turns'])} turns but {len(p['ground_truth'])} answers")
        self.turns: list[list[dict[str, Any]]] = p["turns"]
        self.answers: list[list[str]] = p["ground_truth"]
        self.missed: dict[str, list[dict[str, Any]]] = p.get("missed_functions") or {}
        try:
            self.agent = Backends(p["involved_classes"], p["initial_config"], bool(p.get("long_context")))
            self.reference = Backends(p["involved_classes"], p["initial_config"], bool(p.get("long_context")))
        except KeyError as exc:
            raise InvalidTask(f"task {task.id!r}: {exc.args[0]}") from exc
        self.tools = Toolset()
        self.tools.add(p["functions"])
        self.turn = 0
        self.steps = 0  # tool-calling steps in the current turn
        self.turn_calls = 0
        self.calls = 0
        self.errors = 0
        self.results: list[str] = []  # every result the agent got, over all turns (the leaderboard's response check)
        self.finished: list[TurnResult] = []
        self.checked_turns = sum(1 for answer in self.answers if answer)

    def start(self) -> Observation:
        messages, _ = self._open_turn()
        return Observation(messages=messages, tools=list(self.tools.specs))

    def _open_turn(self) -> tuple[list[Message], bool]:
        """The messages that begin the current turn; True when the tool set changed."""
        revealed = self.missed.get(str(self.turn))
        if revealed:
            self.tools.add(revealed)
        messages = chat_messages(self.turns[self.turn])
        if not messages and revealed:
            messages = [Message(role="user", content=NEW_FUNCTIONS_PROMPT)]
        return messages, bool(revealed)

    def step(self, action: Action) -> StepResult:
        if action.tool_calls:
            return self._run_calls(action)
        return self._end_turn()

    def _run_calls(self, action: Action) -> StepResult:
        messages, well_formed, raised = [], True, False
        for call in action.tool_calls:
            decoded = self.tools.decode(call)
            self.calls += 1
            self.turn_calls += 1
            well_formed = well_formed and decoded.well_formed
            if not decoded.runnable:
                messages.append(tool_message(call, f"Error: {decoded.error}"))
                self.errors += 1
                continue
            refusal = too_costly(decoded.args or {})
            if refusal:
                well_formed = False
                messages.append(tool_message(call, f"Error: {refusal}; the call was not run."))
                self.errors += 1
                continue
            # A call that breaks its schema still runs, as on the leaderboard (a Python backend may accept it);
            # the agent is told what was wrong alongside the result.
            try:
                result = self.agent.call(decoded.name, kwargs=self.tools.backend_arguments(decoded))
                shown = f"{result}\n\nWarning: {decoded.error}" if decoded.error else result
            except BackendError as err:
                result = str(err)
                shown = f"Error: {decoded.error}" if decoded.error else result
                raised = True
                self.errors += 1
            self.results.append(result)
            messages.append(tool_message(call, shown))
        self.steps += 1
        signals = {"valid_action": float(well_formed and not raised), "well_formed": float(well_formed),
                   "calls": float(self.calls), "errors": float(self.errors)}
        if self.steps >= MAX_STEPS_PER_TURN:
            # The leaderboard gives up on an entry whose turn runs this long; so does the environment.
            signals.update(self._final_signals())
            return StepResult(observation=Observation(messages=messages), truncated=True, signals=signals,
                              info={"truncated_by": "steps_per_turn", "turns": self._turn_log()})
        return StepResult(observation=Observation(messages=messages), signals=signals)

    def _end_turn(self) -> StepResult:
        result = self._check_turn()
        self.finished.append(result)
        self.turn += 1
        self.steps = self.turn_calls = 0
        signals = {"valid_action": 1.0, "well_formed": 1.0, "calls": float(self.calls), "errors": float(self.errors),
                   "progress": self._passed() / max(1, self.checked_turns)}
        info: dict[str, Any] = {"turn": asdict(result)}
        if self.turn >= len(self.turns):
            signals.update(self._final_signals())
            info["turns"] = self._turn_log()
            done = Message(role="user", content="That was my last request; thank you. The conversation is over.")
            return StepResult(observation=Observation(messages=[done]), terminated=True, reward=signals["success"],
                              signals=signals, info=info)
        messages, changed = self._open_turn()
        observation = Observation(messages=messages, tools=list(self.tools.specs) if changed else None)
        return StepResult(observation=observation, signals=signals, info=info)

    def _check_turn(self) -> TurnResult:
        """Run the turn's reference calls and compare the agent's backends and results with them."""
        expected = [self.reference.run(call) for call in self.answers[self.turn]]
        if not self.answers[self.turn]:
            return TurnResult(self.turn, checked=False, calls=self.turn_calls)
        differences = state_differences(self.agent, self.reference)
        missing = missing_results(expected, self.results)
        return TurnResult(self.turn, checked=True, calls=self.turn_calls, state_match=not differences,
                          response_match=not missing, differences=differences,
                          missing=[m[:_SHOWN_CHARS] for m in missing[:_SHOWN_RESULTS]])

    def _passed(self) -> int:
        return sum(1 for r in self.finished if r.checked and r.passed)

    def _final_signals(self) -> dict[str, float]:
        """Episode signals; turns never reached count as failed."""
        checked = [r for r in self.finished if r.checked]
        total = max(1, self.checked_turns)
        state = sum(r.state_match for r in checked) / total
        response = sum(r.response_match for r in checked) / total
        success = float(self.turn >= len(self.turns) and all(r.passed for r in checked))
        return {"state_match": state, "response_match": response, "success": success}

    def _turn_log(self) -> list[dict[str, Any]]:
        return [{"turn": r.turn, "checked": r.checked, "passed": r.passed, "differences": r.differences,
                 "missing": r.missing} for r in self.finished]

    def state(self) -> dict[str, Any]:
        return {"kind": "multi", "turn": self.turn, "turns": len(self.turns), "steps_in_turn": self.steps,
                "calls": self.calls, "errors": self.errors, "turns_passed": self._passed()}
