"""The task specification: what one episode is asked to do, and within which limits."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """Limits of one episode; reaching one ends the episode with `truncated`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(default=20, ge=1, description="turns the agent may take (steps, and replies a harness "
                           "answered itself)")
    max_seconds: float = Field(default=600.0, gt=0, description="time the environment spends on the whole "
                               "episode (reset and steps; not the time the agent takes between them)")
    step_seconds: float = Field(default=60.0, gt=0, description="wall time of one environment step")


class TaskSpec(BaseModel):
    """One task: the environment that runs it, what the agent is told, and the environment's own payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=256)
    env: str = Field(min_length=1, description="environment id, optionally versioned: 'toolcall' or 'toolcall@v1'")
    instruction: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, description="environment-specific task data")
    seed: int | None = Field(default=None, description="the task's own seed; the episode seed is derived from it")
    limits: Limits = Field(default_factory=Limits)
    network: bool = Field(default=False, description="the episode needs network access (container environments)")
    category: str = ""
    split: str = ""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from (base seed, task id, sample index, ...): stable across processes and machines."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
