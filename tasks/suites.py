"""Task suites: named, fixed lists of tasks with train/test splits, declared in one table."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from gymbox.tasks.spec import TaskSpec

# Suite name -> "module:function" returning every task of the suite (each with its `split` set).
# Declared here, explicitly: importing a module never adds a suite.
SUITES: dict[str, str] = {
    "echo-demo": "gymbox.tasks.echo:demo_tasks",
    "toolcall-single": "gymbox.tasks.toolcall.suite:single_turn_tasks",
    "toolcall-multi": "gymbox.tasks.toolcall.suite:multi_turn_tasks",
    "toolcall-smoke": "gymbox.tasks.toolcall.suite:smoke_tasks",
    "tau2-airline": "gymbox.tasks.toolcall.tau2:airline_tasks",
    "tau2-retail": "gymbox.tasks.toolcall.tau2:retail_tasks",
    "tau2-telecom": "gymbox.tasks.toolcall.tau2:telecom_tasks",
    "tau2-telecom-full": "gymbox.tasks.toolcall.tau2:telecom_full_tasks",
    "shell": "gymbox.tasks.shell:tasks",
    "textworld": "gymbox.tasks.textworld.suite:tasks",
    "textworld-easy": "gymbox.tasks.textworld.suite:easy_tasks",
    "alfworld": "gymbox.tasks.alfworld.suite:tasks",
    "alfworld-official": "gymbox.tasks.alfworld.suite:official_tasks",
    "swe": "gymbox.tasks.swe.suite:tasks",
    "webshop": "gymbox.tasks.webshop.suite:tasks",
    "webshop-original": "gymbox.tasks.webshop.suite:original_tasks",
}


class UnknownSuite(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskSpec, ...]

    @property
    def envs(self) -> list[str]:
        return sorted({t.env for t in self.tasks})

    def split(self, split: str) -> Suite:
        return Suite(f"{self.name.split(':')[0]}:{split}", tuple(t for t in self.tasks if t.split == split))

    def get(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise UnknownSuite(f"suite {self.name!r} has no task {task_id!r}; list them with `gymbox tasks {self.name}`")

    def __len__(self) -> int:
        return len(self.tasks)


def list_suites() -> list[str]:
    return sorted(SUITES)


def _loader(name: str) -> Callable[[], list[TaskSpec]]:
    if name not in SUITES:
        raise UnknownSuite(f"no task suite {name!r}; known suites: {', '.join(list_suites())}")
    module_name, _, attr = SUITES[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def describe_suite(name: str) -> str:
    """What a suite holds and where its tasks come from: its loader's docstring."""
    return " ".join((_loader(name.partition(":")[0]).__doc__ or "").split())


@cache
def _load_all(name: str) -> Suite:
    return Suite(name, tuple(_loader(name)()))


def load_suite(name: str) -> Suite:
    """A suite by name; `NAME:train` or `NAME:test` selects one split."""
    base, _, split = name.partition(":")
    suite = _load_all(base)
    if not split:
        return suite
    chosen = suite.split(split)
    if not chosen.tasks:
        splits = sorted({t.split for t in suite.tasks})
        raise UnknownSuite(f"suite {base!r} has no split {split!r}; its splits: {', '.join(splits)}")
    return chosen
