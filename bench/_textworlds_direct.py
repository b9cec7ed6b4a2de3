"""The direct side of `textworlds.py`: TextWorld and ALFWorld called as their users call them, without gymbox.

It runs in a spawned worker process that imports nothing from gymbox, so the engines are stock: gymbox's ALFWorld
engine (`gymbox.tasks.alfworld.engine`) changes TextWorld's PDDL engine and remembers Fast Downward's translations
in the process that loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_openers: dict[str, Callable[[Path], Any]] = {}


def opener(env: str) -> Callable[[Path], Any]:
    """How a game is started: the same engine, requested infos and (for ALFWorld) alfworld's own wrappers, as its
    `AlfredTWEnv` builds them."""
    import textworld

    if env.startswith("textworld"):
        infos = textworld.EnvInfos(feedback=True, score=True, max_score=True, won=True, lost=True, moves=True,
                                   admissible_commands=env == "textworld-admissible")
        return lambda path: textworld.start(str(path), request_infos=infos)
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    return lambda path: textworld.start(str(path), request_infos=infos, wrappers=[AlfredDemangler, AlfredInfos])


def run(env: str, games: list[tuple[Path, list[str]]]) -> tuple[list[float], list[float]]:
    """(reset seconds, step seconds) over one episode of each game: open + reset, then the winning commands."""
    start = _openers.setdefault(env, opener(env))
    resets, steps = [], []
    for path, plan in games:
        started = time.perf_counter()
        game = start(path)
        game.reset()
        resets.append(time.perf_counter() - started)
        for command in plan:
            started = time.perf_counter()
            state, _, done = game.step(command)
            steps.append(time.perf_counter() - started)
        assert done and state["won"], f"the plan did not win {path}"
        game.close()
    return resets, steps
