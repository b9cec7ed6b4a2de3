"""Training samples: a trajectory's tokens with its policy-token mask, per-token advantages and rollout logprobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gymbox.environments.records import Trajectory


@dataclass(frozen=True)
class Sample:
    """One sequence to learn from. All fields are aligned with `token_ids`; `mask` is 1 on policy tokens, the only
    ones the loss sees, and `advantages` holds each policy token's advantage (its turn's, or the rollout's)."""

    token_ids: list[int]
    mask: list[int]
    advantages: list[float]
    logprobs: list[float | None]  # the sampler's log-probability of each policy token (None: not recorded), 0 elsewhere
    source: str = ""  # trajectory id, for error messages

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if not (len(self.mask) == len(self.advantages) == len(self.logprobs) == n):
            raise ValueError(f"sample {self.source or '?'}: token_ids, mask, advantages and logprobs differ in length")
        if n and self.mask[0]:
            raise ValueError(f"sample {self.source or '?'}: the first token is a policy token, but there is no "
                             "context to predict it from; trajectories start with their prompt")

    @property
    def policy_tokens(self) -> int:
        return sum(self.mask)

    @property
    def has_rollout_logprobs(self) -> bool:
        """Every policy token has the sampler's log-prob (what `old_logprobs: rollout` needs)."""
        return all(lp is not None for lp, m in zip(self.logprobs, self.mask, strict=True) if m)


def sample_of(trajectory: Trajectory, advantage: float | Sequence[float]) -> Sample:
    """A trajectory's sample with one advantage for every policy token, or one per turn (a sequence as long as its
    turns), ending at its last policy token. A masked trajectory is refused: it must never reach the loss (rewards
    spec, section 6)."""
    if trajectory.masked:
        raise ValueError(f"trajectory {trajectory.id} is masked ({trajectory.error.code if trajectory.error else ''}):"
                         " infrastructure failures are left out of training, not learned from")
    per_turn = [float(advantage)] * len(trajectory.turns) if isinstance(advantage, int | float) else list(advantage)
    if len(per_turn) != len(trajectory.turns):
        raise ValueError(f"trajectory {trajectory.id}: {len(per_turn)} turn advantages for "
                         f"{len(trajectory.turns)} turns")
    ids, mask = list(trajectory.prompt_ids), [0] * len(trajectory.prompt_ids)
    adv = [0.0] * len(ids)
    logp: list[float | None] = [0.0] * len(ids)
    for turn, a in zip(trajectory.turns, per_turn, strict=True):
        ids += turn.token_ids
        mask += turn.loss_mask
        adv += [a if m else 0.0 for m in turn.loss_mask]
        logp += [(None if lp is None else float(lp)) if m else 0.0
                 for m, lp in zip(turn.loss_mask, turn.logprobs, strict=True)]
    # Tokens after the last policy token (the environment's final answer) cannot change any policy token's
    # probability under causal attention: leave them out of the forward pass.
    end = max((i + 1 for i, m in enumerate(mask) if m), default=len(ids))
    return Sample(token_ids=ids[:end], mask=mask[:end], advantages=adv[:end], logprobs=logp[:end],
                  source=trajectory.id)


@dataclass(frozen=True)
class Collated:
    """Right-padded tensors [B, T] of a micro-batch, shifted for next-token prediction: position i predicts
    `targets[:, i]` = token i + 1, and `mask`, `advantages`, `logprobs` are aligned with the targets (a log-prob the
    sampler did not record is 0 here: `Sample.has_rollout_logprobs` says whether to read them)."""

    input_ids: Tensor
    attention_mask: Tensor
    targets: Tensor
    mask: Tensor
    advantages: Tensor
    logprobs: Tensor

    @property
    def policy_tokens(self) -> int:
        return int(self.mask.sum())


def collate(samples: Sequence[Sample], pad_id: int = 0, device: torch.device | str = "cpu") -> Collated:
    """Pad a micro-batch on the right (causal attention never looks at the padding after a sequence)."""
    if not samples:
        raise ValueError("empty micro-batch")
    width = max(len(s.token_ids) for s in samples)
    if width < 2:
        raise ValueError("every sequence is shorter than 2 tokens: nothing to predict")

    def pad(rows: list[list[float]] | list[list[int]], value: float, dtype: torch.dtype) -> Tensor:
        return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=dtype, device=device)

    ids = pad([s.token_ids for s in samples], pad_id, torch.long)
    attn = pad([[1] * len(s.token_ids) for s in samples], 0, torch.long)
    mask = pad([s.mask for s in samples], 0, torch.long)
    adv = pad([s.advantages for s in samples], 0.0, torch.float32)
    logp = pad([[0.0 if lp is None else lp for lp in s.logprobs] for s in samples], 0.0, torch.float32)
    return Collated(input_ids=ids[:, :-1], attention_mask=attn[:, :-1], targets=ids[:, 1:], mask=mask[:, 1:],
                    advantages=adv[:, 1:], logprobs=logp[:, 1:])
