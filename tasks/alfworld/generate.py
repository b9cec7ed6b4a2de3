"""Generate solvable ALFWorld game folders (traj_data.json + game.tw-pddl) from the rooms in the alfworld package."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alfworld.gen import constants
from alfworld.gen.goal_library import gdict

from gymbox.tasks.alfworld import layouts, pddl
from gymbox.tasks.alfworld.engine import PddlGame
from gymbox.tasks.alfworld.layouts import (
    PICKUPABLE,
    STATIC_RECEPTACLES,
    GenerationError,
    Layout,
    available_floorplans,
    load_layout,
)
from gymbox.tasks.alfworld.pddl import PlacedObject, World, game_json, traj_data_json
from gymbox.tasks.alfworld.suite import TASK_TYPES
from gymbox.tasks.cache import GameCache, source_digest

__all__ = ["GAME_FOLDER", "MAX_ATTEMPTS", "MAX_DISTRACTOR_TYPES", "TASK_TYPES", "GameInfo", "GameSpec",
           "GenerationError", "generate_game", "generated_game", "sample_world", "supported_floorplans"]

MAX_ATTEMPTS = 5
GAME_FOLDER = "game"  # a cached game's folder inside its cache entry
# Fast Downward's translation and, above all, its search grow quickly with the number of objects (a pick-two game:
# 3 distractor types plan in 0.9 s, 6 in 1.1 s, 10 in 3.9 s, all 30 of a room in far more), so a room holds the
# target and this many other object types.
MAX_DISTRACTOR_TYPES = 6

# The receptacle the domain's CleanObject / HeatObject / CoolObject action needs, and the ability the object needs.
_TOOLS = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable"),
    "pick_heat_then_place_in_recep": ("Microwave", "Heatable"),
    "pick_cool_then_place_in_recep": ("Fridge", "Coolable"),
}
_LAMP = "DeskLamp"
# The domain toggles only an object inside a receptacle, and THOR desk lamps stand on furniture; the package's
# constants never list lamps as contents because they cannot be picked up. (Floor lamps stand on the floor: unused.)
_LAMP_STANDS = ("Desk", "SideTable", "Dresser", "DiningTable", "CoffeeTable", "Shelf", "TVStand")


@dataclass(frozen=True)
class GameSpec:
    """What to generate: a task type, a seed, and optionally the floor plan (None: chosen from the seed)."""

    task_type: str
    seed: int
    floorplan: int | None = None

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"unknown ALFWorld task type {self.task_type!r}; choose one of {', '.join(TASK_TYPES)}")


@dataclass
class GameInfo:
    """A generated game: its folder, task, room, goal text, the expert's winning plan, and the attempt that won."""

    path: Path
    task_type: str
    floorplan: int
    goal: str  # e.g. "put a clean mug in coffeemachine."
    expert_plan: list[str]
    attempt: int  # 0 when the first sampled world was solvable


@cache
def supported_floorplans(task_type: str) -> tuple[int, ...]:
    """Floor plans whose room ALFRED allows for the task type and that hold what the task needs."""
    return tuple(fp for fp in available_floorplans() if _targets(task_type, load_layout(fp)))


def sample_world(spec: GameSpec, attempt: int = 0) -> World:
    """The room, object placement and targets for a spec; the same spec and attempt always give the same world."""
    rng = random.Random(f"alfworld|{spec.task_type}|{spec.seed}|{spec.floorplan}|{attempt}")
    if spec.floorplan is None:
        candidates = supported_floorplans(spec.task_type)
        if not candidates:
            raise GenerationError(f"no floor plan in the installed alfworld supports {spec.task_type}")
        floorplan = rng.choice(candidates)
    else:
        floorplan = spec.floorplan
    layout = load_layout(floorplan)
    targets = _targets(spec.task_type, layout)
    if not targets:
        raise GenerationError(f"floor plan {floorplan} ({layout.room}) cannot host {spec.task_type}; choose one of "
                              f"{list(supported_floorplans(spec.task_type))} or leave floorplan=None")
    obj, parent, toggle = rng.choice(targets)
    template = rng.choice(gdict[spec.task_type]["templates"])
    desc = template.format(obj=obj.lower(), recep=parent.lower(), toggle=toggle.lower())
    return World(
        floorplan=floorplan,
        receptacles=layout.receptacles,
        objects=_place_objects(spec.task_type, layout, obj, parent, rng),
        agent_pose=(*rng.choice(layout.points), rng.choice((0, 90, 180, 270)), 30),
        task_type=spec.task_type,
        object_target=obj,
        parent_target=parent,
        toggle_target=toggle,
        task_desc=desc,
    )


def generate_game(spec: GameSpec, out: Path) -> GameInfo:
    """Write a solvable game for `spec` into the new folder `out` and return what was written.

    The folder holds `traj_data.json`, `game.tw-pddl` and `expert_plan.json`, byte-identical for the same spec. Each
    sampled world is played to the end with alfworld's planner expert through TextWorld; a world the expert cannot
    win is resampled from a derived seed, up to MAX_ATTEMPTS times. Files are written to a temporary folder beside
    `out` and renamed into place, so `out` either holds a complete verified game or does not exist.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; generate into a new folder (games are never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for attempt in range(MAX_ATTEMPTS):
        world = sample_world(spec, attempt)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            (tmp / "traj_data.json").write_text(traj_data_json(world, spec.seed, attempt))
            (tmp / "game.tw-pddl").write_text(game_json(world, walkthrough=None))
            plan = _expert_wins(tmp / "game.tw-pddl")
            if isinstance(plan, str):
                failures.append(f"attempt {attempt} (floor plan {world.floorplan}): {plan}")
                shutil.rmtree(tmp)
                continue
            (tmp / "game.tw-pddl").write_text(game_json(world, walkthrough=plan))
            (tmp / "expert_plan.json").write_text(json.dumps({"expert": "planner", "commands": plan}, indent=2) + "\n")
            tmp.chmod(0o755)  # mkdtemp makes it private; a game folder is data to share
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return GameInfo(out, spec.task_type, world.floorplan, world.task_desc + ".", plan, attempt)
    raise GenerationError(
        f"no solvable {spec.task_type} game for seed {spec.seed} in {MAX_ATTEMPTS} attempts: {'; '.join(failures)}. "
        "Try another seed or floor plan; if every game fails, check that textworld[pddl]==1.7.0 (its Fast Downward "
        "planner) and alfworld==0.4.2 are installed")


@cache
def _generator_id() -> str:
    """The generator's code and the alfworld release it reads layouts from: part of every cache key."""
    from importlib.metadata import version

    return f"{source_digest(sys.modules[__name__], layouts, pddl)}/alfworld-{version('alfworld')}"


def generated_game(task_type: str, seed: int, floorplan: int | None = None, cache: GameCache | None = None) -> Path:
    """The folder of a generated game, made and verified by the planner on first use, then read from the cache.

    TextWorld and Fast Downward keep module state, so a server with many sessions calls this holding its engine
    lock, one game at a time.
    """
    spec = GameSpec(task_type=task_type, seed=seed, floorplan=floorplan)
    key = {"generator": _generator_id(), "task_type": task_type, "seed": seed, "floorplan": floorplan}
    folder = (cache or GameCache("alfworld")).get(key, lambda work: generate_game(spec, work / GAME_FOLDER))
    return folder / GAME_FOLDER


def _expert_wins(game_file: Path) -> list[str] | str:
    """The planner expert's plan if playing it wins the game, else why not."""
    try:
        game = PddlGame(game_file.parent)
    except Exception as err:  # the planner's translator reports bad problems with exceptions of its own
        return f"TextWorld could not load the game: {err}"
    try:
        game.reset()
        plan = game.expert_plan()
        if not plan:
            return "the planner found no plan"
        for command in plan:
            game.send(command)
        if not game.won:
            return f"playing the planner's {len(plan)} commands did not win"
        return plan
    finally:
        game.close()


def _targets(task_type: str, layout: Layout) -> list[tuple[str, str, str]]:
    """Every (object, parent, toggle) target the room supports for the task, in a fixed order.

    None where ALFRED does not pose the task in this kind of room (constants.GOALS_VALID: heating only in kitchens).
    """
    if layout.room not in constants.GOALS_VALID[task_type]:
        return []
    kinds = layout.receptacle_types()
    objects = sorted(t for t in layout.object_types if t in PICKUPABLE)
    if task_type == "look_at_obj_in_light":
        if _LAMP not in layout.object_types or not kinds & set(_LAMP_STANDS):
            return []
        return [(obj, "", _LAMP) for obj in objects if _start_receptacles(layout, obj)]
    tool, ability = _TOOLS.get(task_type, ("", ""))
    if tool and tool not in kinds:
        return []
    pairs = []
    for obj in objects:
        if ability and obj not in constants.VAL_ACTION_OBJECTS[ability]:
            continue
        for parent in sorted(kinds & STATIC_RECEPTACLES - {tool}):
            if obj in constants.VAL_RECEPTACLE_OBJECTS[parent] and _start_receptacles(layout, obj, parent, tool):
                pairs.append((obj, parent, ""))
    return pairs


def _start_receptacles(layout: Layout, obj: str, *excluded: str) -> list[str]:
    """Receptacles an object may start in: it must fit, and not already be where the task wants it."""
    return [r.id for r in layout.receptacles
            if obj in constants.VAL_RECEPTACLE_OBJECTS[r.type] and r.type not in excluded]


def _place_objects(task_type: str, layout: Layout, target: str, parent: str,
                   rng: random.Random) -> tuple[PlacedObject, ...]:
    """Put the target and up to MAX_DISTRACTOR_TYPES other pickupable types of the room into fitting receptacles.

    One or two instances of each type (two or three targets for pick-two), and the room's desk lamp on a stand.
    """
    tool = _TOOLS.get(task_type, ("",))[0]
    placed: list[PlacedObject] = []
    taken: set[str] = set()
    by_id = {r.id: r for r in layout.receptacles}
    others = sorted(t for t in layout.object_types if t in PICKUPABLE and t != target)
    chosen = {target, *rng.sample(others, min(MAX_DISTRACTOR_TYPES, len(others)))}
    for otype in sorted(chosen):
        excluded = (parent, tool) if otype == target else ()
        homes = _start_receptacles(layout, otype, *excluded)
        if not homes:
            continue
        count = rng.randint(2, 3) if otype == target and task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
        for _ in range(count):
            home = by_id[rng.choice(homes)]
            placed.append(PlacedObject(_object_id(otype, home.id, rng, taken), otype, home.id))
    if _LAMP in layout.object_types:
        stands = [r.id for r in layout.receptacles if r.type in _LAMP_STANDS]
        if stands:
            home = by_id[rng.choice(stands)]
            placed.append(PlacedObject(_object_id(_LAMP, home.id, rng, taken), _LAMP, home.id))
    return tuple(placed)


def _object_id(otype: str, receptacle_id: str, rng: random.Random, taken: set[str]) -> str:
    """A THOR-style id near the receptacle ("Mug|+00.12|+00.93|-01.50"), unique in the room."""
    x, y, z = (float(v) for v in receptacle_id.split("|")[1:4])
    while True:
        dx, dz = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)
        object_id = f"{otype}|{x + dx:+06.2f}|{y + 0.05:+06.2f}|{z + dz:+06.2f}"
        if object_id not in taken:
            taken.add(object_id)
            return object_id
