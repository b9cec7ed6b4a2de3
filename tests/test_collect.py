"""`gymbox collect`: experts play a suite through Ray workers and the store holds the demonstrations asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from gymbox.agent.policy import Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.harness.cli import build_parser
from gymbox.harness.cli_collect import CollectRun, collect, print_report
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.store import TrajectoryStore

pytestmark = pytest.mark.slow  # a Ray instance and its workers start (about 20 s on this machine)


def run(out: Path, keep: str, suite: str = "echo-demo:train", limit: int = 3, max_turns: int = 2) -> CollectRun:
    # Echo tasks 0, 1 and 2 need 1, 2 and 3 echoes, then a submit: within 2 turns only the first can succeed.
    config = EpisodeConfig(max_turns=max_turns, retries=0, sampling=Sampling(max_tokens=256, temperature=0.0))
    return CollectRun(suite=suite, policy=PolicySpec.parse("expert"), out=out, keep=keep, limit=limit,
                      config=config, workers=1)


async def test_collect_keeps_successes_and_lists_failures(tmp_path: Path, smollm2: Path, ray_local: None) -> None:
    console = Console(record=True, width=140)
    success = run(tmp_path / "success", "success")
    report = await collect(success, console)
    print_report(success, report, console)
    stored = list(TrajectoryStore(success.out).iter())
    assert [t.task.id for t in stored] == ["echo-000"] and stored[0].signals["success"] == 1.0
    tally = report.envs["echo"]
    assert (tally.tasks, tally.played, tally.succeeded, tally.kept) == (3, 3, 1, 1)
    assert tally.tokens == len(stored[0].token_ids) and tally.trained_tokens == sum(stored[0].loss_mask) > 0
    assert sorted(trajectory_id.split("@")[0] for trajectory_id, _ in report.failures) == ["echo-001", "echo-002"]
    assert all("truncated by max_turns" in reason for _, reason in report.failures)
    text = console.export_text()
    assert "episodes that failed (2)" in text and "echo-001" in text and "1 episodes written" in text
    figures = json.loads((success.out / "collect.json").read_text())
    assert figures["envs"]["echo"]["kept"] == 1 and len(figures["failures"]) == 2

    everything = run(tmp_path / "all", "all")
    report = await collect(everything, console)
    assert len(list(TrajectoryStore(everything.out).iter())) == 3 and report.envs["echo"].kept == 3


async def test_collect_skips_tasks_without_a_demonstration(tmp_path: Path, smollm2: Path, ray_local: None) -> None:
    from gymbox.tasks import load_suite

    suite = "toolcall-smoke:train"
    tasks = load_suite(suite).tasks
    collected = run(tmp_path / "store", "success", suite=suite, limit=len(tasks), max_turns=1)
    report = await collect(collected, Console(width=140))
    tally = report.envs["toolcall"]
    relevance = sum(t.category == "live_relevance" for t in tasks)  # no reference answer: nothing to demonstrate
    assert tally.skipped == relevance > 0 and tally.played == len(tasks) - relevance
    assert all("relevance" in reason for _, reason in report.skipped)
    # Multi-turn tasks need more than one turn: within max_turns=1 only the single-turn ones succeed.
    single = sum(t.payload["kind"] == "single" for t in tasks)
    assert tally.succeeded == tally.kept == single - relevance
    assert len(list(TrajectoryStore(collected.out).iter())) == tally.kept


def test_cli_parses_collect() -> None:
    args = build_parser().parse_args(["collect", "shell:train", "--out", "demos"])
    assert args.policy == "expert" and args.keep == "success" and args.max_tokens == 4096
    assert PolicySpec.parse(args.policy).kind == "expert"
