"""Task generation against a real package image, and the shipped swe suite's own consistency."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from gymbox.environments.runtime.images import image_files
from gymbox.tasks import load_suite
from gymbox.tasks.swe.packages import PACKAGES


def _records() -> list[dict]:
    from gymbox.tasks.swe.suite import DATA

    return [json.loads(line) for path in sorted(DATA.glob("*.jsonl")) for line in path.read_text().splitlines()]


@pytest.mark.container
@pytest.mark.slow
def test_generate_is_deterministic_and_keeps_only_bugs_the_tests_catch(tmp_path: Path, swe_images: object) -> None:
    outs = []
    for name in ("first", "second"):
        command = [sys.executable, "-m", "gymbox.harness.cli", "swe", "generate", "parse", "--count", "1",
                   "--tries", "4", "--seed", "7", "--jobs", "1", "--out", str(tmp_path / name)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "wrote 1 tasks" in done.stdout and "FAIL_TO_PASS" in done.stdout
        outs.append((tmp_path / name / "parse.jsonl").read_text())
    assert outs[0] == outs[1]
    task = json.loads(outs[0])
    assert task["fail_to_pass"] and not set(task["fail_to_pass"]) & set(task["pass_to_pass"])
    assert all(t.startswith("tests/") for t in task["fail_to_pass"] + task["pass_to_pass"])
    assert task["fail_to_pass"][0] in task["problem_statement"]


def test_the_shipped_suite_is_large_split_and_spread_over_packages() -> None:
    records = _records()
    suite = load_suite("swe")
    assert len(suite) == len(records) >= 100
    per_package = Counter(r["package"] for r in records)
    assert len(per_package) >= 5 and set(per_package) <= set(PACKAGES)
    splits = Counter(r["split"] for r in records)
    assert splits["test"] >= 15 and splits["train"] >= 60 and set(splits) == {"train", "test"}
    assert len({r["id"] for r in records}) == len(records)
    sides: dict[tuple[str, str], set[str]] = {}
    for r in records:
        sides.setdefault((r["package"], r["function"]), set()).add(r["split"])
        assert r["fail_to_pass"] and not set(r["fail_to_pass"]) & set(r["pass_to_pass"])
        assert r["version"] == PACKAGES[r["package"]].version
    assert all(len(s) == 1 for s in sides.values())  # a function's bugs are all on one side
    assert len(suite.split("test")) == splits["test"]


def test_problem_statements_do_not_give_the_fix_away() -> None:
    for r in _records():
        fixed = [line[1:].strip() for line in r["gold_patch"].splitlines()
                 if line.startswith("+") and not line.startswith("+++")]
        buggy = [line[1:].strip() for line in r["bug_patch"].splitlines()
                 if line.startswith("+") and not line.startswith("+++")]
        for line in fixed + buggy:
            if len(line) > 12:  # short lines ("return x") can also be test code the statement quotes
                assert line not in r["problem_statement"], (r["id"], line)


@pytest.mark.container
def test_every_shipped_patch_applies_to_the_image_checkout(tmp_path: Path, swe_images: object) -> None:
    by_package: dict[str, list[dict]] = {}
    for r in _records():
        by_package.setdefault(r["package"], []).append(r)
    for name, records in by_package.items():
        root = tmp_path / name
        archive = image_files(swe_images, PACKAGES[name].image(), PACKAGES[name].root)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
        checkout = root / "repo"
        for r in records:
            bug = tmp_path / "bug.patch"
            bug.write_text(r["bug_patch"])
            check = subprocess.run(["git", "apply", "--check", str(bug)], cwd=checkout, capture_output=True,
                                   text=True)
            assert check.returncode == 0, (r["id"], check.stderr)
            subprocess.run(["git", "apply", str(bug)], cwd=checkout, check=True)
            gold = tmp_path / "gold.patch"
            gold.write_text(r["gold_patch"])
            subprocess.run(["git", "apply", str(gold)], cwd=checkout, check=True)
            left = subprocess.run(["git", "status", "--porcelain"], cwd=checkout, capture_output=True, text=True)
            assert left.stdout == "", r["id"]  # gold undoes the bug exactly
