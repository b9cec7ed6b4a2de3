"""Tasks of the `alfworld` environment: generated games of the six task types, and official games when present."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gymbox.tasks.games import InvalidGameTask
from gymbox.tasks.spec import Limits, TaskSpec

# ALFRED's names, in the order of ALFWorld's papers (pick, clean, heat, cool, look, pick two).
TASK_TYPES = ("pick_and_place_simple", "pick_clean_then_place_in_recep", "pick_heat_then_place_in_recep",
              "pick_cool_then_place_in_recep", "look_at_obj_in_light", "pick_two_obj_and_place")
TRAIN_SEEDS = range(1, 9)  # the split is by seed: rooms, objects and targets all come from it
TEST_SEEDS = range(1001, 1005)
MAX_TURNS = 50  # ALFWorld's own evaluation budget
INSTRUCTION = ("You are in a household. Do the task the game gives you. Type one command per turn, such as "
               "'go to countertop 1', 'open fridge 1', 'take mug 1 from countertop 1', 'put mug 1 in/on coffeemachine "
               "1', 'clean mug 1 with sinkbasin 1', 'use desklamp 1', 'look' or 'inventory'.")
OFFICIAL_SPLITS = {"train": "train", "valid_seen": "test", "valid_unseen": "test"}


def tasks() -> list[TaskSpec]:
    """72 generated games: 6 task types x 8 train seeds and 4 test seeds, made and verified on first use."""
    return [TaskSpec(id=f"alfworld-{task_type}-{seed}", env="alfworld", instruction=INSTRUCTION,
                     payload={"task_type": task_type, "seed": seed}, limits=Limits(max_turns=MAX_TURNS),
                     category=task_type, split=split)
            for task_type in TASK_TYPES
            for split, seeds in (("train", TRAIN_SEEDS), ("test", TEST_SEEDS)) for seed in seeds]


def official_tasks() -> list[TaskSpec]:
    """The official ALFWorld games under `$ALFWORLD_DATA` (json_2.1.1/{train,valid_seen,valid_unseen}), as they are.

    Empty when ALFWORLD_DATA is not set: the download is not reachable from every machine.
    """
    root = os.environ.get("ALFWORLD_DATA")
    if not root:
        return []
    out = []
    for folder in official_games(Path(root)):
        parts = folder.relative_to(root).parts
        split = next((OFFICIAL_SPLITS[p] for p in parts if p in OFFICIAL_SPLITS), "train")
        task_type = next((t for p in parts for t in TASK_TYPES if p.startswith(t)), "")
        out.append(TaskSpec(id=f"alfworld-official-{'-'.join(parts[-3:])}", env="alfworld", instruction=INSTRUCTION,
                            payload={"game": str(folder)}, limits=Limits(max_turns=MAX_TURNS), category=task_type,
                            split=split))
    return out


def official_games(root: Path) -> list[Path]:
    """Game folders under an ALFWORLD_DATA-style root, sorted: those alfworld's own `AlfredTWEnv` plays.

    That is a `traj_data.json` beside a `game.tw-pddl` marked solvable, and neither a movable-receptacle nor a
    sliced-object task.
    """
    games = []
    for game_file in sorted(Path(root).rglob("game.tw-pddl")):
        folder = game_file.parent
        if not (folder / "traj_data.json").is_file() or "movable" in str(folder) or "Sliced" in str(folder):
            continue
        try:
            solvable = json.loads(game_file.read_text()).get("solvable")
        except (OSError, ValueError):
            continue
        if solvable:
            games.append(folder)
    return games


def task_game(task: TaskSpec) -> Path:
    """The task's game folder: `payload.game` as it is (official data), else generated from task_type, seed and
    floorplan, made and verified by the planner on first use, then read from the cache."""
    payload = task.payload
    if "game" in payload:  # an official game folder, used as it is
        return Path(payload["game"])
    from gymbox.tasks.alfworld.generate import GenerationError, generated_game

    task_type, seed, floorplan = payload.get("task_type"), payload.get("seed"), payload.get("floorplan")
    if task_type not in TASK_TYPES or not isinstance(seed, int) or not (floorplan is None or
                                                                         isinstance(floorplan, int)):
        raise InvalidGameTask(f"task {task.id!r} needs payload task_type (one of {', '.join(TASK_TYPES)}), seed (an "
                              "integer) and optionally floorplan (an integer), or game: FOLDER")
    try:
        return generated_game(task_type, seed, floorplan)
    except GenerationError as exc:
        raise InvalidGameTask(f"task {task.id!r}: {exc}") from exc


def prepare(task: TaskSpec) -> dict[str, Any]:
    """The task's game folder, generated if it is not cached, with the planner's winning plan when it has one."""
    folder = task_game(task)
    plan = folder / "expert_plan.json"
    if not plan.is_file():
        return {"game": str(folder)}
    return {"game": str(folder), "plan": json.loads(plan.read_text())["commands"]}
