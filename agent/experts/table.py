"""The table of experts, by environment id (built here explicitly)."""

from __future__ import annotations

from gymbox.agent.experts.base import Expert, NoDemonstration
from gymbox.agent.experts.simple import echo, shell, text_game
from gymbox.agent.experts.swe import swe
from gymbox.agent.experts.toolcall import toolcall
from gymbox.agent.experts.webshop import webshop
from gymbox.tasks.spec import TaskSpec

EXPERTS: dict[str, Expert] = {
    "echo": echo,
    "shell": shell,
    "textworld": text_game,
    "alfworld": text_game,
    "toolcall": toolcall,
    "swe": swe,
    "webshop": webshop,
}


def expert_for(env: str) -> Expert:
    """The expert of an environment id (a version suffix, `toolcall@v1`, is ignored)."""
    try:
        return EXPERTS[env.split("@")[0]]
    except KeyError:
        raise NoDemonstration(f"no expert plays {env!r} tasks; experts exist for {', '.join(sorted(EXPERTS))}") \
            from None


def missing_demonstration(task: TaskSpec) -> str | None:
    """Why the experts have nothing to play for `task` (None when they have, as far as the task alone says; a text
    game's plan is only known once its game is made)."""
    env = task.env.split("@")[0]
    payload = task.payload
    if env not in EXPERTS:
        return f"no expert plays {env!r} tasks"
    if env == "toolcall" and payload.get("kind") != "multi" and payload.get("check") == "any_call":
        return "relevance task: no reference answer (any call passes)"
    if env == "shell" and not str(payload.get("solution") or "").strip():
        return "no reference solution"
    if env == "swe" and not str(payload.get("gold_patch") or "").strip():
        return "no gold patch"
    return None
