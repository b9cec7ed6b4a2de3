"""`alfworld`: household tasks in ALFWorld's text world; signals: won, goal-condition progress, invalid action."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

from gymbox.environments.api import TaskSpec
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.textgames.base import ENGINE, GameStatus, TextGameEnv
from gymbox.environments.textgames.cache import GameCache, source_digest
from gymbox.tasks.alfworld import TASK_TYPES

GAME_FOLDER = "game"


@functools.cache
def _generator_id() -> str:
    """The generator's code and the alfworld release it reads layouts from: part of every cache key."""
    from importlib.metadata import version

    from gymbox.environments.alfworld import generate, layouts, pddl

    return f"{source_digest(generate, layouts, pddl)}/alfworld-{version('alfworld')}"


def generated_game(task_type: str, seed: int, floorplan: int | None = None, cache: GameCache | None = None) -> Path:
    """The folder of a generated game, made and verified by the planner on first use, then read from the cache."""
    from gymbox.environments.alfworld.generate import GameSpec, generate_game

    spec = GameSpec(task_type=task_type, seed=seed, floorplan=floorplan)
    key = {"generator": _generator_id(), "task_type": task_type, "seed": seed, "floorplan": floorplan}
    with ENGINE:
        folder = (cache or GameCache("alfworld")).get(key, lambda work: generate_game(spec, work / GAME_FOLDER))
    return folder / GAME_FOLDER


class AlfworldEnv(TextGameEnv):
    name = "alfworld"
    version = "v1"
    description = ("ALFWorld's household tasks (pick and place, clean, heat, cool, look at in light, pick two) in its "
                   "text world, one command per turn; signals: won, goal-condition progress, valid action.")
    suites: ClassVar[list[str]] = ["alfworld"]

    def open(self, task: TaskSpec, seed: int) -> str:
        """Load the task's game. ALFWorld's text engine is deterministic, so the episode seed changes nothing."""
        from gymbox.environments.alfworld.game import AlfworldGame

        folder = self._folder(task)
        try:
            self.game: Any = AlfworldGame(folder)
        except (FileNotFoundError, ValueError) as exc:
            raise InvalidTask(f"task {task.id!r}: {exc}") from exc
        intro = self.game.reset()
        self.progress = self.game.goal_progress()
        return intro

    def prepare(self, task: TaskSpec) -> dict[str, Any]:
        with ENGINE:
            folder = self._folder(task)
        plan = folder / "expert_plan.json"
        if not plan.is_file():
            return {"game": str(folder)}
        return {"game": str(folder), "plan": json.loads(plan.read_text())["commands"]}

    def _folder(self, task: TaskSpec) -> Path:
        payload = task.payload
        if "game" in payload:  # an official game folder, used as it is
            return Path(payload["game"])
        from gymbox.environments.alfworld.layouts import GenerationError

        task_type, seed, floorplan = payload.get("task_type"), payload.get("seed"), payload.get("floorplan")
        if task_type not in TASK_TYPES or not isinstance(seed, int) or not (floorplan is None or
                                                                             isinstance(floorplan, int)):
            raise InvalidTask(f"task {task.id!r} needs payload task_type (one of {', '.join(TASK_TYPES)}), seed (an "
                              "integer) and optionally floorplan (an integer), or game: FOLDER")
        try:
            return generated_game(task_type, seed, floorplan)
        except GenerationError as exc:
            raise InvalidTask(f"task {task.id!r}: {exc}") from exc

    def play(self, command: str) -> tuple[str, bool]:
        step = self.game.step(command.lower())  # ALFWorld's grammar is lower case: "go to countertop 1"
        self.progress = step.goal_progress
        return step.text, step.valid

    def status(self) -> GameStatus:
        won = bool(self.game.won)
        return GameStatus(won=won, signals={"won": float(won), "progress": self.progress})

    def admissible_commands(self) -> list[str]:
        return self.game.admissible_commands

    def close(self) -> None:
        game = getattr(self, "game", None)
        if game is not None:
            game.close()
            self.game = None
