"""SWE-bench-format task files: instances read from local JSON or JSONL, checked, and paired with their Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gymbox.tasks.spec import Limits, TaskSpec
from gymbox.tasks.swe.packages import Package

_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class SWEBenchFileError(ValueError):
    """A task file that cannot be read as SWE-bench instances; the message names the file, the line and the field."""


class SWEInstance(BaseModel):
    """One instance in SWE-bench's format (the fields gymbox uses; others in the file are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    instance_id: str = Field(min_length=1, max_length=200)
    repo: str
    base_commit: str
    patch: str = Field(description="the gold patch: the fix, without the tests")
    test_patch: str = Field(description="the tests that check the fix, applied only when grading")
    problem_statement: str = ""
    fail_to_pass: list[str] = Field(alias="FAIL_TO_PASS", min_length=1)
    pass_to_pass: list[str] = Field(alias="PASS_TO_PASS", default_factory=list)
    version: str = ""
    environment_setup_commit: str = ""
    hints_text: str = ""

    @field_validator("fail_to_pass", "pass_to_pass", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        """The published datasets store these lists as JSON strings; files written by hand use plain lists."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"a JSON string that is not a list of test ids ({exc.msg})") from exc
        return value

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO.match(value):
            raise ValueError(f"{value!r} is not OWNER/NAME")
        return value

    @field_validator("base_commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not _COMMIT.match(value):
            raise ValueError(f"{value!r} is not a git commit hash (7 to 40 lower-case hex digits)")
        return value

    @field_validator("patch", "test_patch")
    @classmethod
    def _diff(cls, value: str) -> str:
        if "diff --git " not in value and not value.lstrip().startswith("--- "):
            raise ValueError("not a unified diff (no 'diff --git' or '---' header)")
        return value


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line number, decoded object) for each instance of a .jsonl file, or of a .json list or object."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise SWEBenchFileError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SWEBenchFileError(f"{path}:{exc.lineno}: not JSON ({exc.msg}); write a list of instances, or use "
                                ".jsonl with one instance per line") from exc
    return [(0, item) for item in (data if isinstance(data, list) else [data])]


def load_instances(path: str | Path) -> list[SWEInstance]:
    """The instances of a `.json` (a list, or one object) or `.jsonl` file, every one checked; ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise SWEBenchFileError(f"no task file at {path}")
    instances, seen = [], set()
    for number, record in _records(path):
        where = f"{path}:{number}" if number else f"{path} (instance {len(instances) + 1})"
        if not isinstance(record, dict):
            raise SWEBenchFileError(f"{where}: an instance is a JSON object, got {type(record).__name__}")
        try:
            instance = SWEInstance.model_validate(record)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise SWEBenchFileError(f"{where} ({record.get('instance_id', 'no instance_id')}): {problems}") from exc
        if instance.instance_id in seen:
            raise SWEBenchFileError(f"{where}: instance_id {instance.instance_id!r} appears twice")
        seen.add(instance.instance_id)
        instances.append(instance)
    return instances


def dockerfile_for(instance: SWEInstance, root: str | Path) -> Path:
    """The instance's own Dockerfile: `ROOT/<instance_id>/Dockerfile` or `ROOT/<instance_id>.Dockerfile`.

    It builds the repository at `base_commit` with its dependencies installed; gymbox never fetches either.
    """
    root = Path(root)
    choices = [root / instance.instance_id / "Dockerfile", root / f"{instance.instance_id}.Dockerfile"]
    for choice in choices:
        if choice.is_file():
            return choice
    raise SWEBenchFileError(f"no Dockerfile for {instance.instance_id}: looked for {choices[0]} and {choices[1]}; "
                            "each SWE-bench instance needs its own (the repository at base_commit, dependencies "
                            "installed)")


def to_task(instance: SWEInstance, dockerfile: Path, *, split: str = "test", max_turns: int = 50) -> TaskSpec:
    """A `swe` task for the instance: the problem statement is the instruction; the patches and test lists travel
    in the payload, and the grader applies `test_patch` only after the agent has finished."""
    return TaskSpec(
        id=f"swebench-{instance.instance_id}", env="swe", instruction=instance.problem_statement, split=split,
        category=instance.repo, limits=Limits(max_turns=max_turns, max_seconds=3600.0, step_seconds=180.0),
        payload={"kind": "swebench", "instance_id": instance.instance_id, "repo": instance.repo,
                 "base_commit": instance.base_commit, "gold_patch": instance.patch, "test_patch": instance.test_patch,
                 "fail_to_pass": instance.fail_to_pass, "pass_to_pass": instance.pass_to_pass,
                 "dockerfile": str(dockerfile)})


SWEBENCH_ROOT = "/testbed"  # where SWE-bench's images keep the repository


def checkout(payload: dict[str, Any]) -> Package:
    """How the grader treats an instance's image: the whole repository is the agent's to change, the files the
    test patch touches are put back from the image before it is applied, and the image's own pytest runs."""
    touched = tuple(sorted({path for path in re.findall(r"^diff --git a/(\S+) b/", payload["test_patch"], re.M)}))
    tag = "gymbox/swebench-" + re.sub(r"[^a-z0-9_.-]", "-", payload["instance_id"].lower()) + ":latest"
    return Package(name=payload["repo"], version=payload["base_commit"][:12], sha256="", source=".", tests=touched,
                   root=payload.get("root", SWEBENCH_ROOT), runner=payload.get("test_runner", "python -m pytest"),
                   options="", hide_tests=False, tag=tag)
