"""LoRA in the GRPO learner: an update moves the adapters and nothing else, what the policy is given is base +
adapters merged (as peft merges them), and a checkpoint of the adapters resumes the same learner."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from gymbox.agent.learner import checkpoint, lora
from gymbox.agent.learner.batch import Sample
from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.learner import Learner
from gymbox.agent.models import load_causal_lm

SETTINGS = lora.LoraSettings(rank=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
CONFIG = LearnerConfig(lr=1e-2, micro_batch_size=4, precision="fp32", old_logprobs="recompute")


def _samples(n: int = 4, length: int = 24, prompt: int = 10) -> list[Sample]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        advantage = 1.0 if i % 2 else -1.0
        mask = [0] * prompt + [1] * (length - prompt)
        out.append(Sample(token_ids=[rng.randrange(100, 5000) for _ in range(length)], mask=mask,
                          advantages=[advantage * m for m in mask], logprobs=[None] * length, source=f"s{i}"))
    return out


def _plain(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_an_update_moves_only_the_adapters(tiny_model: Path) -> None:
    learner = Learner.from_pretrained(str(tiny_model), CONFIG, lora=SETTINGS, seed=0)
    before = _plain(learner.model)
    trainable = {n for n, p in learner.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    learner.update(_samples())
    after = _plain(learner.model)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all("lora_" in k for k in moved)  # the frozen weights are bit-for-bit the same
    assert any("lora_B" in k for k in moved)  # B starts at 0: the merged model now differs from the base


def test_the_served_weights_are_base_plus_adapters_and_the_adapters_stay_apart(tiny_model: Path,
                                                                                tmp_path: Path) -> None:
    import copy

    learner = Learner.from_pretrained(str(tiny_model), CONFIG, lora=SETTINGS, seed=0)
    learner.update(_samples())
    frozen = _plain(learner.model)
    lora.save_servable(learner.model, tmp_path / "served")
    assert _plain(learner.model).keys() == frozen.keys()
    assert all(torch.equal(frozen[k], v) for k, v in _plain(learner.model).items())  # merging left no trace
    served = load_causal_lm(str(tmp_path / "served"), torch.float32)
    assert not any("lora" in k for k in served.state_dict())
    reference = lora.merged(copy.deepcopy(learner.model))  # peft's own merge
    ids = torch.tensor([_samples()[0].token_ids])
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        assert torch.allclose(served(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(learner.model(input_ids=ids).logits, expected, atol=1e-5)
        base = load_causal_lm(str(tiny_model), torch.float32)
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-5)


def test_an_adapter_checkpoint_resumes_the_same_learner(tiny_model: Path, tmp_path: Path) -> None:
    learner = Learner.from_pretrained(str(tiny_model), CONFIG, lora=SETTINGS, seed=0)
    learner.update(_samples())
    saved = checkpoint.save(learner, tmp_path / "checkpoints", extra={"step": 1})
    assert lora.is_adapter(saved / "model") and not (saved / "model" / "model.safetensors").exists()
    again, extra = checkpoint.resume(saved, str(tiny_model), CONFIG, lora=SETTINGS)
    assert extra == {"step": 1} and again.step == learner.step
    for (name, a), (_, b) in zip(learner.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    learner.update(_samples())  # and both go on to the same next update
    again.update(_samples())
    for (name, a), (_, b) in zip(learner.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-7), name


def test_an_adapter_folder_is_refused_as_a_policy_model_with_how_to_merge(tiny_model: Path, tmp_path: Path) -> None:
    from gymbox.agent.models import ModelUnavailable, resolve_model

    learner = Learner.from_pretrained(str(tiny_model), CONFIG, lora=SETTINGS, seed=0)
    learner.model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ModelUnavailable, match=r"gymbox models merge .*adapter --out DIR"):
        resolve_model(tmp_path / "adapter")
