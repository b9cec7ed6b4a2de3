"""The policy contract: `Policy.generate(Prompt, Sampling) -> Completion`, shared by every policy and the harness.

A token policy (it has a `tokenizer`) is given the conversation as token ids, built by the harness's
`ChatSequence`, and answers with the token ids it generated and their logprobs: that is what makes multi-turn
trajectories token-accurate. A chat-level policy (`tokenizer` is None, e.g. an OpenAI endpoint that takes only
messages) is given the messages and tools and answers with text; its trajectories carry no token ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gymbox.environments.api.models import Message, ToolSpec
from gymbox.tasks.spec import TaskSpec


class PolicyError(RuntimeError):
    """The policy could not generate; the message says why and what to change."""


class ContextExceeded(PolicyError):
    """The prompt leaves no room to generate within the model's context length."""

    def __init__(self, prompt_tokens: int, max_model_len: int) -> None:
        super().__init__(f"the prompt is {prompt_tokens} tokens and the model's context is {max_model_len}; "
                         "the episode is truncated (shorten the task or raise max_model_len)")
        self.prompt_tokens, self.max_model_len = prompt_tokens, max_model_len


class Sampling(BaseModel):
    """Sampling parameters of one generation (vLLM's names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=256, gt=0, description="most tokens generated in one turn")
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=-1, description="-1 for no top-k cut")
    seed: int | None = Field(default=None, description="per-request seed; the harness derives one per turn")
    stop: list[str] = Field(default_factory=list)
    ignore_eos: bool = Field(default=False, description="generate max_tokens whatever comes (benchmarks)")


@dataclass
class Prompt:
    """What the policy generates from: token ids for a token policy, else the messages and tools."""

    token_ids: list[int] | None = None
    messages: list[Message] = field(default_factory=list)
    tools: list[ToolSpec] = field(default_factory=list)
    task: TaskSpec | None = None  # the episode's task: an expert reads its demonstration from it; a model ignores it
    parser: str | None = None  # the episode's tool-call format (a name in `agent.parsers.PARSERS`)


FinishReason = Literal["stop", "length", "abort"]


@dataclass
class Completion:
    """One generated turn. `token_ids` and `logprobs` are empty when the policy cannot report them."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    seconds: float = 0.0


class Policy(ABC):
    """Generates assistant turns. Safe to call concurrently from many episodes: implementations batch."""

    name: str = "policy"  # recorded in every trajectory's provenance
    weights_version: str = "0"
    tokenizer: Any = None  # a Hugging Face tokenizer for token policies; None for chat-level ones
    max_model_len: int | None = None  # context length in tokens, when known

    @abstractmethod
    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        """One assistant turn for `prompt`; `ContextExceeded` when there is no room, `PolicyError` on failure."""

    async def load_weights(self, path: str, version: str) -> None:
        """Serve the weights saved (safetensors, Hugging Face layout) in folder `path` from now on, as `version`."""
        raise PolicyError(f"{type(self).__name__} cannot load new weights: train with a vLLM policy (in-process, "
                          "or a vLLM server started with VLLM_SERVER_DEV_MODE=1)")

    def healthy(self) -> bool:
        """False once the policy can never generate again (its engine died): whoever holds it starts a new one."""
        return True

    async def close(self) -> None:  # noqa: B027 (optional: most policies hold nothing to release)
        """Release engines, processes and connections (idempotent)."""

    def token_prompt(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids for a token policy: present, and leaving room to generate."""
        if prompt.token_ids is None:
            raise PolicyError(f"{type(self).__name__} is a token policy: the prompt needs token_ids (build them "
                              "with ChatSequence over policy.tokenizer)")
        ids = list(prompt.token_ids)
        check_room(len(ids), self.max_model_len)
        return ids

    def describe(self) -> dict[str, Any]:
        """What identifies this policy in provenance (model, tokenizer, engine settings)."""
        return {"name": self.name, "weights_version": self.weights_version}

    async def __aenter__(self) -> Policy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def check_room(prompt_tokens: int, max_model_len: int | None) -> None:
    """Raise `ContextExceeded` when a prompt of `prompt_tokens` leaves no token to generate."""
    if max_model_len is not None and prompt_tokens >= max_model_len:
        raise ContextExceeded(prompt_tokens, max_model_len)
