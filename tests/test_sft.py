"""`gymbox sft` on a store made through the episode loop: the loss falls, only loss-mask tokens count, resume,
filters and the test-split refusal, LoRA (only adapters train; the merged model gives the adapted logits)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from gymbox.agent.learner import lora
from gymbox.agent.learner.batch import Collated, collate, sample_of
from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.learner import Learner
from gymbox.agent.learner.sft import nll, sft_step
from gymbox.agent.models import load_causal_lm
from gymbox.environments.records import Trajectory
from gymbox.harness.sft import SFTRun
from gymbox.harness.sft_config import SFTConfig, SFTConfigError
from gymbox.harness.sft_data import NoDemonstrations, select
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.tracking import read_tensorboard

SUBMIT = '<tool_call>{"name": "submit", "arguments": {}}</tool_call>'


@pytest.fixture(scope="module")
def store(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve echo-demo tasks (train and test) played by the scripted expert through the episode loop, and four
    played by a policy that submits at once (failures), in the default model's chat template."""
    from transformers import AutoTokenizer

    from gymbox.agent.scripted import ScriptedPolicy
    from gymbox.environments.runtime import LocalRuntime
    from gymbox.harness.demo import echo_script
    from gymbox.harness.episode import EpisodeConfig
    from gymbox.harness.rollout import play_all
    from gymbox.tasks import load_suite

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    tasks = load_suite("echo-demo").tasks

    async def play() -> list[Trajectory]:
        async with LocalRuntime("echo") as rt:
            good = await play_all(rt, tasks[:12], ScriptedPolicy(echo_script, tokenizer=tokenizer, name="expert"),
                                  group_size=1, config=EpisodeConfig())
            bad = await play_all(rt, tasks[:4], ScriptedPolicy([SUBMIT], tokenizer=tokenizer, name="quitter"),
                                 group_size=1, config=EpisodeConfig(), base_seed=1)
        return good + bad

    path = tmp_path_factory.mktemp("demos") / "store"
    with TrajectoryStore(path).writer() as writer:
        for t in asyncio.run(play()):
            writer.append(t)
    return path


def config(tiny_model: Path, store: Path, out: Path, **kw: Any) -> SFTConfig:
    base: dict[str, Any] = {"model": str(tiny_model), "stores": [str(store)], "out": str(out), "batch_size": 4,
                            "checkpoint_every": 2, "validation_fraction": 0.2,
                            "learner": {"lr": 1e-2, "micro_batch_size": 2, "precision": "fp32"}}
    return SFTConfig.model_validate({**base, **kw})


def run(cfg: SFTConfig) -> list[dict[str, Any]]:
    SFTRun(cfg, console=Console(file=io.StringIO())).run()
    return [json.loads(line) for line in (cfg.out / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_the_loss_falls_on_a_tiny_store(tiny_model: Path, store: Path, tmp_path: Path) -> None:
    lines = run(config(tiny_model, store, tmp_path / "run", steps=6, checkpoint_every=3))
    steps = [m for m in lines if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 7))
    assert sum(m["loss"] for m in steps[-3:]) / 3 < steps[0]["loss"] - 0.5
    val = [m["val_loss"] for m in lines if "val_loss" in m]
    assert val[0] == lines[0]["val_loss"] and lines[0]["step"] == 0  # scored before the first step
    assert min(val) < val[0] - 0.5
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    curves = read_tensorboard(tmp_path / "run")  # the same numbers, in TensorBoard
    assert curves["loss"] == [(m["step"], pytest.approx(m["loss"])) for m in steps]
    assert [step for step, _ in curves["val_loss"]] == [m["step"] for m in lines if "val_loss" in m]


def test_only_loss_mask_tokens_are_targets(tiny_model: Path, store: Path) -> None:
    trajectories = [t for t in TrajectoryStore(store) if t.signals.get("success") == 1.0][:4]
    samples = [sample_of(t, 1.0) for t in trajectories]
    model = load_causal_lm(str(tiny_model))
    learner = Learner(model, LearnerConfig(precision="fp32", micro_batch_size=4, share_prefix=False, lr=1e-3))

    # the loss is -mean log p over loss-mask targets, from one plain forward pass
    batch = collate(samples, learner.pad_id)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logp = torch.log_softmax(logits, -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    mask = batch.mask.bool()
    expected = float(-logp[mask].mean().detach())
    assert nll(learner, samples) == pytest.approx(expected, rel=1e-5)
    assert 0 < mask.sum() < (batch.attention_mask.sum() - len(samples))  # prompt and environment tokens are context

    # a target outside the mask (prompt, environment, template) does not reach the loss or its gradient
    def loss_and_grads(b: Collated) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float()
        lp = torch.log_softmax(out, -1).gather(-1, b.targets.unsqueeze(-1)).squeeze(-1)
        loss = -(lp * b.mask).sum() / b.mask.sum()
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters()]

    from gymbox.agent.learner import forward

    changed_targets = torch.where(mask, batch.targets, (batch.targets + 7) % model.config.vocab_size)
    changed = Collated(batch.input_ids, batch.attention_mask, changed_targets, batch.mask, batch.advantages,
                       batch.logprobs)
    assert torch.equal(forward.logprobs(model, batch)[mask], forward.logprobs(model, changed)[mask])
    (l1, g1), (l2, g2) = loss_and_grads(batch), loss_and_grads(changed)
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))

    # micro-batches change memory, never the update: 4 x 1 equals 1 x 4
    results = []
    for micro in (1, 4):
        one = Learner(load_causal_lm(str(tiny_model)), LearnerConfig(precision="fp32", micro_batch_size=micro,
                                                                     lr=1e-3))
        stats = sft_step(one, samples)
        results.append((stats.loss, {k: v.detach().clone() for k, v in one.model.named_parameters()}))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for name, value in results[0][1].items():
        assert torch.allclose(value, results[1][1][name], atol=1e-6), name


@pytest.mark.parametrize("adapters", [None, {"rank": 4, "dropout": 0.1}], ids=["full", "lora"])
def test_resume_continues_from_a_checkpoint(tiny_model: Path, store: Path, tmp_path: Path,
                                            adapters: dict[str, Any] | None) -> None:
    settings = {"validation_fraction": 0, "select": "last", "lora": adapters, "merge": False}
    run(config(tiny_model, store, tmp_path / "straight", steps=3, **settings))
    run(config(tiny_model, store, tmp_path / "resumed", steps=2, **settings))  # stopped after step 2's checkpoint
    lines = run(config(tiny_model, store, tmp_path / "resumed", steps=3, **settings))
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3]  # step 3 only, after the first run
    straight, resumed = weights(tmp_path / "straight" / "final"), weights(tmp_path / "resumed" / "final")
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_filters_choose_the_demonstrations(store: Path) -> None:
    records = list(TrajectoryStore(store))
    assert {t.task.split for t in records} == {"train", "test"}

    def kept(**data: Any) -> list[Trajectory]:
        cfg = SFTConfig.model_validate({"stores": [str(store)], "data": data})
        return select(records, cfg.data, cfg.max_tokens)[0]

    default, left_out = select(records, SFTConfig(stores=[store]).data, 2048)
    assert default and all(t.task.split == "train" and t.signals["success"] == 1.0 for t in default)
    assert left_out["test split"] == sum(t.task.split == "test" for t in records)
    assert left_out["not successful"] == sum(t.task.split == "train" and t.signals["success"] == 0 for t in records)
    failures = kept(successful_only=False)
    assert len(failures) > len(default) and any(t.signals["success"] == 0 for t in failures)
    assert kept(successful_only=False, min_reward=1.0) == default
    assert kept(envs=["toolcall"]) == [] and kept(envs=["echo@v1"]) == default
    with_test = kept(splits=["train", "test"], allow_test_split=True)
    assert {t.task.split for t in with_test} == {"train", "test"}
    assert select(records, SFTConfig(stores=[store]).data, 100)[1]["longer than max_tokens 100"] == len(default)


@pytest.mark.parametrize(("data", "message"), [
    ({"data": {"splits": ["train", "test"]}}, "allow_test_split: true"),
    ({"data": {"splits": ["test"]}}, "held-out evaluation uses"),
    ({"data": {"allow_test_split": True}}, "does not name 'test'"),
    ({"epochs": 2, "steps": 3}, "not both"),
    ({"learner": {"kl_coef": 0.1}}, "no reference model"),
    ({"learner": {"minibatches": 2}}, "batch_size"),
    ({"validation_fraction": 0, "select": "best"}, "select: last"),
    ({"stores": []}, "at least 1"),
    ({"lora": {"rank": 0}}, "greater than or equal to 1"),
])
def test_bad_combinations_are_refused_at_config_time(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text(json.dumps({"stores": ["somewhere"], **data}))
    with pytest.raises(SFTConfigError, match=message):
        SFTConfig.load(path)


def test_the_command_line_refuses_the_test_split_and_empty_stores(store: Path, tmp_path: Path) -> None:
    from gymbox.harness.cli import main

    def code(config: dict[str, Any]) -> int:
        path = tmp_path / "sft.yaml"
        path.write_text(json.dumps({"stores": [str(store)], "out": str(tmp_path / "out"), **config}))
        with pytest.raises(SystemExit) as exit_:
            main(["sft", str(path)])
        return int(exit_.value.code)

    assert code({"data": {"splits": ["test"]}}) == 2
    assert code({"data": {"envs": ["alfworld"]}}) == 2  # nothing passes: said before any model loads
    with pytest.raises(NoDemonstrations, match="environment echo@v1"):
        SFTRun(SFTConfig(stores=[store], data={"envs": ["alfworld"]}), console=Console(file=io.StringIO()))


def test_lora_trains_only_adapters_and_the_merged_model_gives_the_adapted_logits(tiny_model: Path, store: Path,
                                                                                  tmp_path: Path) -> None:
    from peft import PeftModel

    cfg = config(tiny_model, store, tmp_path / "lora", steps=3, lora={"rank": 4, "alpha": 8})
    assert cfg.learner.lr == 1e-2  # given: kept (the LoRA default applies only when none is given)
    run(cfg)
    out = tmp_path / "lora"
    adapter = weights(out / "final")
    assert adapter and all("lora_" in k for k in adapter)  # the adapter alone, a small folder
    assert lora.base_of(out / "final") == str(tiny_model.resolve())

    adapted = PeftModel.from_pretrained(load_causal_lm(str(tiny_model)), str(out / "final"))
    ids = torch.tensor([next(iter(TrajectoryStore(store))).token_ids[:64]])
    with torch.no_grad():
        adapted_logits = adapted(input_ids=ids).logits
        merged_logits = load_causal_lm(str(out / "merged"))(input_ids=ids).logits
        plain_logits = load_causal_lm(str(tiny_model))(input_ids=ids).logits
    assert torch.allclose(adapted_logits, merged_logits, atol=1e-5)
    assert not torch.allclose(plain_logits, merged_logits, atol=1e-3)  # the adapters did change the model

    # a LoRA learner's step moves adapter weights only
    model = lora.apply_lora(load_causal_lm(str(tiny_model)), lora.LoraSettings(rank=4, alpha=8))
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    learner = Learner(model, LearnerConfig(lr=1e-2, precision="fp32"))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    samples = [sample_of(t, 1.0) for t in TrajectoryStore(store) if t.signals.get("success") == 1.0][:2]
    sft_step(learner, samples)
    sft_step(learner, samples)
    for name, value in model.named_parameters():
        moved = not torch.equal(value, start[name])
        assert moved == ("lora_" in name), name


def test_models_merge_writes_the_same_merged_model(tiny_model: Path, store: Path, tmp_path: Path) -> None:
    from gymbox.harness.cli import main

    run(config(tiny_model, store, tmp_path / "lora", steps=2, lora={"rank": 4}, merge=False))
    assert not (tmp_path / "lora" / "merged").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["models", "merge", str(tmp_path / "lora" / "final"), "--out", str(tmp_path / "merged")])
    assert exit_.value.code == 0
    merged = weights(tmp_path / "merged")
    assert not any("lora_" in k for k in merged) and "model.embed_tokens.weight" in merged
    with pytest.raises(SystemExit) as exit_:
        main(["models", "merge", str(tiny_model), "--out", str(tmp_path / "again")])
    assert exit_.value.code == 2  # a model folder is not an adapter
