"""Experts that play a fixed script: echo (the word, then submit), shell (the reference solution, then submit),
and the text games (the generator's walkthrough or the planner's plan, one command a turn)."""

from __future__ import annotations

from functools import cache

from gymbox.agent.experts.base import NoDemonstration, call, turn_index
from gymbox.environments.api.models import Action, Message
from gymbox.tasks.games import prepare_game
from gymbox.tasks.spec import TaskSpec


def echo(task: TaskSpec, messages: list[Message]) -> Action:
    """Say the word `times` times, one call a turn, then submit."""
    turn = turn_index(messages)
    if turn < int(task.payload.get("times", 1)):
        return call("echo", {"word": task.payload["word"]})
    return call("submit")


def shell(task: TaskSpec, messages: list[Message]) -> Action:
    """Run the task's reference solution as one bash call (it is a script: loops and here-documents span lines),
    then submit."""
    solution = task.payload.get("solution")
    if not isinstance(solution, str) or not solution.strip():
        raise NoDemonstration(f"shell task {task.id!r} has no reference solution (payload.solution)")
    return call("bash", {"command": solution.strip()}) if turn_index(messages) == 0 else call("submit")


@cache
def _plan(env: str, task_id: str, task_json: str) -> tuple[str, ...]:
    """The winning commands recorded when the task's game was made (read from the game cache; made if missing)."""
    task = TaskSpec.model_validate_json(task_json)
    plan = prepare_game(env, task).get("plan")
    if not plan:
        raise NoDemonstration(f"{env} task {task_id!r}: its game has no recorded plan (a game made elsewhere); "
                              "only games gymbox generates carry one")
    return tuple(plan)


def text_game(task: TaskSpec, messages: list[Message]) -> Action:
    """The next command of the game's plan. Both engines are deterministic (the episode seed changes nothing), so
    the plan recorded when the game was made wins it again, command by command."""
    plan = _plan(task.env.split("@")[0], task.id, task.model_dump_json())
    turn = turn_index(messages)
    if turn >= len(plan):
        raise NoDemonstration(f"{task.id}: the plan's {len(plan)} commands are played and the game is not won")
    return call("command", {"command": plan[turn]})
