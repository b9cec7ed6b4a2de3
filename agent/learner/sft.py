"""Supervised fine-tuning on the learner: negative log-likelihood of the policy (loss-mask) tokens, token-mean.

L = -(1 / N) sum over the batch's loss-mask tokens of log p(token | everything before it), N the batch's loss-mask
token count: prompt, environment and template tokens are context, never targets. The denominator is the whole
batch's (`Normalizer`), so gradient accumulation over micro-batches gives exactly the unsplit batch's gradient.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from gymbox.agent.learner import forward
from gymbox.agent.learner.batch import Collated, Sample, collate
from gymbox.agent.learner.learner import Learner, check_batch
from gymbox.agent.learner.loss import Normalizer


def nll_terms(logp: Tensor) -> Tensor:
    """Per-token negative log-likelihood [B, T] from each target's log-probability."""
    return -logp


@dataclass(frozen=True)
class SFTStats:
    """One optimizer step: the batch's token-mean NLL (before the step), its pre-clip gradient norm and cost."""

    loss: float
    grad_norm: float
    sequences: int
    tokens: int  # every token through the model
    loss_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


def sft_step(learner: Learner, samples: Sequence[Sample]) -> SFTStats:
    """One optimizer step of NLL over `samples`, `micro_batch_size` sequences per forward/backward."""
    check_batch(samples)
    started = time.perf_counter()
    learner.model.train()
    norm = Normalizer.of("token_mean", [torch.tensor(s.mask[1:]) for s in samples])
    learner.optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for part in micro_batches(learner, samples):
        batch = collate(part, learner.pad_id, learner.device)
        loss = norm.reduce(nll_terms(_logprobs(learner, batch)), batch.mask)
        loss.backward()
        loss_sum += float(loss.detach())
    grad_norm = learner.apply_gradients()
    learner.model.eval()
    return SFTStats(loss=loss_sum, grad_norm=grad_norm, sequences=len(samples),
                    tokens=sum(len(s.token_ids) for s in samples), loss_tokens=norm.tokens,
                    seconds=time.perf_counter() - started)


@torch.no_grad()
def nll(learner: Learner, samples: Sequence[Sample]) -> float:
    """The token-mean NLL of `samples` under the current weights, no update (validation)."""
    check_batch(samples)
    learner.model.eval()
    norm = Normalizer.of("token_mean", [torch.tensor(s.mask[1:]) for s in samples])
    total = 0.0
    for part in micro_batches(learner, samples):
        batch = collate(part, learner.pad_id, learner.device)
        total += float(norm.reduce(nll_terms(_logprobs(learner, batch)), batch.mask))
    return total


def micro_batches(learner: Learner, samples: Sequence[Sample]) -> list[list[Sample]]:
    """The micro-batches `sft_step` runs, in order (what a benchmark needs to give a peer the same ones)."""
    size = learner.config.micro_batch_size
    ordered = list(samples)
    if learner.config.share_prefix:  # demonstrations of one task side by side, so a micro-batch shares its prompt
        ordered.sort(key=lambda s: s.token_ids)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def _logprobs(learner: Learner, batch: Collated) -> Tensor:
    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext() if learner.autocast is None else \
        torch.autocast(learner.device.type, dtype=learner.autocast)
    return forward.logprobs(learner.model, batch, autocast, share=learner.config.share_prefix)
