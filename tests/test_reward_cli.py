"""Reward specifications through the harness: `gymbox rescore --reward SPEC` and a bad specification."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gymbox.agent.scripted import ScriptedPolicy
from gymbox.environments.runtime import LocalRuntime
from gymbox.harness.demo import echo_script
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.rollout import play_all
from gymbox.harness.store import TrajectoryStore
from gymbox.tasks import load_suite

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "rewards" / "specs" / "toolcall.yaml"


def rescore(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "rescore", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


async def test_rescore_with_a_spec_records_its_breakdown(tmp_path: Path) -> None:
    async with LocalRuntime("echo") as rt:
        trajectories = await play_all(rt, load_suite("echo-demo").tasks[:3], ScriptedPolicy(echo_script),
                                      group_size=1, config=EpisodeConfig(reward=str(SPEC)))
    # Attached by the harness: echo tasks have no reference calls, so the ToolRL components do not apply and
    # only the outcome counts.
    for t in trajectories:
        assert t.rewards["format"] is None and t.rewards["correct"] is None
        assert t.rewards["outcome"] == 1.0 and t.reward == t.rewards["total"] == 1.0
    with TrajectoryStore(tmp_path / "store").writer() as writer:
        for t in trajectories:
            writer.append(t.model_copy(update={"rewards": {"env": t.rewards["env"]}, "reward": None}))
    out = rescore(tmp_path / "store", "--reward", SPEC, "--out", tmp_path / "rescored")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rescored 3 trajectories: 3 changed, mean reward 1.000" in out.stdout
    assert [t.rewards for t in TrajectoryStore(tmp_path / "rescored").iter()] == [t.rewards for t in trajectories]


def test_a_bad_spec_is_refused_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  - fn: no_such_reward\n")
    out = rescore(tmp_path / "missing-store", "--reward", bad)
    assert out.returncode == 2 and "bad reward specification" in out.stdout and "no_such_reward" in out.stdout
