"""A declarative reward specification, loaded from YAML: the components, their order, weights, gates and the total.

The YAML file holds one mapping; any key not listed here is an error:

    accumulate: gated          # gated: G-RA, R = Σ_i m_i w_i R_i, m_i = Π over earlier j of 1[R_j >= δ_j]
                               # direct: D-RA, R = Σ_i w_i R_i (no gate may be given)
    ungated_penalties: false   # gated only: a negative per-turn reward counts even behind a closed gate
    components:                # in priority order, highest first
      - fn: toolrl_format      # a function of COMPONENTS (below)
        name: format           # reported under this name; default: fn. Unique, and not "total"
        weight: 1.0            # w_i; default 1
        gate: 1.0              # δ_i: the components after this one count only when its value >= δ_i
        options: {}            # the function's options, checked against its options model
      - fn: outcome

A component's value is a float, or None when it does not apply to the task (it then adds nothing and gates
nothing). Per-turn components (`per_turn` in the table) give one reward per turn; their value, which gates
and enters the total, is the sum over turns. Scoring a trajectory gives `Scores`: every component's value,
the total, the per-turn rewards when the spec has a per-turn component (scalar components are added at the
last turn, so the per-turn rewards sum to the total), and an error when a component raised or returned a
non-finite number: the rollout is then masked, as for an infrastructure failure, never scored 0.
A trajectory cut short (timeout, out of turns) closes every gate: it counts as "no submit".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from gymbox.environments.records import EpisodeError, Trajectory
from gymbox.rewards.format_ladder import format_ladder
from gymbox.rewards.gated import gate_masks
from gymbox.rewards.outcome import outcome, signal
from gymbox.rewards.progress import (
    PROGRESS_KEYS,
    SCORE_KEYS,
    EnvProgress,
    ProgressEstimator,
    dense_rewards,
    grounding,
    spa_rewards,
    sparse_rewards,
)
from gymbox.rewards.toolrl import ToolRLScale, toolrl_correct, toolrl_format, toolrl_total

INF = math.inf
TOTAL = "total"


class RewardSpecError(ValueError):
    """The specification, or the way it is used, is invalid; raised before anything is computed."""


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoOptions(Options):
    pass


class ProgressOptions(Options):
    keys: tuple[str, ...] = Field(default=PROGRESS_KEYS, min_length=1, description="progress signals, first found")
    estimator: str | None = Field(default=None, description="a progress model folder (`gymbox progress train`) "
                                  "to use instead of the environment's progress signal")

    @model_validator(mode="after")
    def _one_estimator(self) -> ProgressOptions:
        if self.estimator is not None and "keys" in self.model_fields_set:
            raise ValueError("`keys` picks the environment's progress signal, unused by a learned `estimator`: "
                             "give one or the other")
        if self.estimator is not None:  # a missing folder fails when the spec is loaded, not at the first score
            from gymbox.rewards.progress_model import read_meta  # torch is imported only by specs that need it

            try:
                read_meta(self.estimator)
            except FileNotFoundError as exc:
                raise ValueError(str(exc)) from exc
        return self

    def make(self) -> ProgressEstimator:
        """The estimator these options name: the learned one (loaded once per path) or the environment's."""
        if self.estimator is None:
            return EnvProgress(self.keys)
        from gymbox.rewards.progress_model import cached

        return cached(self.estimator)


class ScoreOptions(Options):
    keys: tuple[str, ...] = Field(default=SCORE_KEYS, min_length=1, description="score signals, first found")


class SignalOptions(Options):
    key: str = Field(min_length=1, description="the signal of the last turn, e.g. swe's outcome_level")


Value = float | list[float] | None


@dataclass(frozen=True)
class Component:
    """A reward function of the table: how to compute it, its options, and the range of its value."""

    compute: Callable[[Trajectory, Any, int | None], Value]  # (trajectory, options, training step)
    options: type[BaseModel]
    per_turn: bool
    value_range: Callable[[Any], tuple[float, float]]
    doc: str
    needs_step: Callable[[Any], bool] = lambda options: False


def _toolrl_range(options: ToolRLScale) -> tuple[float, float]:
    (f_lo, f_hi), (c_lo, c_hi) = options.ranges()
    return f_lo + c_lo, f_hi + c_hi


def _scheduled(options: ToolRLScale) -> bool:
    return options.schedule


COMPONENTS: dict[str, Component] = {
    "outcome": Component(lambda t, o, s: outcome(t), NoOptions, False, lambda o: (-INF, INF),
                         "success, else score, else tests passed / total"),
    "toolrl_format": Component(lambda t, o, s: toolrl_format(t, scale=o, step=s), ToolRLScale, False,
                               lambda o: o.ranges()[0], "ToolRL R_format, mean over turns with a ground truth",
                               _scheduled),
    "toolrl_correct": Component(lambda t, o, s: toolrl_correct(t, scale=o, step=s), ToolRLScale, False,
                                lambda o: o.ranges()[1], "ToolRL R_correct, mean over turns with known calls",
                                _scheduled),
    "toolrl": Component(lambda t, o, s: toolrl_total(t, scale=o, step=s), ToolRLScale, False, _toolrl_range,
                        "ToolRL R_format + R_correct", _scheduled),
    "signal": Component(lambda t, o, s: signal(t, o.key), SignalOptions, False, lambda o: (-INF, INF),
                        "one named signal of the last turn, as reported (swe: outcome_level, f2p_passed)"),
    "format_ladder": Component(lambda t, o, s: format_ladder(t), NoOptions, False, lambda o: (0.0, 1.0),
                               "graded tool-call format: partial credit on the way to a call"),
    "grounding": Component(lambda t, o, s: grounding(t), NoOptions, True, lambda o: (0.0, INF),
                           "g_t: 0.5 per turn whose action the environment accepted"),
    "progress": Component(lambda t, o, s: o.make().estimate(t), ProgressOptions, True, lambda o: (-INF, INF),
                          "c_t: deltas of the environment's progress signal, or a learned estimator's"),
    "spa": Component(lambda t, o, s: spa_rewards(t, o.make()), ProgressOptions, True, lambda o: (-INF, INF),
                     "SPA-RL r_t = c_t + g_t, environment-native or learned estimator"),
    "dense": Component(lambda t, o, s: dense_rewards(t, o.keys), ScoreOptions, True, lambda o: (-INF, INF),
                       "interm_t / N from the environment's score"),
    "sparse": Component(lambda t, o, s: sparse_rewards(t), NoOptions, True, lambda o: (0.0, 1.0),
                        "success (1/0) at the last turn"),
}


class ComponentSpec(BaseModel):
    """One component of a spec; `options` are validated against the function's options model."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    fn: str
    name: str | None = None
    weight: float = 1.0
    gate: float | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    _options: Any = PrivateAttr(default=None)

    @field_validator("fn")
    @classmethod
    def _known(cls, fn: str) -> str:
        if fn not in COMPONENTS:
            raise ValueError(f"unknown reward function {fn!r}; known: {', '.join(sorted(COMPONENTS))}")
        return fn

    @model_validator(mode="after")
    def _checked(self) -> ComponentSpec:
        component = COMPONENTS[self.fn]
        try:
            self._options = component.options.model_validate(self.options)
        except ValidationError as exc:
            raise ValueError(f"bad options for {self.fn!r}: {exc}") from exc
        low, high = component.value_range(self._options)
        if self.gate is not None and self.gate > high:
            raise ValueError(f"the gate {self.gate:g} on {self.key!r} can never open: {self.fn} lies in "
                             f"[{low:g}, {high:g}]")
        if self.gate is not None and self.gate < low:
            raise ValueError(f"the gate {self.gate:g} on {self.key!r} is always open: {self.fn} lies in "
                             f"[{low:g}, {high:g}]; remove it or raise it")
        return self

    @property
    def key(self) -> str:
        return self.name or self.fn

    @property
    def settings(self) -> Any:
        """The validated options: an instance of the function's options model."""
        return self._options

    @property
    def component(self) -> Component:
        return COMPONENTS[self.fn]


class Scores(BaseModel):
    """What a spec made of one trajectory; with `error` set the rollout is to be masked, never scored 0."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    components: dict[str, float | None] = Field(default_factory=dict)
    total: float | None = None
    per_turn: list[float] | None = None
    error: EpisodeError | None = None


def _bad_value(value: Any, per_turn: bool, turns: int) -> str | None:
    """Why a component's value is unusable, or None."""
    if value is None:
        return None
    if per_turn and (not isinstance(value, list) or len(value) != turns):
        return f"gave {value!r:.80} where a list of {turns} per-turn rewards was expected"
    for v in value if per_turn else [value]:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"gave {v!r:.80}, not a number"
        if not math.isfinite(v):
            return f"gave {v}"
    return None


class RewardSpec(BaseModel):
    """Components in priority order, accumulated with gates (G-RA) or without (D-RA). See the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accumulate: Literal["gated", "direct"] = "gated"
    ungated_penalties: bool = False
    components: list[ComponentSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RewardSpec:
        keys = [c.key for c in self.components]
        if TOTAL in keys:
            raise ValueError(f"{TOTAL!r} is the name of the total; give the component another name")
        if len(set(keys)) != len(keys):
            raise ValueError(f"component names repeat: {keys}; give repeated functions a `name`")
        gated = [c.key for c in self.components if c.gate is not None]
        if self.accumulate == "direct" and (gated or self.ungated_penalties):
            raise ValueError(f"accumulate: direct has no gates, but gates are set on {gated or 'penalties'}; "
                             "remove them or use accumulate: gated")
        if self.components[-1].gate is not None:
            raise ValueError(f"the gate on {keys[-1]!r} holds nothing back: a gate applies to the components after "
                             "it in the order, and none comes after it")
        return self

    @classmethod
    def load(cls, path: str | Path) -> RewardSpec:
        """Read and check a spec file; `RewardSpecError` says what is wrong and where."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RewardSpecError(f"{path}: cannot read the reward spec: {exc}") from exc
        if not isinstance(data, dict):
            raise RewardSpecError(f"{path}: a reward spec is a mapping with `components`, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RewardSpecError(f"{path}: invalid reward spec: {exc}") from exc

    @property
    def needs_step(self) -> bool:
        return any(c.component.needs_step(c.settings) for c in self.components)

    @property
    def weights(self) -> list[float]:
        """w_i, in the components' order."""
        return [c.weight for c in self.components]

    @property
    def decomposable(self) -> str | None:
        """Why `contributions` cannot be read off recorded rewards, or None when it can."""
        per_turn = [c.key for c in self.components if c.component.per_turn]
        if self.accumulate == "gated" and self.ungated_penalties and per_turn:
            return (f"with ungated_penalties, what the per-turn components {per_turn} add behind a closed gate "
                    "depends on each turn's reward, which is not recorded per component")
        return None

    def contributions(self, rewards: Mapping[str, float | None], *, truncated: bool) -> list[float | None]:
        """Each component's part of the total before its weight, from a trajectory's recorded `rewards`: its value
        where every gate above it is open, 0 behind a closed gate, None where it does not apply. So
        total = Σ_i w_i contributions_i: what multi-reward advantage estimators (GDPO, DVAO) combine."""
        if self.decomposable:
            raise RewardSpecError(self.decomposable)
        missing = [c.key for c in self.components if c.key not in rewards]
        if missing:
            raise RewardSpecError(f"the rewards {sorted(rewards)} lack {missing}: were they scored with another spec?")
        values = [rewards[c.key] for c in self.components]
        if self.accumulate == "direct":
            return values
        masks = gate_masks(values, [c.gate for c in self.components], closed=truncated)
        return [None if v is None else v if m else 0.0 for v, m in zip(values, masks, strict=True)]

    def score(self, trajectory: Trajectory, *, step: int | None = None) -> Scores:
        """Every component, the total and the per-turn rewards; a masked trajectory gets nothing."""
        if step is None and self.needs_step:
            raise RewardSpecError("this reward spec has a scheduled component: pass the training step, score(t, step=)")
        if trajectory.masked:
            return Scores()
        turns = len(trajectory.turns)
        values: list[Value] = []
        for c in self.components:
            try:
                value = c.component.compute(trajectory, c.settings, step)
            except Exception as exc:  # a bad rollout is data: recorded and masked, never scored 0
                return _failed(f"reward component {c.key!r} raised {type(exc).__name__}: {exc}")
            problem = _bad_value(value, c.component.per_turn, turns)
            if problem:
                return _failed(f"reward component {c.key!r} {problem}")
            values.append(value)
        return self._accumulate(trajectory, values)

    def _accumulate(self, trajectory: Trajectory, values: list[Value]) -> Scores:
        scalars = [sum(v) if isinstance(v, list) else v for v in values]
        gates = [c.gate for c in self.components]
        masks = gate_masks(scalars, gates, closed=trajectory.truncated) if self.accumulate == "gated" else None
        has_turns = any(c.component.per_turn for c in self.components) and bool(trajectory.turns)
        per_turn = [0.0] * len(trajectory.turns) if has_turns else None
        total, applicable = 0.0, False
        for i, (c, value) in enumerate(zip(self.components, values, strict=True)):
            if value is None:
                continue
            applicable = True
            gate_open = masks is None or masks[i] == 1
            # A scalar component's reward is given at the last turn, so that the per-turn rewards sum to the total.
            steps = value if isinstance(value, list) else [0.0] * (len(trajectory.turns) - 1) + [value]
            for t, r in enumerate(steps):
                # Ungated penalties: a negative step reward counts even when a gate above it is closed.
                if gate_open or (self.ungated_penalties and c.component.per_turn and r < 0):
                    total += c.weight * r
                    if per_turn is not None:
                        per_turn[t] += c.weight * r
        components = {c.key: s for c, s in zip(self.components, scalars, strict=True)}
        if not all(math.isfinite(x) for x in [total, *(s for s in scalars if s is not None), *(per_turn or [])]):
            return _failed(f"the rewards overflow: components {components}, total {total}")
        return Scores(components=components, total=total if applicable else None, per_turn=per_turn)

    def apply(self, trajectory: Trajectory, *, step: int | None = None) -> Trajectory:
        """A copy with `rewards` (the environment's `env` kept), `reward` = the total, the per-turn rewards, and a
        reward error recorded."""
        if trajectory.masked:
            return trajectory.model_copy(update={"reward": None, "turn_rewards": None})
        scores = self.score(trajectory, step=step)
        rewards = {k: v for k, v in trajectory.rewards.items() if k == "env"}
        rewards.update(scores.components)
        rewards[TOTAL] = scores.total
        return trajectory.model_copy(update={"rewards": rewards, "reward": scores.total,
                                             "turn_rewards": scores.per_turn,
                                             "error": scores.error or trajectory.error})


def _failed(message: str) -> Scores:
    return Scores(error=EpisodeError(code="reward_error", message=message))
