"""Learner settings: optimizer, loss, batching and precision, with the defaults of the rewards spec (section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gymbox.agent.learner.loss import Aggregation


class LearnerConfig(BaseModel):
    """How one batch of samples becomes parameter updates.

    Each batch is split into `minibatches` optimizer steps, repeated for `epochs`; each minibatch is processed
    `micro_batch_size` sequences at a time with gradient accumulation, so the micro-batch size changes memory, never
    the update. The PPO ratio is always taken against this model's own log-probs before the batch's first step
    (with a single step per batch they are the current ones, detached, at no cost): vLLM's kernels and precision
    differ from the trainer's, so a ratio against the sampler's would start away from 1. `old_logprobs` says where
    the behaviour (sampling) policy's log-probs come from: `rollout` reads vLLM's, recorded per token after
    temperature, and weighs each token's policy-gradient term by the truncated importance weight
    min(pi_old / pi_rollout, `tis_cap`) (none when `tis_cap` is None), which corrects the sampler/learner mismatch
    (Yao et al. 2025); `recompute` ignores them (no correction, no mismatch logged); `auto` is `rollout` when every
    policy token of the batch has one, else `recompute`. bf16 is autocast compute over float32 master weights.
    """

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=1e-6, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="None: no clipping")
    epochs: int = Field(default=1, ge=1)
    minibatches: int = Field(default=1, ge=1, description="optimizer steps per epoch")
    micro_batch_size: int = Field(default=4, ge=1, description="sequences per forward/backward")
    clip_low: float = Field(default=0.2, ge=0, lt=1)
    clip_high: float = Field(default=0.2, ge=0, description="0.28 for DAPO's clip-higher")
    kl_coef: float = Field(default=0.0, ge=0, description="k3 KL to the initial model; 0 loads no reference")
    aggregation: Aggregation = "token_mean"
    old_logprobs: Literal["auto", "rollout", "recompute"] = "auto"
    tis_cap: float | None = Field(default=2.0, gt=0, description="cap on the truncated importance weight; None: "
                                  "no correction (the mismatch is still logged)")
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    share_prefix: bool = Field(default=True, description="run a micro-batch's common prompt once (same gradients); "
                               "off by default under gradient_checkpointing")
    seed: int = 0

    @model_validator(mode="after")
    def _sane(self) -> LearnerConfig:
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"AdamW betas must be in [0, 1), got {self.betas}")
        if self.gradient_checkpointing and self.share_prefix:
            # The shared prefix's keys and values reach the suffix through the KV cache, which checkpointed layers
            # drop (a recompute in the backward pass would write it twice): the suffix would not see its prompt.
            if "share_prefix" in self.model_fields_set:
                raise ValueError("share_prefix needs the KV cache, which gradient_checkpointing turns off: set "
                                 "share_prefix: false (or leave it out) to checkpoint, or drop gradient_checkpointing")
            self.share_prefix = False  # the default yields: each sequence is run whole, with the same gradients
        return self

    @property
    def updates_per_batch(self) -> int:
        return self.epochs * self.minibatches


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off: a CUDA device with bf16, or a CPU with native bf16 (AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def autocast_dtype(config: LearnerConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, None for float32."""
    if config.precision == "fp32":
        return None
    if config.precision == "bf16" or bf16_supported(device):
        return torch.bfloat16
    return None
