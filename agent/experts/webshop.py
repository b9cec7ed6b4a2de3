"""The web shop's expert as a policy: the goal-knowing shopper (`tasks/webshop/expert.py`) as search and click calls."""

from __future__ import annotations

from gymbox.agent.experts.base import call
from gymbox.environments.api.models import Action, Message
from gymbox.tasks.spec import TaskSpec


def pages(messages: list[Message]) -> list[str]:
    """The pages the shop has shown so far, oldest first: each run of messages between assistant turns, joined."""
    shown: list[list[str]] = [[]]
    for message in messages:
        if message.role == "assistant":
            shown.append([])
        elif message.role != "system":
            shown[-1].append(message.content or "")
    return ["\n".join(texts) for texts in shown if texts]


def webshop(task: TaskSpec, messages: list[Message]) -> Action:
    """The shopper's action for the last page. It keeps state (the options chosen so far), which replaying it over
    the earlier pages rebuilds: it is deterministic, so one function serves any number of episodes."""
    from gymbox.tasks.webshop.expert import WebShopExpert

    shopper = WebShopExpert(task)
    action = ""
    for page in pages(messages):
        action = shopper.act(page)
    name, _, rest = action.partition("[")
    return call(name, {"query" if name == "search" else "button": rest.removesuffix("]")})
