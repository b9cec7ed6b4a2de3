"""The GRPO policy loss (rewards spec, section 7): clipped ratio with clip-higher, k3 KL, truncated importance
sampling against the sampler, and its aggregations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Aggregation = Literal["token_mean", "seq_mean", "dr_grpo"]
AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean", "dr_grpo")


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(target) under `logits` [..., V], in float32 whatever the logits' dtype (bf16 log-softmax loses the
    small differences the ratio is made of)."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: Tensor) -> Tensor:
    """The entropy (nats) of each position's next-token distribution under `logits` [..., V], without gradient: a
    diagnostic (a policy collapsing onto one reply has entropy near 0), never part of the loss."""
    with torch.no_grad():
        logp = torch.log_softmax(logits.detach().float(), dim=-1)
        return -(logp.exp() * logp).sum(-1)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0, unbiased)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def truncated_is_weights(old_logp: Tensor, rollout_logp: Tensor, cap: float | None) -> Tensor:
    """Truncated importance sampling (Yao et al. 2025): w = min(pi_old / pi_rollout, cap) per token, the weight that
    turns an expectation under the sampler (vLLM) into one under the learner's old policy; cap bounds its variance.
    A constant (no gradient); all ones when cap is None (no correction)."""
    if cap is None:
        return torch.ones_like(old_logp)
    if cap <= 0:
        raise ValueError(f"the importance-weight cap must be positive, got {cap}")
    return torch.clamp(torch.exp(old_logp - rollout_logp), max=cap).detach()


@dataclass(frozen=True)
class Normalizer:
    """The denominator of an aggregation over the *whole* batch, so that a batch split into micro-batches sums to
    exactly the loss of the unsplit batch (gradient accumulation 8x1 equals 1x8).

    token_mean: the batch's policy tokens. seq_mean: the batch's sequences with at least one policy token, each
    averaged over its own tokens. dr_grpo: sequences x the longest policy-token count in the batch (Dr. GRPO's
    constant normalizer in place of each sequence's length).
    """

    mode: Aggregation
    tokens: int
    sequences: int
    max_tokens: int

    @classmethod
    def of(cls, mode: Aggregation, masks: list[Tensor]) -> Normalizer:
        """From each sequence's policy-token mask."""
        if mode not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {mode!r}; choose one of {', '.join(AGGREGATIONS)}")
        counts = [int(m.sum()) for m in masks]
        return cls(mode=mode, tokens=sum(counts), sequences=sum(1 for c in counts if c),
                   max_tokens=max(counts, default=0))

    def reduce(self, per_token: Tensor, mask: Tensor) -> Tensor:
        """This micro-batch's share of the batch loss: per_token and mask are [B, T]."""
        mask = mask.to(per_token.dtype)
        if self.tokens == 0:
            return (per_token * mask).sum()  # nothing to learn from: an exact 0 that still has a graph
        if self.mode == "token_mean":
            return (per_token * mask).sum() / self.tokens
        if self.mode == "seq_mean":
            per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
            return per_seq.sum() / self.sequences
        return (per_token * mask).sum() / (self.sequences * self.max_tokens)


@dataclass(frozen=True)
class LossTerms:
    """Per-token terms of one micro-batch, [B, T]; masked positions hold anything."""

    loss: Tensor  # policy loss plus the KL penalty
    clipped: Tensor  # 1 where the clipped term was chosen (the gradient of that token is 0)
    ratio: Tensor
    kl: Tensor | None  # k3 to the reference, when there is one


def grpo_terms(logp: Tensor, old_logp: Tensor, advantages: Tensor, *, clip_low: float = 0.2,
               clip_high: float = 0.2, ref_logp: Tensor | None = None, kl_coef: float = 0.0,
               is_weights: Tensor | None = None) -> LossTerms:
    """L_tok = -w min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) + kl_coef k3(logp, ref), r = exp(logp - old).

    clip_high > clip_low is DAPO's clip-higher (0.28 in the paper): low-probability tokens with positive advantage
    may grow further before their gradient is cut. w is the truncated importance weight of each token
    (`truncated_is_weights`; 1 without one): it scales the policy-gradient term only, not the clip decision.
    """
    if not (0 <= clip_low < 1 and clip_high >= 0):
        raise ValueError(f"clip range must satisfy 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped_ratio = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped = clipped_ratio * advantages
    loss = -torch.minimum(unclipped, clipped)
    if is_weights is not None:
        loss = is_weights * loss
    kl = None
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        loss = loss + kl_coef * kl
    return LossTerms(loss=loss, clipped=(clipped < unclipped).to(logp.dtype), ratio=ratio, kl=kl)
