"""Comparing a replayed trajectory with its recording, field by field: every divergence, and a summary of them.

The same comparison, restricted to what the environment returned, tells whether two replays of the same actions
got the same answers (`environment_differences`: is the environment deterministic?).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gymbox.environments.records import Trajectory, Turn

# What a turn holds, as comparable plain values; the policy's side first, then the environment's, then the tokens
# (a divergence in the tokens is usually the consequence of one before it).
TURN_FIELDS: dict[str, Callable[[Turn], Any]] = {
    "text": lambda t: t.text,
    "action": lambda t: t.action.model_dump(mode="json") if t.action is not None else None,
    "parse_error": lambda t: t.parse_error,
    "observation": lambda t: [m.model_dump(mode="json") for m in t.observation],
    "signals": lambda t: dict(t.signals),
    "reward": lambda t: t.reward,
    "terminated": lambda t: t.terminated,
    "truncated": lambda t: t.truncated,
    "token_ids": lambda t: list(t.token_ids),
    "loss_mask": lambda t: list(t.loss_mask),
}
TOKEN_FIELDS = ("token_ids", "loss_mask")
ENV_TURN_FIELDS = ("observation", "signals", "reward", "terminated", "truncated")


@dataclass(frozen=True)
class Divergence:
    """One field that differs: where (`prompt`, `turn 3`, `episode`), which field, and both sides."""

    where: str
    field: str
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        place = self.field if self.where == "episode" else f"{self.where} {self.field}"
        return f"{place}: {describe(self.recorded, self.replayed)}"


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:300] + "..."


def describe(recorded: Any, replayed: Any) -> str:
    """Both sides of a difference; for two lists of numbers (tokens), where they part and how long each is."""
    if _numbers(recorded) and _numbers(replayed):
        at = next((i for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)) if a != b),
                  min(len(recorded), len(replayed)))
        return (f"first differs at position {at} (recorded {len(recorded)} long, replayed {len(replayed)}): "
                f"recorded {_show(recorded[at:at + 8])}, replayed {_show(replayed[at:at + 8])}")
    return f"recorded {_show(recorded)}, replayed {_show(replayed)}"


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


def _differ(where: str, pairs: Iterable[tuple[str, Any, Any]]) -> list[Divergence]:
    return [Divergence(where, name, a, b) for name, a, b in pairs if a != b]


def _start(recorded: Trajectory, replayed: Trajectory, *, tokens: bool, policy_side: bool) -> list[Divergence]:
    pairs = [("prompt", [m.model_dump(mode="json") for m in recorded.prompt],
              [m.model_dump(mode="json") for m in replayed.prompt]),
             ("tools", [t.model_dump(mode="json") for t in recorded.tools],
              [t.model_dump(mode="json") for t in replayed.tools])]
    if policy_side:
        pairs.append(("instructions", recorded.instructions, replayed.instructions))
    if tokens:
        pairs.append(("prompt_ids", list(recorded.prompt_ids), list(replayed.prompt_ids)))
    return _differ("prompt", pairs)


def _turns(recorded: Sequence[Turn], replayed: Sequence[Turn], fields: Iterable[str]) -> list[Divergence]:
    found = []
    if len(recorded) != len(replayed):
        found.append(Divergence("episode", "turns", len(recorded), len(replayed)))
    names = list(fields)
    for a, b in zip(recorded, replayed, strict=False):
        found += _differ(f"turn {a.index}", ((n, TURN_FIELDS[n](a), TURN_FIELDS[n](b)) for n in names))
    return found


def compare(recorded: Trajectory, replayed: Trajectory, *, tokens: bool) -> list[Divergence]:
    """Every difference between a recording (as the replay is expected to end, see `replay.plan`) and its replay,
    in the order the episode met them. Token ids and loss masks are compared when `tokens` (the replay ran with
    the policy's tokenizer)."""
    fields = [n for n in TURN_FIELDS if tokens or n not in TOKEN_FIELDS]
    found = _start(recorded, replayed, tokens=tokens, policy_side=True)
    found += _turns(recorded.turns, replayed.turns, fields)
    ended = [("terminated", recorded.terminated, replayed.terminated),
             ("truncated", recorded.truncated, replayed.truncated),
             ("truncated_by", recorded.truncated_by, replayed.truncated_by),
             ("signals", dict(recorded.signals), dict(replayed.signals)),
             ("env reward", recorded.rewards.get("env"), replayed.rewards.get("env")),
             ("error", _code(recorded), _code(replayed))]
    return found + _differ("episode", ended)


def environment_differences(first: Trajectory, second: Trajectory) -> list[Divergence]:
    """What the environment answered differently to the same actions in two replays (empty: deterministic)."""
    found = _start(first, second, tokens=False, policy_side=False)
    found += _turns(first.turns, second.turns, ENV_TURN_FIELDS)
    ended = [("terminated", first.terminated, second.terminated),
             ("truncated", first.truncated, second.truncated),
             ("signals", dict(first.signals), dict(second.signals))]
    return found + _differ("episode", ended)


def _code(trajectory: Trajectory) -> str | None:
    return trajectory.error.code if trajectory.error is not None else None


@dataclass(frozen=True)
class SummaryRow:
    """Divergences of one field across trajectories: how many trajectories, how many times, the first seen."""

    field: str
    trajectories: int
    occurrences: int
    first_seen: str  # where the first one was (`turn 2`, `prompt`, `episode`)
    example: str


def summarize(divergences: Iterable[tuple[str, Sequence[Divergence]]]) -> list[SummaryRow]:
    """One row per field that diverged anywhere, most widespread first; input: (trajectory id, divergences)."""
    seen: dict[str, list[Any]] = {}  # field -> [trajectory ids, occurrences, first place, example]
    for trajectory_id, found in divergences:
        for divergence in found:
            row = seen.setdefault(divergence.field, [set(), 0, divergence.where, f"{trajectory_id}: {divergence}"])
            row[0].add(trajectory_id)
            row[1] += 1
    rows = [SummaryRow(name, len(ids), count, where, example) for name, (ids, count, where, example) in seen.items()]
    return sorted(rows, key=lambda r: (-r.trajectories, -r.occurrences, r.field))
