"""The transformers `generate` policy keeps the token-policy contract with the real default model: batched calls
give what single calls give, log-probs are the model's, stop strings and budgets end turns, weights reload, and
the default policy solves echo tasks through the episode loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from gymbox.agent.hf_policy import HFPolicy
from gymbox.agent.policy import PolicyError, Prompt, Sampling
from gymbox.agent.spec import PolicySpec

pytestmark = pytest.mark.slow  # loads SmolLM2-135M and generates on the CPU (about a minute)

GREEDY = Sampling(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def policy(smollm2: Path) -> HFPolicy:
    return PolicySpec.parse("hf:base", max_model_len=512).build()  # type: ignore[return-value]


def _prompts(policy: HFPolicy) -> list[Prompt]:
    questions = ["What is the capital of France?", "Name a prime number larger than ten.", "Say hello."]
    return [Prompt(token_ids=policy.tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                                                  add_generation_prompt=True, tokenize=True,
                                                                  return_dict=False))
            for q in questions]


def test_batched_calls_give_what_single_calls_give(policy: HFPolicy) -> None:
    prompts = _prompts(policy)

    async def together() -> list:
        return await asyncio.gather(*(policy.generate(p, GREEDY) for p in prompts))

    async def alone() -> list:
        return [await policy.generate(p, GREEDY) for p in prompts]

    batched, single = asyncio.run(together()), asyncio.run(alone())
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]  # left padding changes nothing
    assert "Paris" in batched[0].text
    for c in batched:
        assert len(c.token_ids) == len(c.logprobs) <= GREEDY.max_tokens and c.prompt_tokens > 0


def test_logprobs_are_the_models_own_at_the_sampled_tokens(policy: HFPolicy) -> None:
    prompt = _prompts(policy)[1]
    done = asyncio.run(policy.generate(prompt, Sampling(max_tokens=10, temperature=1.0, seed=3)))
    ids = torch.tensor([prompt.token_ids + done.token_ids])
    with torch.no_grad():
        logits = policy.model(input_ids=ids).logits[0, len(prompt.token_ids) - 1: -1]
    expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(done.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(done.logprobs), expected, atol=1e-4)
    again = asyncio.run(policy.generate(prompt, Sampling(max_tokens=10, temperature=1.0, seed=3)))
    assert again.token_ids == done.token_ids  # a seeded request is reproducible


def test_budgets_and_stop_strings_end_a_turn(policy: HFPolicy) -> None:
    prompt = _prompts(policy)[0]
    cut = asyncio.run(policy.generate(prompt, Sampling(max_tokens=3, temperature=0.0)))
    assert cut.finish_reason == "length" and len(cut.token_ids) == 3
    full = asyncio.run(policy.generate(prompt, Sampling(max_tokens=64, temperature=0.0)))
    assert full.finish_reason == "stop" and full.token_ids[-1] == policy.tokenizer.eos_token_id
    stopped = asyncio.run(policy.generate(prompt, Sampling(max_tokens=64, temperature=0.0, stop=["Paris"])))
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    assert full.text.startswith(stopped.text) and len(stopped.token_ids) < len(full.token_ids)


def test_weights_reload_in_place_and_a_bad_folder_changes_nothing(policy: HFPolicy, tmp_path: Path) -> None:
    prompt = _prompts(policy)[0]
    before = asyncio.run(policy.generate(prompt, GREEDY)).token_ids
    original = {k: v.clone() for k, v in policy.model.state_dict().items()}
    (tmp_path / "bad").mkdir()
    with pytest.raises(PolicyError, match="keeps version 0"):
        asyncio.run(policy.load_weights(str(tmp_path / "bad"), "1"))
    assert policy.weights_version == "0"
    changed = policy.model.__class__(policy.model.config)  # random weights: it answers something else
    changed.save_pretrained(tmp_path / "v1")
    asyncio.run(policy.load_weights(str(tmp_path / "v1"), "1"))
    assert policy.weights_version == "1"
    assert asyncio.run(policy.generate(prompt, GREEDY)).token_ids != before
    policy.model.load_state_dict(original)  # the module's other tests see the real model


def test_the_default_policy_solves_echo_tasks_through_the_episode_loop(smollm2: Path) -> None:
    from gymbox.environments.runtime import LocalRuntime
    from gymbox.harness.episode import EpisodeConfig
    from gymbox.harness.rollout import play_all
    from gymbox.tasks import load_suite

    default = PolicySpec.parse("hf:default", max_model_len=2048).build()
    tasks = load_suite("echo-demo:test").tasks[:3]

    async def play() -> list:
        async with LocalRuntime("echo") as rt:
            return await play_all(rt, tasks, default, group_size=1,
                                  config=EpisodeConfig(sampling=Sampling(max_tokens=128, temperature=0.0)))

    done = asyncio.run(play())
    assert sum(t.signals.get("success", 0) for t in done) >= 2
    assert {t.provenance.policy for t in done} == {"hf:SmolLM2-135M-Instruct-echo-sft"}
    assert all(t.turns[0].token_ids and t.turns[0].logprobs for t in done)  # token-accurate, as with vLLM
