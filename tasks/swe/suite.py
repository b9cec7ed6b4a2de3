"""The shipped `swe` suite: validated tasks in `tasks/data/swe/<package>.jsonl`, one file per package."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from gymbox.tasks.spec import Limits, TaskSpec

DATA = Path(__file__).resolve().parent.parent / "data" / "swe"
MAX_TURNS = 50
_FIELDS = ("id", "package", "version", "split", "problem_statement", "bug_patch", "gold_patch", "fail_to_pass",
           "pass_to_pass", "grade_seconds")


def tasks() -> list[TaskSpec]:
    """Every task of the suite, by package, then id."""
    return list(_load(DATA))


def to_spec(record: dict[str, Any]) -> TaskSpec:
    """A generated task record (as `gymbox swe generate` writes it) as a TaskSpec of the `swe` environment."""
    payload = {"kind": "mutation", **{k: v for k, v in record.items() if k not in ("id", "split",
                                                                                 "problem_statement")}}
    grade = float(record["grade_seconds"])
    return TaskSpec(id=record["id"], env="swe", instruction=record["problem_statement"], payload=payload,
                    split=record["split"], category=record["package"],
                    limits=Limits(max_turns=MAX_TURNS, max_seconds=3600.0, step_seconds=grade + 180.0))


@cache
def _load(folder: Path) -> tuple[TaskSpec, ...]:
    found: list[TaskSpec] = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            missing = [key for key in _FIELDS if key not in record]
            if missing:
                raise ValueError(f"{path}:{number}: task lacks {', '.join(missing)}; regenerate it with "
                                 "`gymbox swe generate`")
            found.append(to_spec(record))
    return tuple(sorted(found, key=lambda t: (t.category, t.id)))
