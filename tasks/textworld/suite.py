"""Tasks of the `textworld` environment: generated games in four families and three levels, split by seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gymbox.tasks.games import InvalidGameTask
from gymbox.tasks.spec import Limits, TaskSpec

# (family, level) -> the generator's settings. Levels follow each family's own difficulty knobs: world size and
# quest length (custom), the challenge's level (coin collector 1-300, treasure hunter 1-30), recipe size and skills
# (cooking).
LEVELS: dict[tuple[str, str], dict[str, Any]] = {
    ("custom", "easy"): {"world_size": 2, "nb_objects": 4, "quest_length": 2},
    ("custom", "medium"): {"world_size": 5, "nb_objects": 10, "quest_length": 4},
    ("custom", "hard"): {"world_size": 10, "nb_objects": 20, "quest_length": 8},
    ("coin_collector", "easy"): {"level": 2},
    ("coin_collector", "medium"): {"level": 105},
    ("coin_collector", "hard"): {"level": 210},
    ("treasure_hunter", "easy"): {"level": 5},
    ("treasure_hunter", "medium"): {"level": 15},
    ("treasure_hunter", "hard"): {"level": 25},
    ("cooking", "easy"): {"recipe": 1, "take": 1, "go": 1},
    ("cooking", "medium"): {"recipe": 2, "take": 2, "go": 6, "open": True, "cut": True},
    ("cooking", "hard"): {"recipe": 3, "take": 3, "go": 9, "open": True, "cook": True, "cut": True},
}
TURNS = {"easy": 30, "medium": 60, "hard": 100}
TRAIN_SEEDS = range(1, 9)  # the split is by seed: the same settings, different games
TEST_SEEDS = range(1001, 1005)
INSTRUCTION = ("Play this text adventure and win it. Type one command per turn, such as 'look', 'inventory', "
               "'go north' or 'take key from box'; the game's text tells you the goal.")


def tasks() -> list[TaskSpec]:
    """144 tasks: 12 (family, level) pairs x 8 train seeds and 4 test seeds. Games are generated on first use."""
    out = []
    for (family, level), settings in LEVELS.items():
        for split, seeds in (("train", TRAIN_SEEDS), ("test", TEST_SEEDS)):
            out += [TaskSpec(id=f"tw-{family}-{level}-{seed}", env="textworld", instruction=INSTRUCTION,
                             payload={"family": family, "settings": settings, "seed": seed},
                             limits=Limits(max_turns=TURNS[level]), category=f"{family}-{level}", split=split)
                    for seed in seeds]
    return out


EASY_TRAIN_SEEDS = range(1, 33)
EASY_TEST_SEEDS = range(1001, 1013)


def easy_tasks() -> list[TaskSpec]:
    """176 easy games, sized for learning on a CPU: the four families' easy level x 32 train and 12 test seeds,
    with the admissible commands listed each turn and 20 turns at most."""
    out = []
    for (family, level), settings in LEVELS.items():
        if level != "easy":
            continue
        for split, seeds in (("train", EASY_TRAIN_SEEDS), ("test", EASY_TEST_SEEDS)):
            out += [TaskSpec(id=f"tw-easy-{family}-{seed}", env="textworld", instruction=INSTRUCTION,
                             payload={"family": family, "settings": settings, "seed": seed, "admissible": True},
                             limits=Limits(max_turns=20), category=family, split=split)
                    for seed in seeds]
    return out


def task_game(task: TaskSpec) -> Path:
    """The task's story file: `payload.game` as it is, else generated from family, settings and seed (cached)."""
    from pydantic import ValidationError

    from gymbox.tasks.textworld.games import GameGenerationError, WorldSpec, game_files

    payload = dict(task.payload)
    payload.pop("admissible", None)  # how the environment shows the game, not which game
    if "game" in payload:  # a game made elsewhere: its .json (written by tw-make beside the story) is needed
        path = Path(payload["game"])
        if not path.is_file() or not path.with_suffix(".json").is_file():
            raise InvalidGameTask(f"task {task.id!r}: game {path} or its {path.with_suffix('.json').name} is missing; "
                                  "make games with `tw-make`, which writes both")
        return path
    try:
        spec = WorldSpec(**payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors())
        raise InvalidGameTask(f"task {task.id!r} is not a TextWorld game specification ({problems}); give family, "
                              "settings and seed, or game: PATH") from exc
    try:
        return game_files(spec).game
    except GameGenerationError as exc:
        raise InvalidGameTask(f"task {task.id!r}: {exc}") from exc


def prepare(task: TaskSpec) -> dict[str, Any]:
    """The task's game, generated if it is not cached, with the walkthrough, max score and attempt it was made with."""
    path = task_game(task)
    meta = path.parent / "meta.json"
    if not meta.is_file():
        return {"game": str(path)}
    made = json.loads(meta.read_text())
    return {"game": str(path), "plan": made["walkthrough"], "max_score": made["max_score"], "attempt": made["attempt"]}
