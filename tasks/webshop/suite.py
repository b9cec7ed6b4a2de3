"""Tasks of the `webshop` environment: goals over the generated catalog, and the original's goals when present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gymbox.tasks.spec import Limits, TaskSpec
from gymbox.tasks.webshop.catalog import DEFAULT_PRODUCTS, Catalog, Goal, generated_catalog

MAX_TURNS = 15  # the common step limit for LLM agents on WebShop
INSTRUCTION = (
    "You are shopping in a web shop for the item the instruction on the page describes. On the search page act with "
    "search[your query]; on the other pages act with click[button], where a button is one of the page's clickable "
    "parts: a result's id, an option value, description, features, reviews, < prev, next >, back to search, or "
    "buy now. Send each action as a tool call (search, click) or as plain text. Choose the options the instruction "
    "asks for, then click[buy now]: the purchase ends the episode and is scored by how well it matches.")


class InvalidCatalog(ValueError):
    """A task's catalog cannot be loaded; the message says why and what to give instead."""


def load_catalog(spec: dict[str, Any]) -> Catalog:
    """The catalog a task names: `{"seed": S, "products": N}` (generated) or `{"original": FOLDER}`."""
    if "original" in spec:
        from gymbox.tasks.webshop.original import original_catalog

        return original_catalog(Path(spec["original"]))
    try:
        return generated_catalog(int(spec.get("seed", 0)), int(spec.get("products", DEFAULT_PRODUCTS)))
    except (TypeError, ValueError) as exc:
        raise InvalidCatalog(f"catalog {spec!r} cannot be made: {exc}. Give {{'seed': S, 'products': N}} or "
                             "{'original': FOLDER}") from exc


def goal_tasks(catalog: Catalog, prefix: str, spec: dict[str, Any], human_every: int = 2) -> list[TaskSpec]:
    """One task per goal of `catalog`; every `human_every`-th shows the paraphrased (human-like) instruction."""
    out = []
    for i, (goal, split) in enumerate(catalog.goals):
        product = catalog.get(goal.asin)
        form = "human" if goal.paraphrase and i % human_every == human_every - 1 else "synthetic"
        out.append(TaskSpec(id=f"{prefix}-{i}", env="webshop", instruction=INSTRUCTION,
                            payload={"catalog": spec, "goal": goal.payload(), "form": form},
                            limits=Limits(max_turns=MAX_TURNS), category=product.category if product else "",
                            split=split))
    return out


def tasks(seed: int = 0, products: int = DEFAULT_PRODUCTS) -> list[TaskSpec]:
    """1,500 goals over the generated catalog (5,000 products, seed 0): 500 test, 1,000 train (the original's split
    rule), half with the synthetic instruction and half with a paraphrased human-like one."""
    spec = {"seed": seed, "products": products}
    return goal_tasks(generated_catalog(seed, products), "webshop" if spec == {"seed": 0, "products": 5000}
                      else f"webshop-s{seed}-n{products}", spec)


def original_tasks() -> list[TaskSpec]:
    """The original WebShop's goals under `$WEBSHOP_DATA` (items_shuffle*.json, items_ins_v2*.json,
    items_human_ins.json), human goals with the original's split (test, dev, train). Empty when WEBSHOP_DATA is not
    set: the download is not reachable from every machine."""
    root = os.environ.get("WEBSHOP_DATA")
    if not root:
        return []
    from gymbox.tasks.webshop.original import original_catalog

    folder = Path(root).resolve()
    return goal_tasks(original_catalog(folder), "webshop-original", {"original": str(folder)}, human_every=1)


def task_goal(task: TaskSpec) -> tuple[Catalog, Goal, str]:
    """The task's catalog, goal and instruction form; `InvalidCatalog` says what is wrong with the payload."""
    payload = task.payload
    if not isinstance(payload.get("catalog"), dict) or not isinstance(payload.get("goal"), dict):
        raise InvalidCatalog(f"task {task.id!r} needs payload.catalog and payload.goal (see `gymbox tasks webshop`)")
    catalog = load_catalog(payload["catalog"])
    try:
        goal = Goal.from_payload(payload["goal"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidCatalog(f"task {task.id!r}: payload.goal is not a goal ({exc})") from exc
    if catalog.get(goal.asin) is None:
        raise InvalidCatalog(f"task {task.id!r}: the goal product {goal.asin!r} is not in its catalog")
    form = str(payload.get("form", "synthetic"))
    if form not in ("synthetic", "human"):
        raise InvalidCatalog(f"task {task.id!r}: payload.form is {form!r}; use 'synthetic' or 'human'")
    return catalog, goal, form
