"""The HTTP policy against a real `vllm serve` of SmolLM2-135M-Instruct (tokens and chat modes), and its failures."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from gymbox.agent.chat import ChatFormatter, ChatSequence
from gymbox.agent.models import DEFAULT_MODEL, default_model_path
from gymbox.agent.openai_policy import OpenAIPolicy
from gymbox.agent.policy import ContextExceeded, PolicyError, Prompt, Sampling
from gymbox.agent.vllm_server import free_port, vllm_server
from gymbox.environments.api.models import Message
from tests.weights import flat_weights

MAX_MODEL_LEN = 2048
FRANCE = [Message(role="user", content="What is the capital of France?")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vllm serve` of the base model on a loopback port with the CPU settings; its base URL."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    # Development endpoints on: a trainer reloads weights through /collective_rpc.
    with vllm_server("base", log, name=DEFAULT_MODEL, max_model_len=MAX_MODEL_LEN,
                     env={"VLLM_SERVER_DEV_MODE": "1"}) as url:
        yield url


@pytest.fixture(scope="module")
def tokens_policy(server: str) -> OpenAIPolicy:
    return OpenAIPolicy(server, mode="tokens")


@pytest.fixture(scope="module")
def chat_policy(server: str) -> OpenAIPolicy:
    return OpenAIPolicy(server)  # model None: the server's first model


@pytest.mark.slow
def test_the_model_and_its_context_come_from_the_server(tokens_policy: OpenAIPolicy,
                                                        chat_policy: OpenAIPolicy) -> None:
    assert tokens_policy.name == chat_policy.name == DEFAULT_MODEL
    assert tokens_policy.max_model_len == MAX_MODEL_LEN and chat_policy.tokenizer is None
    assert tokens_policy.describe()["tokenizer"] == str(default_model_path())


@pytest.mark.slow
async def test_tokens_mode_returns_the_ids_and_logprobs_of_the_text(tokens_policy: OpenAIPolicy) -> None:
    ids = ChatSequence(ChatFormatter(tokens_policy.tokenizer)).start(
        [Message(role="user", content="Write a long story about a lighthouse.")])
    sampling = Sampling(max_tokens=16, seed=11)
    first, again = await tokens_policy.generate(Prompt(token_ids=ids), sampling), \
        await tokens_policy.generate(Prompt(token_ids=ids), sampling)
    assert first.token_ids and first.token_ids == again.token_ids
    assert tokens_policy.tokenizer.decode(first.token_ids, skip_special_tokens=True) == first.text
    assert first.logprobs is not None and len(first.logprobs) == len(first.token_ids)
    assert all(math.isfinite(lp) and lp <= 0 for lp in first.logprobs)
    assert first.finish_reason == "length" and len(first.token_ids) == 16 and first.prompt_tokens == len(ids)


@pytest.mark.slow
async def test_tokens_mode_answers_through_the_chat_template(tokens_policy: OpenAIPolicy) -> None:
    ids = ChatSequence(ChatFormatter(tokens_policy.tokenizer)).start(FRANCE)
    completion = await tokens_policy.generate(Prompt(token_ids=ids), Sampling(max_tokens=32, temperature=0.0))
    assert "Paris" in completion.text


@pytest.mark.slow
async def test_tokens_mode_context_is_checked_here_and_by_the_server(tokens_policy: OpenAIPolicy) -> None:
    too_long = Prompt(token_ids=[504] * (MAX_MODEL_LEN + 10))
    with pytest.raises(ContextExceeded):
        await tokens_policy.generate(too_long, Sampling())
    unchecked = OpenAIPolicy(tokens_policy.base_url, mode="tokens")
    unchecked.max_model_len = None  # skip the local check: the server's 400 must become ContextExceeded too
    with pytest.raises(ContextExceeded) as caught:
        await unchecked.generate(too_long, Sampling())
    assert caught.value.max_model_len == MAX_MODEL_LEN and caught.value.prompt_tokens == MAX_MODEL_LEN + 10
    await unchecked.close()


@pytest.mark.slow
async def test_chat_mode_gives_text_only(chat_policy: OpenAIPolicy) -> None:
    completion = await chat_policy.generate(Prompt(messages=FRANCE), Sampling(max_tokens=32, temperature=0.0))
    assert "Paris" in completion.text
    assert completion.token_ids == [] and completion.logprobs is None and completion.prompt_tokens > 0
    short = await chat_policy.generate(Prompt(messages=FRANCE), Sampling(max_tokens=2, seed=1))
    assert short.finish_reason == "length"


@pytest.mark.slow
async def test_chat_mode_too_long_prompt_is_context_exceeded(chat_policy: OpenAIPolicy) -> None:
    long = [Message(role="user", content="hello " * (MAX_MODEL_LEN + 100))]
    with pytest.raises(ContextExceeded, match="context"):
        await chat_policy.generate(Prompt(messages=long), Sampling())


@pytest.mark.slow
async def test_server_errors_are_quoted(chat_policy: OpenAIPolicy) -> None:
    wrong = OpenAIPolicy(chat_policy.base_url, model="no-such-model")
    with pytest.raises(PolicyError, match=r"404.*no-such-model"):
        await wrong.generate(Prompt(messages=FRANCE), Sampling(max_tokens=2))
    await wrong.close()


async def test_an_unreachable_server_is_a_policy_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    policy = OpenAIPolicy(url, model="m", max_retries=2)
    waits: list[float] = []
    sleep = asyncio.sleep

    async def recorded(delay: float, *args: object) -> None:
        waits.append(delay)
        await sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    with pytest.raises(PolicyError, match=rf"{url}/v1/chat/completions after 3 tries"):
        await policy.generate(Prompt(messages=FRANCE), Sampling())
    monkeypatch.undo()
    assert waits == [0.5, 1.0]  # a backoff before each retry, doubling
    await policy.close()
    with pytest.raises(PolicyError, match=rf"{url}/v1/models after 1 try"):
        OpenAIPolicy(url, mode="tokens", max_retries=0)


async def test_a_server_serves_new_weights_after_load_weights(tokens_policy: OpenAIPolicy, tmp_path: Path) -> None:
    flat = flat_weights(tokens_policy.tokenizer_path or str(default_model_path()), tmp_path)
    prompt = Prompt(token_ids=ChatSequence(ChatFormatter(tokens_policy.tokenizer)).start(
        [Message(role="user", content="Write a story about a cat.")]))
    before = await tokens_policy.generate(prompt, Sampling(max_tokens=8, seed=3))
    try:
        await tokens_policy.load_weights(str(flat.path), "flat")
        after = await tokens_policy.generate(prompt, Sampling(max_tokens=8, seed=3))
        assert tokens_policy.weights_version == "flat"
        assert after.logprobs == pytest.approx([-math.log(flat.vocab)] * len(after.token_ids), abs=1e-3)
    finally:
        await tokens_policy.load_weights(str(default_model_path()), "0")
    again = await tokens_policy.generate(prompt, Sampling(max_tokens=8, seed=3))
    assert again.token_ids == before.token_ids
