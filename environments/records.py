"""Trajectory records: what an episode did, what produced it, and how it was scored.

The low layer that rewards, the learner and the harness all read; it imports none of them.

A trajectory's token sequence is the concatenation of its turns' `token_ids`; within a turn, `loss_mask` is 1
for tokens the policy generated and 0 for prompt and environment tokens, and `logprobs` holds the policy's
log-probability of each generated token (None elsewhere). Earlier turns are never re-tokenized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.kinds import ERROR_KINDS, Kind, is_infra, kind_of
from gymbox.environments.api.models import Action, Message, ToolSpec
from gymbox.tasks.spec import TaskSpec

SCHEMA_VERSION = 1  # new fields always get defaults, so older records stay readable


class Record(BaseModel):
    # NaN and infinities would be written as null and read back as something else: refuse them up front.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Turn(Record):
    """One policy action and the environment's answer to it."""

    index: int = Field(ge=0)
    token_ids: list[int] = Field(default_factory=list)
    loss_mask: list[int] = Field(default_factory=list)
    logprobs: list[float | None] = Field(default_factory=list)
    text: str = Field(default="", description="what the policy generated")
    action: Action | None = None
    parse_error: str | None = Field(default=None, description="why no tool call could be parsed, if so")
    observation: list[Message] = Field(default_factory=list, description="the environment's answer")
    reward: float | None = None
    signals: dict[str, float] = Field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    env_seconds: float = 0.0
    policy_seconds: float = 0.0

    @model_validator(mode="after")
    def _aligned(self) -> Turn:
        if not len(self.token_ids) == len(self.loss_mask) == len(self.logprobs):
            raise ValueError(f"turn {self.index}: token_ids, loss_mask and logprobs differ in length "
                             f"({len(self.token_ids)}, {len(self.loss_mask)}, {len(self.logprobs)})")
        if any(m not in (0, 1) for m in self.loss_mask):
            raise ValueError(f"turn {self.index}: loss_mask holds values other than 0 and 1")
        return self


class EpisodeError(Record):
    """Why an episode failed. Its kind, from the table of codes (`kinds.ERROR_KINDS`), says how the rollout is
    treated: the agent's doing is scored; infrastructure is retried, then masked; a wrong request is masked."""

    code: str
    message: str
    infra: bool = Field(default=True, description="an infrastructure error: retried, then masked; for a code in "
                        "the table, the table says (an older record's flag is read as the table says now)")
    attempts: int = 1

    @model_validator(mode="before")
    @classmethod
    def _infra_from_table(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("code") in ERROR_KINDS:
            return {**data, "infra": is_infra(data["code"])}
        return data

    @property
    def kind(self) -> Kind:
        return kind_of(self.code, self.infra)

    @classmethod
    def of(cls, err: BaseException) -> EpisodeError:
        """The record of an exception that ended a try: a step API error keeps its code; anything else (Docker's
        APIError starting a container, a bug in a worker) is `runtime_error`, with its type and message."""
        if isinstance(err, EnvError):
            return cls(code=err.code, message=str(err), infra=err.infra)
        return cls(code="runtime_error", message=f"{type(err).__module__}.{type(err).__qualname__}: {err}")


class Provenance(Record):
    """What is needed to reproduce the episode."""

    env: str = Field(description="versioned environment id, e.g. toolcall@v1")
    runtime: str
    image: str | None = None
    image_digest: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    policy: str = Field(description="policy id: model name or path, or the scripted policy's name")
    weights_version: str = "0"
    sampling: dict[str, Any] = Field(default_factory=dict)
    user: str | None = Field(default=None, description="the simulated user's policy (τ²-bench tasks), whose turns "
                             "are the environment's messages: recorded, never trained on")


class Trajectory(Record):
    schema_version: int = SCHEMA_VERSION
    id: str = Field(min_length=1)
    task: TaskSpec
    group: str = Field(min_length=1, description="rollouts of one task that share an initial state form a group")
    sample: int = Field(ge=0, description="index within the group")
    base_seed: int
    seed: int = Field(description="the episode seed, derived from (base seed, task id, sample)")
    provenance: Provenance
    prompt: list[Message] = Field(default_factory=list, description="the observation after reset")
    instructions: str | None = Field(default=None, description="the tool-call format the policy was told, if any")
    tools: list[ToolSpec] = Field(default_factory=list)
    prompt_ids: list[int] = Field(default_factory=list, description="tokens of the prompt, loss mask 0")
    turns: list[Turn] = Field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    truncated_by: str | None = None
    signals: dict[str, float] = Field(default_factory=dict, description="the last turn's signals")
    rewards: dict[str, float | None] = Field(default_factory=dict, description="each reward component")
    reward: float | None = None
    turn_rewards: list[float] | None = Field(default=None, description="per-turn rewards, summing to `reward`, "
                                             "when the reward specification has per-turn components")
    error: EpisodeError | None = None
    attempts: int = Field(default=1, ge=1, description="tries it took: more than 1 after infrastructure errors")
    failed_attempts: list[EpisodeError] = Field(default_factory=list, description="why earlier tries failed")
    started_at: float | None = Field(default=None, description="wall-clock start, seconds since the epoch")
    seconds: float = Field(default=0.0, description="wall time of the episode")
    env_seconds: float = Field(default=0.0, description="time in the environment (reset, steps, grading): what "
                               "the episode's time limit counts")
    policy_seconds: float = Field(default=0.0, description="time waiting for the policy's replies, queueing "
                                  "behind other episodes included; no limit counts it")
    queue_seconds: float = Field(default=0.0, description="time waiting for an environment session before the "
                                 "episode began (the docker runtime queues episodes beyond its capacity); no "
                                 "limit counts it")

    @model_validator(mode="after")
    def _ordered(self) -> Trajectory:
        for position, turn in enumerate(self.turns):
            if turn.index != position:
                raise ValueError(f"turn at position {position} says it is turn {turn.index}")
        return self

    @property
    def masked(self) -> bool:
        """Excluded from group statistics and from the loss: its error was not the agent's doing."""
        return self.error is not None and self.error.kind.masked

    @property
    def token_ids(self) -> list[int]:
        return join_tokens(self.prompt_ids, self.turns).token_ids

    @property
    def loss_mask(self) -> list[int]:
        return join_tokens(self.prompt_ids, self.turns).loss_mask

    @property
    def logprobs(self) -> list[float | None]:
        """Aligned with `token_ids`: the policy's log-probability of each generated token, None elsewhere."""
        return join_tokens(self.prompt_ids, self.turns).logprobs


@dataclass
class TurnTokens:
    """`Turn`-compatible aligned lists: `Turn(index=i, **tokens.fields())`."""

    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)

    def add_context(self, token_ids: Sequence[int]) -> None:
        """Tokens the policy did not generate (prompt, environment, template glue): mask 0, no logprob."""
        self.token_ids.extend(token_ids)
        self.loss_mask.extend([0] * len(token_ids))
        self.logprobs.extend([None] * len(token_ids))

    def add_generated(self, token_ids: Sequence[int], logprobs: Sequence[float] | None = None) -> None:
        """Tokens the policy generated: mask 1, with their logprobs (None when the sampler gave none)."""
        if logprobs is not None and len(logprobs) != len(token_ids):
            raise ValueError(f"{len(token_ids)} generated tokens but {len(logprobs)} logprobs")
        self.token_ids.extend(token_ids)
        self.loss_mask.extend([1] * len(token_ids))
        self.logprobs.extend(list(logprobs) if logprobs is not None else [None] * len(token_ids))

    def fields(self) -> dict[str, list[Any]]:
        return {"token_ids": list(self.token_ids), "loss_mask": list(self.loss_mask),
                "logprobs": list(self.logprobs)}


def join_tokens(prompt_ids: Sequence[int], turns: Sequence[Any]) -> TurnTokens:
    """The whole sequence, prompt (mask 0) then every turn's aligned lists: what the policy saw and produced.

    `turns` holds anything with `token_ids`, `loss_mask` and `logprobs` (a `TurnTokens`, a trajectory's `Turn`).
    """
    whole = TurnTokens()
    whole.add_context(prompt_ids)
    for turn in turns:
        whole.token_ids.extend(turn.token_ids)
        whole.loss_mask.extend(turn.loss_mask)
        whole.logprobs.extend(turn.logprobs)
    return whole
