"""Play one ALFWorld game folder command by command, with ALFRED's goal-condition progress after each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gymbox.tasks.alfworld.engine import PddlGame

__all__ = ["AlfworldGame", "GameStep", "goal_progress"]

NOTHING_HAPPENS = "Nothing happens."


@dataclass(frozen=True)
class GameStep:
    """The game's answer to one command."""

    text: str
    won: bool
    valid: bool  # False when the game answered "Nothing happens."
    goal_progress: float  # fraction of the task's goal conditions met now, in [0, 1]; 1.0 exactly when won
    admissible_commands: list[str]


class AlfworldGame(PddlGame):
    """One game folder (`traj_data.json` + `game.tw-pddl`), generated or official, played command by command.

    Loading, the engine and the planner expert are `gymbox.tasks.alfworld.engine`'s, which generation shares.
    """

    def step(self, command: str) -> GameStep:
        """Play one command; an unknown or inapplicable one answers "Nothing happens." and changes nothing."""
        text = self.send(command)
        return GameStep(text=text, won=self.won, valid=text != NOTHING_HAPPENS, goal_progress=self.goal_progress(),
                        admissible_commands=self.admissible_commands)

    def goal_progress(self) -> float:
        """ALFRED's goal-condition success for the current state: conditions met / conditions of the task."""
        return goal_progress(self.task_type, self.params, self.facts)


def goal_progress(task_type: str, params: dict, facts: Iterable) -> float:
    """Fraction of the task's goal conditions that hold in `facts` (TextWorld propositions of the PDDL state).

    The conditions are those of ALFRED's `goal_conditions_met` (alfworld.env.tasks), read from the PDDL facts: e.g.
    for a heat task, "a target object is in a parent receptacle", "a target object is hot" and "one object is both".
    """
    met, total = _CONDITIONS[task_type](_Facts(facts), params)
    return met / total


class _Facts:
    """The PDDL state as sets, with ids and type names lower-cased the way Fast Downward reports them."""

    def __init__(self, facts: Iterable) -> None:
        self.args: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for fact in facts:
            self.args[fact.name].append(tuple(v.name for v in fact.arguments))
        self.type = {o: t for o, t in self.args["objecttype"] + self.args["receptacletype"]}
        self.where = {o: r for o, r in self.args["inreceptacle"]}

    def of_type(self, name: str) -> set[str]:
        wanted = f"{name.lower()}type"
        return {o for o, t in self.type.items() if t == wanted}

    def holding(self, name: str) -> set[str]:
        return {o for _, o in self.args["holds"]} & self.of_type(name)

    def flagged(self, predicate: str) -> set[str]:
        return {args[0] for args in self.args[predicate]}

    def in_parent(self, obj: str, parent: str) -> set[str]:
        """Target objects inside some receptacle of the parent type."""
        parents = self.of_type(parent)
        return {o for o in self.of_type(obj) if self.where.get(o) in parents}


def _place(facts: _Facts, p: dict) -> tuple[int, int]:
    return int(bool(facts.in_parent(p["object_target"], p["parent_target"]))), 1


def _place_two(facts: _Facts, p: dict) -> tuple[int, int]:
    per_parent = defaultdict(int)
    for obj in facts.in_parent(p["object_target"], p["parent_target"]):
        per_parent[facts.where[obj]] += 1
    return min(max(per_parent.values(), default=0), 2), 2


def _changed_then_placed(flag: str) -> Callable[[_Facts, dict], tuple[int, int]]:
    def conditions(facts: _Facts, p: dict) -> tuple[int, int]:
        placed = facts.in_parent(p["object_target"], p["parent_target"])
        changed = facts.flagged(flag) & facts.of_type(p["object_target"])
        return int(bool(placed)) + int(bool(changed)) + int(bool(placed & changed)), 3

    return conditions


def _look_in_light(facts: _Facts, p: dict) -> tuple[int, int]:
    here = {loc for _, loc in facts.args["atlocation"]}
    receptacles_here = {r for r, loc in facts.args["receptacleatlocation"] if loc in here}
    lamps_on_here = {lamp for lamp in facts.flagged("istoggled") & facts.of_type(p["toggle_target"])
                     if facts.where.get(lamp) in receptacles_here}
    return int(bool(facts.holding(p["object_target"]))) + int(bool(lamps_on_here)), 2


_CONDITIONS: dict[str, Callable[[_Facts, dict], tuple[int, int]]] = {
    "pick_and_place_simple": _place,
    "pick_clean_then_place_in_recep": _changed_then_placed("isclean"),
    "pick_heat_then_place_in_recep": _changed_then_placed("ishot"),
    "pick_cool_then_place_in_recep": _changed_then_placed("iscool"),
    "look_at_obj_in_light": _look_in_light,
    "pick_two_obj_and_place": _place_two,
}
