"""Tasks played on generated games (`textworld`, `alfworld`): a task's game, and making it ahead of time."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from gymbox.tasks.spec import TaskSpec

# Environment -> the module that reads its tasks' games, with `task_game(task) -> Path` and `prepare(task) -> dict`.
# Imported on use: those modules import `InvalidGameTask` from this one.
GAMES: dict[str, str] = {
    "textworld": "gymbox.tasks.textworld.suite",
    "alfworld": "gymbox.tasks.alfworld.suite",
}


class InvalidGameTask(ValueError):
    """A task names no game that can be loaded or made; the message says why and what to give instead."""


def makes_games(env: str) -> bool:
    """Whether the environment's tasks are played on generated games."""
    return env in GAMES


def _games(env: str) -> ModuleType:
    if env not in GAMES:
        raise InvalidGameTask(f"environment {env!r} has no generated games; those that do: {', '.join(sorted(GAMES))}")
    return importlib.import_module(GAMES[env])


def task_game(env: str, task: TaskSpec) -> Path:
    """The task's game (a file or a folder): the one its payload names, else one generated on first use and cached."""
    path: Path = _games(env).task_game(task)
    return path


def prepare_game(env: str, task: TaskSpec) -> dict[str, Any]:
    """Make the task's game into the cache if it is not there (`gymbox games`).

    Returns the game's path (`game`), and its winning `plan` (commands) when the generator recorded one; TextWorld
    adds the game's `max_score` and the generator's `attempt`.
    """
    made: dict[str, Any] = _games(env).prepare(task)
    return made
