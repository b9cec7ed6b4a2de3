"""Tasks of the `shell` environment, read from `tasks/data/shell/<category>.yaml` (one file per category).

A file holds `category` and a list of `tasks`; each task has an `id` (`shell-<category>-NNN`), a fixed `split`
(train or test), the agent's `instruction`, a `setup` script run in the empty workspace, at least two `checks`
({name, run}: bash run in the workspace after the episode, exit 0 = pass) and a reference `solution` script,
and optionally `max_turns`.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from gymbox.tasks.spec import Limits, TaskSpec

DATA = Path(__file__).resolve().parent / "data" / "shell"
CATEGORIES = ("files", "text", "archives", "git", "python", "system")
SPLITS = ("train", "test")
DEFAULT_MAX_TURNS = 15
_REQUIRED = {"id", "split", "instruction", "setup", "checks", "solution"}
_OPTIONAL = {"max_turns"}


class TaskFileError(ValueError):
    """A task file that does not follow the format; the message names the file and the task."""


def tasks() -> list[TaskSpec]:
    """Every task of the suite, in category order, then file order."""
    return list(_load(DATA))


@cache
def _load(folder: Path) -> tuple[TaskSpec, ...]:
    files = {path.stem: path for path in folder.glob("*.yaml")}
    if set(files) != set(CATEGORIES):
        raise TaskFileError(f"{folder} must hold one file per category {CATEGORIES}; it holds {sorted(files)}")
    loaded: list[TaskSpec] = []
    seen: dict[str, str] = {}
    for category in CATEGORIES:
        path = files[category]
        for task in _read_file(path, category):
            if task.id in seen:
                raise TaskFileError(f"{path.name}: task id {task.id!r} is also used in {seen[task.id]}")
            seen[task.id] = path.name
            loaded.append(task)
    return tuple(loaded)


def _read_file(path: Path, category: str) -> list[TaskSpec]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TaskFileError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"category", "tasks"}:
        raise TaskFileError(f"{path.name}: expected a mapping with exactly the keys 'category' and 'tasks'")
    if data["category"] != category:
        raise TaskFileError(f"{path.name}: category is {data['category']!r}, but the file name says {category!r}")
    if not isinstance(data["tasks"], list) or not data["tasks"]:
        raise TaskFileError(f"{path.name}: 'tasks' must be a non-empty list")
    return [_parse_task(raw, category, f"{path.name}: task #{i + 1}") for i, raw in enumerate(data["tasks"])]


def _parse_task(raw: Any, category: str, where: str) -> TaskSpec:
    if not isinstance(raw, dict):
        raise TaskFileError(f"{where}: expected a mapping, got {type(raw).__name__}")
    if isinstance(raw.get("id"), str):
        where = f"{where.split(':')[0]}: task {raw['id']!r}"

    def fail(problem: str) -> TaskFileError:
        return TaskFileError(f"{where}: {problem}")

    if missing := _REQUIRED - set(raw):
        raise fail(f"missing {', '.join(sorted(missing))}")
    if unknown := set(raw) - _REQUIRED - _OPTIONAL:
        raise fail(f"unknown keys {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_REQUIRED | _OPTIONAL))}")
    if not re.fullmatch(rf"shell-{category}-\d{{3}}", str(raw["id"])):
        raise fail(f"id must look like 'shell-{category}-001'")
    if raw["split"] not in SPLITS:
        raise fail(f"split must be one of {SPLITS}, got {raw['split']!r}")
    for key in ("instruction", "solution"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise fail(f"{key} must be a non-empty string")
    if not isinstance(raw["setup"], str):
        raise fail("setup must be a string (empty when the task starts from an empty workspace)")
    checks = raw["checks"]
    if not isinstance(checks, list) or len(checks) < 2:
        raise fail("checks must be a list of at least two {name, run} mappings")
    for check in checks:
        if not (isinstance(check, dict) and set(check) == {"name", "run"}
                and all(isinstance(check[k], str) and check[k].strip() for k in ("name", "run"))):
            raise fail(f"each check must be a mapping of exactly 'name' and 'run', non-empty strings: {check!r}")
    if len({c["name"] for c in checks}) != len(checks):
        raise fail("check names must be unique within the task")
    max_turns = raw.get("max_turns", DEFAULT_MAX_TURNS)
    if not isinstance(max_turns, int) or isinstance(max_turns, bool) or max_turns < 1:
        raise fail(f"max_turns must be a positive integer, got {max_turns!r}")
    return TaskSpec(
        id=raw["id"], env="shell", instruction=raw["instruction"].strip(),
        payload={"setup": raw["setup"], "checks": [dict(c) for c in checks], "solution": raw["solution"]},
        limits=Limits(max_turns=max_turns), category=category, split=raw["split"],
    )
