"""SWE-bench-format task files: both list encodings, .json and .jsonl, clear errors, per-instance Dockerfiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gymbox.tasks.swe.swebench import SWEBenchFileError, dockerfile_for, load_instances, to_task

PATCH = "diff --git a/pkg/m.py b/pkg/m.py\n--- a/pkg/m.py\n+++ b/pkg/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
TEST_PATCH = PATCH.replace("pkg/m.py", "tests/test_m.py")


def instance(**changes: object) -> dict:
    base = {"instance_id": "acme__widgets-12", "repo": "acme/widgets", "base_commit": "0123abc", "patch": PATCH,
            "test_patch": TEST_PATCH, "problem_statement": "Widgets overflow.", "version": "1.0",
            # As the published datasets store them: JSON strings.
            "FAIL_TO_PASS": json.dumps(["tests/test_m.py::test_x"]), "PASS_TO_PASS": json.dumps([]),
            "created_at": "2024-01-01T00:00:00Z"}
    return {**base, **changes}


def test_jsonl_and_json_files_load_the_same(tmp_path: Path) -> None:
    second = instance(instance_id="acme__widgets-13", FAIL_TO_PASS=["tests/test_m.py::test_y"],
                      PASS_TO_PASS=["tests/test_m.py::test_z"])
    lines = tmp_path / "tasks.jsonl"
    lines.write_text(json.dumps(instance()) + "\n\n" + json.dumps(second) + "\n")
    listed = tmp_path / "tasks.json"
    listed.write_text(json.dumps([instance(), second]))
    assert load_instances(lines) == load_instances(listed)
    first, other = load_instances(lines)
    assert first.fail_to_pass == ["tests/test_m.py::test_x"] and first.pass_to_pass == []
    assert other.pass_to_pass == ["tests/test_m.py::test_z"]


@pytest.mark.parametrize("changes, message", [
    ({"FAIL_TO_PASS": "[]"}, "FAIL_TO_PASS"),
    ({"FAIL_TO_PASS": "not json"}, "not a list of test ids"),
    ({"base_commit": "main"}, "git commit hash"),
    ({"repo": "widgets"}, "OWNER/NAME"),
    ({"patch": "please fix it"}, "unified diff"),
    ({"test_patch": None}, "test_patch"),
])
def test_a_bad_instance_names_its_line_and_field(tmp_path: Path, changes: dict, message: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(instance(instance_id="ok-1")) + "\n" + json.dumps(instance(**changes)) + "\n")
    with pytest.raises(SWEBenchFileError, match=rf"tasks.jsonl:2 \(acme__widgets-12\).*{message}"):
        load_instances(path)


def test_broken_json_and_duplicates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(instance()) + "\n{\"instance_id\": \n")
    with pytest.raises(SWEBenchFileError, match=r"tasks.jsonl:2: not JSON"):
        load_instances(path)
    path.write_text(json.dumps(instance()) + "\n" + json.dumps(instance()) + "\n")
    with pytest.raises(SWEBenchFileError, match="appears twice"):
        load_instances(path)
    with pytest.raises(SWEBenchFileError, match="no task file"):
        load_instances(tmp_path / "missing.jsonl")


def test_each_instance_gets_its_own_dockerfile(tmp_path: Path) -> None:
    [found] = load_instances(_write(tmp_path, [instance()]))
    with pytest.raises(SWEBenchFileError, match=r"no Dockerfile for acme__widgets-12: looked for .*Dockerfile"):
        dockerfile_for(found, tmp_path / "docker")
    (tmp_path / "docker" / "acme__widgets-12").mkdir(parents=True)
    (tmp_path / "docker" / "acme__widgets-12" / "Dockerfile").write_text("FROM scratch\n")
    dockerfile = dockerfile_for(found, tmp_path / "docker")
    task = to_task(found, dockerfile)
    assert task.env == "swe" and task.instruction == "Widgets overflow." and task.category == "acme/widgets"
    assert task.payload["fail_to_pass"] == ["tests/test_m.py::test_x"]
    assert task.payload["gold_patch"] == PATCH and task.payload["dockerfile"] == str(dockerfile)


def _write(folder: Path, records: list[dict]) -> Path:
    path = folder / "tasks.json"
    path.write_text(json.dumps(records))
    return path
