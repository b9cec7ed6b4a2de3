"""A sampled ALFWorld room as a PDDL problem for alfworld's `alfred.pddl` domain, and the game files around it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from alfworld.gen import constants
from alfworld.gen.goal_library import gdict

from gymbox.tasks.alfworld.layouts import PICKUPABLE, Receptacle

DATA_DIR = Path(constants.__file__).parent.parent / "data"
DOMAIN_PATH = DATA_DIR / "alfred.pddl"
GRAMMAR_PATH = DATA_DIR / "alfred.twl2"

# Types the domain's actions name as constants (CleanObject, HeatObject, CoolObject, SliceObject): the problem must
# declare them even when the room has no such thing, or Fast Downward's translator rejects the problem.
DOMAIN_OTYPES = ("ButterKnife", "Knife")
DOMAIN_RTYPES = ("Fridge", "Microwave", "SinkBasin")
# ALFRED's PDDL names escape THOR id characters this way (alfworld.gen.game_states.planned_game_state).
_ESCAPES = {"-": "_minus_", "|": "_bar_", "+": "_plus_", ".": "_dot_", ",": "_comma_"}
_ABILITIES = {"cleanable": "Cleanable", "heatable": "Heatable", "coolable": "Coolable", "sliceable": "Sliceable",
              "toggleable": "Toggleable"}


@dataclass(frozen=True)
class PlacedObject:
    """An object instance and the receptacle it starts in."""

    id: str  # THOR object id, e.g. "Mug|+00.12|+00.90|-01.50"
    type: str
    receptacle: str  # id of a Receptacle


@dataclass(frozen=True)
class World:
    """Everything a game file states: the room, where each object starts, where the agent stands, and the task."""

    floorplan: int
    receptacles: tuple[Receptacle, ...]
    objects: tuple[PlacedObject, ...]
    agent_pose: tuple[float, float, int, int]
    task_type: str
    object_target: str
    parent_target: str  # "" for look_at_obj_in_light
    toggle_target: str  # "" except for look_at_obj_in_light
    task_desc: str  # e.g. "put a clean mug in coffeemachine"


def escape(name: str) -> str:
    """A THOR id as a PDDL name, the way ALFRED writes them ("Mug|+00.12|..." -> "Mug_bar__plus_00_dot_12_bar_...")."""
    for char, word in _ESCAPES.items():
        name = name.replace(char, word)
    return name


def locations(world: World) -> tuple[dict[str, str], str]:
    """A distinct PDDL location for each receptacle and for the agent's start, named after ALFRED's grid poses.

    Receptacles used from the same pose would share a location, and then "go to" and "look" would speak of several
    receptacles at once; the agent must start away from all of them so that the intro lists the room.
    """
    taken: set[str] = set()

    def unique(pose: tuple[float, float, int, int]) -> str:
        x, z, rotation, horizon = pose
        base = f"loc|{round(x / 0.25)}|{round(z / 0.25)}|{rotation // 90}|{horizon}"
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}|{k}"
        taken.add(name)
        return name

    by_receptacle = {r.id: unique(r.pose) for r in world.receptacles}
    return by_receptacle, unique(world.agent_pose)


def problem_text(world: World) -> str:
    """The PDDL problem: objects, initial facts in the official files' vocabulary, and the task's goal."""
    recep_loc, agent_loc = locations(world)
    recep_types = sorted({r.type for r in world.receptacles} | set(DOMAIN_RTYPES))
    obj_types = sorted({o.type for o in world.objects} | set(DOMAIN_OTYPES))
    receps = sorted(world.receptacles, key=lambda r: r.id)
    objs = sorted(world.objects, key=lambda o: o.id)

    declared = ["agent1 - agent"]
    declared += [f"{t}Type - otype" for t in obj_types]
    declared += [f"{t}Type - rtype" for t in recep_types]
    declared += [f"{escape(o.id)} - object" for o in objs]
    declared += [f"{escape(r.id)} - receptacle" for r in receps]
    declared += [f"{escape(loc)} - location" for loc in sorted({*recep_loc.values(), agent_loc})]

    facts = ["(= (total-cost) 0)"]
    facts += [f"(receptacleType {escape(r.id)} {r.type}Type)" for r in receps]
    facts += [f"(objectType {escape(o.id)} {o.type}Type)" for o in objs]
    facts += [f"(canContain {rt}Type {ot}Type)" for rt in recep_types for ot in obj_types
              if ot in constants.VAL_RECEPTACLE_OBJECTS.get(rt, ())]
    facts += [f"(pickupable {escape(o.id)})" for o in objs if o.type in PICKUPABLE]
    facts += [f"(isReceptacleObject {escape(o.id)})" for o in objs if o.type in constants.MOVABLE_RECEPTACLES_SET]
    facts += [f"(openable {escape(r.id)})" for r in receps if r.type in constants.OPENABLE_CLASS_SET]
    facts += [f"(atLocation agent1 {escape(agent_loc)})"]
    for predicate, ability in _ABILITIES.items():
        facts += [f"({predicate} {escape(o.id)})" for o in objs if o.type in constants.VAL_ACTION_OBJECTS[ability]]
    facts += [f"(inReceptacle {escape(o.id)} {escape(o.receptacle)})" for o in objs]
    facts += [f"(receptacleAtLocation {escape(r.id)} {escape(recep_loc[r.id])})" for r in receps]
    facts += [f"(objectAtLocation {escape(o.id)} {escape(recep_loc[o.receptacle])})" for o in objs]

    indent = "\n        "
    # The goal templates come from the package and close the `define` block themselves; '#' stands for '-' there.
    goal = gdict[world.task_type]["pddl"].format(
        obj=world.object_target, recep=world.parent_target, toggle=world.toggle_target).replace("#", "-")
    return (f"(define (problem plan_gymbox_floorplan{world.floorplan})\n"
            f"    (:domain alfred)\n"
            f"    (:objects{indent}{indent.join(declared)}\n    )\n"
            f"    (:init{indent}{indent.join(facts)}\n    )\n"
            f"{goal.strip()}\n")


def game_json(world: World, walkthrough: list[str] | None) -> str:
    """`game.tw-pddl`: the domain and grammar from the package with the task filled in, and the problem."""
    grammar = GRAMMAR_PATH.read_text().replace("UNKNOWN GOAL", world.task_desc)
    data = {
        "pddl_domain": DOMAIN_PATH.read_text(),
        "grammar": grammar,
        "pddl_problem": problem_text(world),
        "solvable": walkthrough is not None,
        "walkthrough": walkthrough,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def traj_data_json(world: World, seed: int, attempt: int) -> str:
    """`traj_data.json`: the fields alfworld's loaders and experts read (task type, targets, scene, annotation)."""
    x, z, rotation, horizon = world.agent_pose
    data = {
        "task_id": f"gymbox_{world.task_type}_seed{seed}_attempt{attempt}",
        "task_type": world.task_type,
        "pddl_params": {
            "object_target": world.object_target,
            "parent_target": world.parent_target,
            "toggle_target": world.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        },
        "scene": {
            "floor_plan": f"FloorPlan{world.floorplan}",
            "scene_num": world.floorplan,
            "random_seed": seed,
            "dirty_and_empty": False,
            "init_action": {"action": "TeleportFull", "x": x, "y": 0.9, "z": z, "rotation": rotation,
                            "horizon": horizon},
            "object_poses": [_pose(o) for o in sorted(world.objects, key=lambda o: o.id)],
            "object_toggles": [],
        },
        "turk_annotations": {"anns": [{"task_desc": world.task_desc, "high_descs": [], "votes": []}]},
        "generator": {"name": "gymbox", "seed": seed, "attempt": attempt},
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _pose(obj: PlacedObject) -> dict:
    _, x, y, z = obj.id.split("|")
    return {"objectName": obj.id, "position": {"x": float(x), "y": float(y), "z": float(z)},
            "rotation": {"x": 0.0, "y": 0.0, "z": 0.0}, "parentReceptacle": obj.receptacle}
