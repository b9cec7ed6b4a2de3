"""`alfworld`: household tasks in ALFWorld's text world; signals: won, goal-condition progress, invalid action."""

from __future__ import annotations

from typing import Any, ClassVar

from gymbox.environments.api import TaskSpec
from gymbox.environments.api.errors import InvalidTask
from gymbox.environments.textgames.base import GameStatus, TextGameEnv


class AlfworldEnv(TextGameEnv):
    name = "alfworld"
    version = "v1"
    suites: ClassVar[list[str]] = ["alfworld"]
    capacity = 64  # each session loads a copy of the Fast Downward planner library (33 MB) from /tmp
    description = ("ALFWorld's household tasks (pick and place, clean, heat, cool, look at in light, pick two) in its "
                   "text world, one command per turn; signals: won, goal-condition progress, valid action.")

    def open(self, task: TaskSpec, seed: int) -> str:
        """Load the task's game. ALFWorld's text engine is deterministic, so the episode seed changes nothing."""
        from gymbox.environments.alfworld.game import AlfworldGame

        folder = self.game_path(task)
        try:
            self.game: Any = AlfworldGame(folder)
        except (FileNotFoundError, ValueError) as exc:
            raise InvalidTask(f"task {task.id!r}: {exc}") from exc
        intro = self.game.reset()
        self.progress = self.game.goal_progress()
        return intro

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
