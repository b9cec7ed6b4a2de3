"""Policies without a model: a scripted one (a function of the conversation) and one replaying a trajectory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from gymbox.agent.policy import Completion, FinishReason, Policy, PolicyError, Prompt, Sampling, check_room
from gymbox.environments.api.models import Message

Script = Callable[[list[Message], int], str]


def assistant_turns(messages: Sequence[Message]) -> int:
    """How many assistant turns the conversation already has: the index of the turn to generate."""
    return sum(m.role == "assistant" for m in messages)


class ScriptedPolicy(Policy):
    """Answers with `script(messages, turn)`, or the turn-th string of a list (the last one repeats).

    With a tokenizer it behaves as a token policy: its reply is encoded (plus the end-of-sequence token, as a
    model ends a turn) and every token gets logprob 0.0; `delay` simulates generation time.
    """

    def __init__(self, script: Script | Sequence[str], *, name: str = "scripted", tokenizer: Any = None,
                 max_model_len: int | None = None, delay: float = 0.0) -> None:
        if not callable(script):
            replies = list(script)
            if not replies:
                raise ValueError("a scripted policy needs at least one reply")
            script = _from_list(replies)
        self.script = script
        self.name = name
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.delay = delay

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        started = time.perf_counter()
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self.script(prompt.messages, assistant_turns(prompt.messages))
        return encode_reply(text, prompt, sampling, tokenizer=self.tokenizer, max_model_len=self.max_model_len,
                            started=started)


def encode_reply(text: str, prompt: Prompt, sampling: Sampling, *, tokenizer: Any, max_model_len: int | None,
                 started: float) -> Completion:
    """A written reply as a model's generation: with a tokenizer, its tokens plus end-of-sequence (as a model ends a
    turn), each with logprob 0.0, cut at the room the sampling and the context leave; else the text alone."""
    if tokenizer is None:
        return Completion(text=text, seconds=time.perf_counter() - started)
    prompt_tokens = len(prompt.token_ids or [])
    check_room(prompt_tokens, max_model_len)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    room = sampling.max_tokens if max_model_len is None else min(sampling.max_tokens, max_model_len - prompt_tokens)
    finish: FinishReason = "stop"
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if len(ids) > room:
        ids, finish = ids[:room], "length"
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return Completion(text=text, token_ids=ids, logprobs=[0.0] * len(ids), finish_reason=finish,
                      prompt_tokens=prompt_tokens, seconds=time.perf_counter() - started)


def _from_list(replies: list[str]) -> Script:
    def script(messages: list[Message], turn: int) -> str:
        return replies[min(turn, len(replies) - 1)]
    return script


class ReplayPolicy(Policy):
    """Gives back a recorded episode's generations turn by turn: text, token ids and logprobs as recorded.

    A turn the recording cut at a token limit (generated to the limit, never executed) comes back with finish
    reason `length`, so that the episode loop stops there again rather than executing it.
    """

    def __init__(self, turns: Sequence[Completion], *, name: str = "replay", tokenizer: Any = None,
                 max_model_len: int | None = None) -> None:
        self.turns = list(turns)
        self.name = name
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len

    @classmethod
    def from_trajectory(cls, trajectory: Any, *, tokenizer: Any = None,
                        max_model_len: int | None = None) -> ReplayPolicy:
        """The generations of a `Trajectory`, only the generated tokens of each turn (loss mask 1)."""
        turns = []
        for turn in trajectory.turns:
            ids = [t for t, m in zip(turn.token_ids, turn.loss_mask, strict=True) if m]
            logprobs = [lp for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True) if m]
            turns.append(Completion(text=turn.text, token_ids=ids,
                                    logprobs=None if any(lp is None for lp in logprobs) else logprobs))
        if cut_by_tokens(trajectory):
            turns[-1].finish_reason = "length"
        return cls(turns, name=f"replay:{trajectory.id}", tokenizer=tokenizer, max_model_len=max_model_len)

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        turn = assistant_turns(prompt.messages)
        if turn >= len(self.turns):
            raise PolicyError(f"the recorded episode has {len(self.turns)} turns; turn {turn} was asked for "
                              "(the environment answered differently from the recording)")
        recorded = self.turns[turn]
        return Completion(text=recorded.text, token_ids=list(recorded.token_ids), logprobs=recorded.logprobs,
                          finish_reason=recorded.finish_reason, prompt_tokens=len(prompt.token_ids or []))


TOKEN_LIMITS = ("context", "max_tokens")  # the harness limits that cut a generation before it is executed


def cut_by_tokens(trajectory: Any) -> bool:
    """Whether a trajectory's last turn was generated up to a token limit and never executed (no answer)."""
    turns = trajectory.turns
    return bool(trajectory.truncated and trajectory.truncated_by in TOKEN_LIMITS and turns
                and not turns[-1].observation and not turns[-1].terminated and not turns[-1].truncated)
