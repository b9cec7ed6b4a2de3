"""The in-process vLLM policy against the real engine on SmolLM2-135M-Instruct (one engine start, about 50 s)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gymbox.agent.chat import ChatFormatter, ChatSequence
from gymbox.agent.policy import ContextExceeded, PolicyError, Prompt, Sampling
from gymbox.agent.vllm_policy import VLLMPolicy
from gymbox.environments.api.models import Message
from tests.weights import flat_weights

pytestmark = pytest.mark.slow

MAX_MODEL_LEN = 2048
TOPICS = ["a cat", "the sea", "a robot", "winter"]


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[VLLMPolicy, list[psutil.Process]]]:
    """One engine for the module, with the processes it started; shut down (and checked gone) at module end."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    policy = VLLMPolicy("base", max_model_len=MAX_MODEL_LEN, kv_cache_gib=1)  # the wrapper, on the base model
    # multiprocessing's resource tracker, started with the first engine of this process, lives as long as we do.
    processes = [p for p in psutil.Process().children(recursive=True)
                 if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())]
    yield policy, processes
    asyncio.run(policy.close())
    asyncio.run(policy.close())  # idempotent
    _, alive = psutil.wait_procs(processes, timeout=15)
    assert not alive, f"engine processes left running: {alive}"


@pytest.fixture
def policy(engine: tuple[VLLMPolicy, list[psutil.Process]]) -> VLLMPolicy:
    return engine[0]


def chat_ids(policy: VLLMPolicy, text: str) -> list[int]:
    return ChatSequence(ChatFormatter(policy.tokenizer)).start([Message(role="user", content=text)])


def story(policy: VLLMPolicy, topic: str) -> Prompt:
    return Prompt(token_ids=chat_ids(policy, f"Write a long story about {topic}."))


async def test_tokens_decode_to_the_text_with_one_logprob_each(policy: VLLMPolicy) -> None:
    prompt = story(policy, "a lighthouse")
    completion = await policy.generate(prompt, Sampling(max_tokens=24, seed=1))
    assert completion.token_ids
    assert policy.tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text
    assert completion.logprobs is not None and len(completion.logprobs) == len(completion.token_ids)
    assert all(math.isfinite(lp) and lp <= 0 for lp in completion.logprobs)
    assert completion.prompt_tokens == len(prompt.token_ids or [])
    assert completion.finish_reason in ("stop", "length") and completion.seconds > 0


async def test_a_seed_fixes_the_sample_and_other_seeds_differ(policy: VLLMPolicy) -> None:
    prompts = [story(policy, topic) for topic in TOPICS]

    async def sample(seed: int) -> list[list[int]]:
        done = await asyncio.gather(*[policy.generate(p, Sampling(max_tokens=12, seed=seed)) for p in prompts])
        return [c.token_ids for c in done]

    first, again, other = await sample(7), await sample(7), await sample(8)
    assert first == again
    assert first != other  # twelve tokens at temperature 1 on four prompts: a collision on all is implausible


async def test_logprobs_are_of_the_distribution_sampled_from(policy: VLLMPolicy) -> None:
    # At temperature 0.5 a token was drawn with probability softmax(z / 0.5), not softmax(z): the learner's
    # importance weights need the former (vLLM's "processed" log-probs, not its default raw ones).
    import torch

    from gymbox.agent.learner.loss import token_logprobs
    from gymbox.agent.models import load_causal_lm

    prompt = story(policy, "a river")
    completion = await policy.generate(prompt, Sampling(max_tokens=24, temperature=0.5, seed=5))
    ids = list(prompt.token_ids or []) + completion.token_ids
    with torch.no_grad():
        logits = load_causal_lm(policy.model_path, torch.float32)(torch.tensor([ids])).logits[0].float()
    at = slice(len(ids) - len(completion.token_ids) - 1, len(ids) - 1)
    targets = torch.tensor(completion.token_ids)
    got = torch.tensor(completion.logprobs or [])
    tempered = (got - token_logprobs(logits[at] / 0.5, targets)).abs().mean()
    raw = (got - token_logprobs(logits[at], targets)).abs().mean()
    assert tempered < raw / 4, (float(tempered), float(raw))


async def test_temperature_zero_is_deterministic(policy: VLLMPolicy) -> None:
    prompt = story(policy, "a garden")
    greedy = Sampling(max_tokens=16, temperature=0.0)
    first, second = await policy.generate(prompt, greedy), await policy.generate(prompt, greedy)
    assert first.token_ids == second.token_ids and first.text == second.text


async def test_max_tokens_ends_with_length(policy: VLLMPolicy) -> None:
    completion = await policy.generate(story(policy, "a dragon"), Sampling(max_tokens=5, seed=3))
    assert completion.finish_reason == "length"
    assert len(completion.token_ids) == len(completion.logprobs or []) == 5


async def test_prompts_vllm_cannot_take_are_policy_errors(policy: VLLMPolicy) -> None:
    with pytest.raises(ContextExceeded):
        await policy.generate(Prompt(token_ids=[504] * MAX_MODEL_LEN), Sampling())
    with pytest.raises(PolicyError, match="token_ids"):
        await policy.generate(Prompt(messages=[Message(role="user", content="hi")]), Sampling())
    for bad in ([], [len(policy.tokenizer) + 10]):  # refused by vLLM, the engine lives on
        with pytest.raises(PolicyError, match="vLLM failed this request"):
            await policy.generate(Prompt(token_ids=bad), Sampling(max_tokens=2))


async def test_concurrent_requests_are_batched(policy: VLLMPolicy) -> None:
    # Sixteen concurrent generations are in the engine together, and its scheduler may run them as one batch:
    # they are not queued one by one in the policy. (How much faster that is, is a benchmark's business.)
    prompts = [story(policy, f"{topic} {i}") for i in range(4) for topic in TOPICS]
    assert policy._engine.vllm_config.scheduler_config.max_num_seqs >= len(prompts)
    tasks = [asyncio.create_task(policy.generate(p, Sampling(max_tokens=32, seed=i, ignore_eos=True)))
             for i, p in enumerate(prompts)]
    together = 0
    deadline = time.monotonic() + 60
    while together < len(prompts) and not any(t.done() for t in tasks) and time.monotonic() < deadline:
        together = max(together, policy._engine.get_num_unfinished_requests())
        await asyncio.sleep(0.005)
    done = await asyncio.gather(*tasks)
    assert together == len(prompts), f"at most {together} of {len(prompts)} requests were in the engine at once"
    assert all(len(c.token_ids) == 32 for c in done)


async def test_seeded_prompts_beyond_one_step_budget(policy: VLLMPolicy) -> None:
    # Two seeded prompts over the 2048-token step budget: with chunked prefill the second is split and vLLM's
    # CPU sampler crashes the engine (see VLLMPolicy); here both must simply complete.
    prompts = [Prompt(token_ids=[1] + [504 + i] * 1100) for i in range(2)]
    done = await asyncio.gather(*[policy.generate(p, Sampling(max_tokens=2, seed=i)) for i, p in enumerate(prompts)])
    assert [len(c.token_ids) for c in done] == [2, 2]


async def engine_busy(policy: VLLMPolicy, timeout: float = 30.0) -> None:
    """Wait until the engine holds a request (it is generating)."""
    deadline = time.monotonic() + timeout
    while not policy._engine.get_num_unfinished_requests():
        assert time.monotonic() < deadline, f"no request reached the engine within {timeout} s"
        await asyncio.sleep(0.02)


async def test_cancelling_a_generation_aborts_it_in_the_engine(policy: VLLMPolicy) -> None:
    task = asyncio.create_task(policy.generate(story(policy, "a castle"), Sampling(max_tokens=1000, seed=5)))
    await engine_busy(policy)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while policy._engine.get_num_unfinished_requests() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert policy._engine.get_num_unfinished_requests() == 0
    completion = await policy.generate(story(policy, "a castle"), Sampling(max_tokens=4, seed=5))
    assert len(completion.token_ids) == 4


async def test_smollm2_answers_through_the_chat_template(policy: VLLMPolicy) -> None:
    sequence = ChatSequence(ChatFormatter(policy.tokenizer))
    ids = sequence.start([Message(role="user", content="What is the capital of France?")])
    completion = await policy.generate(Prompt(token_ids=ids), Sampling(max_tokens=32, temperature=0.0))
    assert "Paris" in completion.text
    content = sequence.add_generation(completion.token_ids, completion.logprobs)
    assert "Paris" in content and sequence.token_ids == ids + completion.token_ids
    # A stop string ends the turn: the text stops before it, the tokens keep the one that completed it.
    stopped = await policy.generate(Prompt(token_ids=ids), Sampling(max_tokens=32, temperature=0.0, stop=["Paris"]))
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    assert "Paris" in policy.tokenizer.decode(stopped.token_ids)


def test_describe_names_the_engine(policy: VLLMPolicy) -> None:
    info = policy.describe()
    assert policy.name == "SmolLM2-135M-Instruct" and policy.max_model_len == MAX_MODEL_LEN
    assert info["engine"] == "vllm" and info["vllm"] and info["dtype"] == "float32" and info["dtype_reason"]
    assert info["kv_cache_gib"] == 1.0 and info["model"].endswith("SmolLM2-135M-Instruct")


async def test_new_weights_are_served_in_place_after_load_weights(policy: VLLMPolicy, tmp_path: Path) -> None:
    flat = flat_weights(policy.model_path, tmp_path)
    prompt = story(policy, "a cat")
    before = await policy.generate(prompt, Sampling(max_tokens=8, seed=3))
    try:
        await policy.load_weights(str(flat.path), "flat")
        after = await policy.generate(prompt, Sampling(max_tokens=8, seed=3))
        assert policy.weights_version == "flat" and policy.describe()["weights_version"] == "flat"
        assert after.logprobs == pytest.approx([-math.log(flat.vocab)] * len(after.token_ids), abs=1e-3)
    finally:
        await policy.load_weights(policy.model_path, "0")
    again = await policy.generate(prompt, Sampling(max_tokens=8, seed=3))
    assert again.token_ids == before.token_ids and again.logprobs == pytest.approx(before.logprobs, abs=1e-4)


async def test_weights_that_do_not_fit_are_a_policy_error(policy: VLLMPolicy, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="could not load the weights"):
        await policy.load_weights(str(tmp_path / "missing"), "1")
    assert policy.weights_version == "0"


async def test_an_engine_crash_is_a_policy_error(engine: tuple[VLLMPolicy, list[psutil.Process]]) -> None:
    """Last in the module: it kills the engine's processes, during a generation."""
    policy, processes = engine
    running = asyncio.create_task(policy.generate(story(policy, "a crash"), Sampling(max_tokens=1000)))
    await engine_busy(policy)
    for process in processes:
        process.kill()
    with pytest.raises(PolicyError, match="died"):
        await asyncio.wait_for(running, timeout=60)
    with pytest.raises(PolicyError, match="died"):
        await asyncio.wait_for(policy.generate(story(policy, "a crash"), Sampling(max_tokens=4)), timeout=60)
