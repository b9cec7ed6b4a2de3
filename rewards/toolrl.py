"""ToolRL's tool-format reward R_format and tool-correctness reward R_correct.

From "ToolRL: Reward is All Tool Learning Needs" (Qian et al., 2025).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from gymbox.agent.parsers.toolrl import Shape, ToolRLParser, ToolRLResult
from gymbox.environments.api.errors import InvalidAction
from gymbox.environments.records import Trajectory
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.toolcall.checker import reference_value
from gymbox.tasks.toolcall.schema import ToolNames

Call = tuple[str, dict[str, Any]]  # (function name, decoded arguments)
SCHEDULE_START = 2.0  # the schedule variant starts both ranges at ±2


@dataclass(frozen=True)
class TruthCall:
    """One expected call: each parameter's allowed values; parameters in `optional` may be left out.

    A concrete ground truth (ToolRL's own data) has one allowed value per parameter and nothing optional; BFCL's
    possible answers may allow several values and omissions.
    """

    name: str
    allowed: Mapping[str, tuple[Any, ...]]
    optional: frozenset[str] = frozenset()

    @classmethod
    def exact(cls, name: str, arguments: Mapping[str, Any]) -> TruthCall:
        return cls(name, {k: (v,) for k, v in arguments.items()})

    def expected_keys(self, given: Iterable[str]) -> list[str]:
        """The parameters expected of a call that gives `given`: the required ones and the optional ones given."""
        given = set(given)
        return [k for k in self.allowed if k not in self.optional or k in given]


@dataclass(frozen=True)
class TurnTruth:
    """What one turn should have been: the sections it needs and the calls; `calls` None when they are unknown."""

    shape: Shape
    calls: tuple[TruthCall, ...] | None
    aliases: Mapping[str, str] = field(default_factory=dict)  # another spelling of a tool name -> the truth's

    @classmethod
    def exact(cls, calls: Sequence[Call], *, response: bool = False) -> TurnTruth:
        """A concrete answer: these calls (none: a reply without a call), with or without a `<response>`."""
        return cls(Shape(bool(calls), response or not calls), tuple(TruthCall.exact(n, a) for n, a in calls))


TruthFn = Callable[[TaskSpec], Sequence[TurnTruth | None] | None]


def toolcall_truth(task: TaskSpec) -> list[TurnTruth | None] | None:
    """The ground truth of a single-turn `toolcall` task, from `payload.check` and `payload.ground_truth`.

    Multi-turn tasks get None: their answers are per user turn and span several policy turns, so no policy turn
    has a ground truth of its own. Relevance tasks (`any_call`) expect a call but not which one.
    """
    payload = task.payload
    if task.env.split("@")[0] != "toolcall" or payload.get("kind") != "single":
        return None
    names = ToolNames()
    functions = payload.get("functions") or []
    for doc in functions:
        names.add(doc["name"])
    check = payload.get("check", "calls")
    if check == "no_call":
        return [TurnTruth(Shape(False, True), ())]
    if check == "any_call":
        return [TurnTruth(Shape(True, False), None)]
    answers = payload.get("ground_truth")
    if not isinstance(answers, list) or not answers:
        return None
    required = {doc["name"]: set((doc.get("parameters") or {}).get("required") or []) for doc in functions}
    calls = []
    for answer in answers:
        (bfcl_name, allowed), = answer.items()
        # "" among the allowed values is BFCL's way of saying the parameter may be left out.
        values = {k: tuple(reference_value(v) for v in vs if v != "") for k, vs in allowed.items()}
        optional = frozenset(k for k, vs in allowed.items() if "" in vs and k not in required.get(bfcl_name, ()))
        calls.append(TruthCall(names.to_openai.get(bfcl_name, bfcl_name), values, optional))
    return [TurnTruth(Shape(True, False), tuple(calls), aliases=dict(names.to_openai))]


def same_value(a: Any, b: Any) -> bool:
    """JSON equality without normalisation: a bool equals only a bool; lists and objects element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def match_score(a: Sequence[str], b: Sequence[str]) -> float:
    """M(a, b): 1 if equal, 0 if either is empty, else the multiset Jaccard |a∩b| / (|a| + |b| - |a∩b|)."""
    if list(a) == list(b):
        return 1.0
    if not a or not b:
        return 0.0
    common = sum((Counter(a) & Counter(b)).values())
    return common / (len(a) + len(b) - common)


def _value_ok(truth: TruthCall, key: str, value: Any) -> bool:
    return any(same_value(value, allowed) for allowed in truth.allowed[key])


def exact_match(truth: Sequence[TruthCall], pred: Sequence[Call]) -> bool:
    """The predicted calls are the expected ones, in order, with exactly the expected parameters and values."""
    return len(truth) == len(pred) and all(
        g.name == name and set(args) == set(g.expected_keys(args)) and all(_value_ok(g, k, v) for k, v in args.items())
        for g, (name, args) in zip(truth, pred, strict=True))


def correctness_score(truth: Sequence[TruthCall], pred: Sequence[Call]) -> tuple[float, float]:
    """(S, S_max): names matched as multisets, then each expected call greedily against its best unused call."""
    score = match_score([g.name for g in truth], [name for name, _ in pred])
    most = 1.0
    used: set[int] = set()
    for g in truth:
        best, best_index, best_keys = 0.0, None, len(g.expected_keys(()))
        for i, (name, args) in enumerate(pred):
            if i in used or name != g.name:
                continue
            keys = g.expected_keys(args)
            hits = sum(1 for k in keys if k in args and _value_ok(g, k, args[k]))
            total = match_score(keys, list(args)) + hits
            if total > best:  # as ToolRL: a call scoring 0 is left for later expected calls
                best, best_index, best_keys = total, i, len(keys)
        if best_index is not None:
            used.add(best_index)
            score += best
        most += 1.0 + best_keys
    return score, most


def tool_format(truth: TurnTruth, parsed: ToolRLResult, bounds: tuple[float, float] = (0.0, 1.0)) -> float:
    """R_format: the high bound iff the reply has exactly the layout and the sections the truth calls for."""
    return bounds[1] if parsed.matches(truth.shape) else bounds[0]


def tool_correct(truth: TurnTruth, parsed: ToolRLResult, bounds: tuple[float, float] = (-3.0, 3.0)) -> float | None:
    """R_correct: 0 when no call is expected, the low bound when the calls cannot be read, the high bound on an
    exact match, else low + (high - low) * S / S_max. None when the expected calls are unknown."""
    low, high = bounds
    if truth.calls is None:
        return None
    if not truth.calls:
        return 0.0
    if parsed.calls is None:
        return low
    try:
        pred = [(truth.aliases.get(c.function.name, c.function.name), c.args()) for c in parsed.calls]
    except InvalidAction:
        return low
    if exact_match(truth.calls, pred):
        return high
    score, most = correctness_score(truth.calls, pred)
    return low + (high - low) * score / most


class ToolRLScale(BaseModel):
    """The reward ranges: R_format in {0, 1} and R_correct in [-3, 3] unless a variant is chosen.

    `correct_max` 1 is the ±1 correctness variant. `schedule` moves both ranges linearly over `schedule_steps`
    training steps, from ±2 to ±1 for the format and from ±2 to ±`correct_max` for the correctness.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    correct_max: float = Field(default=3.0, gt=0)
    schedule: bool = False
    schedule_steps: int = Field(default=150, ge=1)

    def bounds(self, step: int | None) -> tuple[tuple[float, float], tuple[float, float]]:
        """(format bounds, correctness bounds) at a training step; `ValueError` if the schedule has no step."""
        if not self.schedule:
            return (0.0, 1.0), (-self.correct_max, self.correct_max)
        if step is None:
            raise ValueError("the ToolRL reward schedule needs the training step: pass step=...")
        done = min(max(step, 0), self.schedule_steps) / self.schedule_steps
        fmt = SCHEDULE_START + (1.0 - SCHEDULE_START) * done
        correct = SCHEDULE_START + (self.correct_max - SCHEDULE_START) * done
        return (-fmt, fmt), (-correct, correct)

    def ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The widest (format, correctness) ranges over all training steps: what a gate threshold must lie in."""
        if not self.schedule:
            return self.bounds(None)
        fmt, correct = max(SCHEDULE_START, 1.0), max(SCHEDULE_START, self.correct_max)
        return (-fmt, fmt), (-correct, correct)


class ToolRLTurn(NamedTuple):
    format: float
    correct: float | None  # None: the turn's expected calls are unknown


def toolrl_turns(trajectory: Trajectory, *, scale: ToolRLScale | None = None, step: int | None = None,
                 truth: TruthFn = toolcall_truth) -> list[ToolRLTurn | None] | None:
    """Per turn (format, correctness), None for a turn with no ground truth; None when the task has none."""
    truths = truth(trajectory.task)
    if truths is None:
        return None
    fmt_bounds, correct_bounds = (scale or ToolRLScale()).bounds(step)
    parser = ToolRLParser()
    out: list[ToolRLTurn | None] = []
    for turn in trajectory.turns:
        expected = truths[turn.index] if turn.index < len(truths) else None
        if expected is None:
            out.append(None)
            continue
        parsed = parser.parse(turn.text)
        assert isinstance(parsed, ToolRLResult)
        fmt = tool_format(expected, parsed, fmt_bounds)
        out.append(ToolRLTurn(fmt, tool_correct(expected, parsed, correct_bounds)))
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def toolrl_format(trajectory: Trajectory, *, scale: ToolRLScale | None = None, step: int | None = None,
                  truth: TruthFn = toolcall_truth) -> float | None:
    """R_format of the trajectory: the mean over turns that have a ground truth; None when none has."""
    turns = toolrl_turns(trajectory, scale=scale, step=step, truth=truth)
    return None if turns is None else _mean(t.format if t else None for t in turns)


def toolrl_correct(trajectory: Trajectory, *, scale: ToolRLScale | None = None, step: int | None = None,
                   truth: TruthFn = toolcall_truth) -> float | None:
    """R_correct of the trajectory: the mean over turns whose expected calls are known; None when none are."""
    turns = toolrl_turns(trajectory, scale=scale, step=step, truth=truth)
    return None if turns is None else _mean(t.correct if t else None for t in turns)


def toolrl_total(trajectory: Trajectory, *, scale: ToolRLScale | None = None, step: int | None = None,
                 truth: TruthFn = toolcall_truth) -> float | None:
    """R = R_format + R_correct, the mean over turns where both apply; None when no turn has both."""
    turns = toolrl_turns(trajectory, scale=scale, step=step, truth=truth)
    if turns is None:
        return None
    return _mean(t.format + t.correct if t and t.correct is not None else None for t in turns)
