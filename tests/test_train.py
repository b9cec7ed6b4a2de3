"""`gymbox train` end to end: real vLLM rollouts on Ray, the learner, weight sync, checkpoints, resume, reports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
import yaml

from gymbox.harness.store import TrajectoryStore
from gymbox.harness.tracking import read_tensorboard
from gymbox.harness.train import Trainer
from gymbox.harness.train_config import TrainConfig, TrainConfigError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def write_config(folder: Path, **changes: object) -> Path:
    config = {
        "suite": "echo-demo:train", "out": str(folder / "run"), "steps": 2, "tasks_per_step": 2, "group_size": 2,
        "episode": {"parser": "json", "sampling": {"temperature": 1.0, "max_tokens": 8}, "max_turns": 1,
                    "reward": str(ROOT / "rewards/specs/format.yaml")},
        "checkpoint_every": 1, "max_model_len": 1024,
        # Keep samples whose advantage is 0 so every step updates and syncs whatever the tiny budget samples.
        "skip_zero_advantage": False,
        "learner": {"lr": 1e-5, "micro_batch_size": 2},
        "eval": {"suite": "echo-demo:test", "limit": 2},
        **changes,
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(900)  # two engine starts and five rollout rounds on two cores
def test_train_runs_syncs_checkpoints_and_resumes(tmp_path: Path) -> None:
    config = TrainConfig.load(write_config(tmp_path))
    asyncio.run(Trainer(config).run())
    run = config.out
    steps = lines(run / "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert m["samples"] == 4 and m["optimizer_steps"] == 1 and m["tokens"] > m["policy_tokens"] > 0
        assert m["tokens_per_s"] > 0 and 0 <= m["clip_fraction"] <= 1 and m["reward_mean"] is not None
    assert [m["weights_version"] for m in steps] == ["1", "2"]  # the policy serves each update's weights
    rollouts = list(TrajectoryStore(run / "trajectories").iter())
    assert len(rollouts) == 8 and all("format_ladder" in t.rewards for t in rollouts)
    # Step 2 was sampled by the weights of update 1: provenance says so.
    assert sorted({t.provenance.weights_version for t in rollouts}) == ["0", "1"]
    assert [e["when"] for e in lines(run / "eval.jsonl")] == ["before", "after"]
    assert (run / "reward.png").stat().st_size > 0
    assert (run / "checkpoints" / "latest").read_text() == "step-000002"
    assert [p.name for p in (run / "weights").iterdir()] == ["v2"]  # older served weights are removed

    # Resume: one more step starts from the checkpoint, served by its weights.
    more = TrainConfig.load(write_config(tmp_path, steps=3))
    asyncio.run(Trainer(more).run())
    steps = lines(run / "metrics.jsonl")
    assert [m["step"] for m in steps] == [1, 2, 3]
    third = [t for t in TrajectoryStore(run / "trajectories").iter()][8:]
    assert len(third) == 4 and {t.provenance.weights_version for t in third} == {"2"}
    assert [e["when"] for e in lines(run / "eval.jsonl")] == ["before", "after", "after"]
    curves = read_tensorboard(run)  # every step and evaluation in TensorBoard too, across the resume
    assert [step for step, _ in curves["reward_mean"]] == [1, 2, 3]
    assert [step for step, _ in curves["eval/reward_mean"]] == [0, 2, 3]
    assert (run / "checkpoints" / "latest").read_text() == "step-000003"
    saved = TrainConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
    assert saved == more  # the run folder keeps the settings it went on with


@pytest.mark.timeout(900)
def test_lora_training_serves_base_plus_adapters_and_checkpoints_the_adapters(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from gymbox.agent.learner import checkpoint, lora
    from gymbox.agent.models import model_path

    config = TrainConfig.load(write_config(tmp_path, eval=None, checkpoint_every=2,
                                           lora={"rank": 4, "target_modules": ["q_proj", "v_proj"]},
                                           learner={"lr": 1e-3, "micro_batch_size": 2}))
    asyncio.run(Trainer(config).run())
    run = config.out
    assert [m["weights_version"] for m in lines(run / "metrics.jsonl")] == ["1", "2"]
    rollouts = list(TrajectoryStore(run / "trajectories").iter())
    assert sorted({t.provenance.weights_version for t in rollouts}) == ["0", "1"]  # step 2 played update 1's
    saved = run / "checkpoints" / "step-000002"
    assert lora.is_adapter(saved / "model") and not (saved / "model" / "model.safetensors").exists()
    # What vLLM was last given is exactly base + the checkpoint's adapters, merged.
    learner, _ = checkpoint.resume(saved, model_path("default"), config.learner, lora=config.lora)
    served = load_file(run / "weights" / "v2" / "model.safetensors")
    merged = lora.merged_state_dict(learner.model)
    assert {k for k in merged if "q_proj" in k} <= served.keys()
    changed = [k for k, v in served.items() if not torch.equal(v, merged[k])]
    assert not changed, changed[:3]
    base = load_file(Path(model_path("default")) / "model.safetensors")
    assert torch.equal(served["model.layers.0.self_attn.k_proj.weight"],
                       base["model.layers.0.self_attn.k_proj.weight"].float())  # not adapted: the base's
    # An adapted layer is the base's until its B moves (B starts at 0; equal rewards in a group give no gradient).
    b = learner.model.state_dict()["base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"]
    assert torch.equal(served["model.layers.0.self_attn.q_proj.weight"],
                       base["model.layers.0.self_attn.q_proj.weight"].float()) == bool((b == 0).all())

    # Resumed, the policy starts from base + the checkpoint's adapters, merged, and goes on from there.
    more = TrainConfig.load(write_config(tmp_path, eval=None, checkpoint_every=2, steps=3,
                                         lora={"rank": 4, "target_modules": ["q_proj", "v_proj"]},
                                         learner={"lr": 1e-3, "micro_batch_size": 2}))
    asyncio.run(Trainer(more).run())
    third = list(TrajectoryStore(run / "trajectories").iter())[len(rollouts):]
    assert len(third) == 4 and {t.provenance.weights_version for t in third} == {"2"}
    assert lora.is_adapter(run / "checkpoints" / "step-000003" / "model")


@pytest.mark.parametrize(("changes", "message"), [
    ({"group_size": 1}, "group_size"),
    ({"advantage": "ppo"}, "unknown advantage estimator 'ppo'"),
    ({"episode": {"reward": "/nowhere/spec.yaml"}}, "cannot read the reward spec"),
    ({"learner": {"aggregation": "mean"}}, "aggregation"),
    ({"turn_level": True, "advantage": "rloo"}, "no turn-level form"),
    ({"stepz": 3}, "stepz"),
    ({"containers": 4}, "the local runtime starts none"),
])
def test_bad_configs_are_refused_before_anything_loads(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.load(write_config(tmp_path, **changes))


def test_a_bad_reward_spec_is_refused_with_its_reason(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("components: [{fn: outcome, gate: 2.0}]\n")  # a gate on the last component holds nothing back
    with pytest.raises(TrainConfigError, match="holds nothing back"):
        TrainConfig.load(write_config(tmp_path, episode={"reward": str(spec)}))
