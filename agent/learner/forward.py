"""Forward passes that give each target token's log-probability, computing logits only where the loss needs them.

A group's rollouts share their prompt. When every sequence of a micro-batch starts with the same tokens, the prefix
is run once and its keys and values are repeated for every sequence (`shared`): the gradient through the repeat
sums over the sequences, so loss and gradients are those of running each sequence whole, at a fraction of the
compute when prompts are long and replies short.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from gymbox.agent.learner.batch import Collated
from gymbox.agent.learner.loss import token_entropy, token_logprobs

MIN_SHARED_PREFIX = 16  # below this the second forward call costs more than it saves


def shared_prefix(batch: Collated) -> int:
    """How many leading input positions every row shares and can be run once: the common prefix of the real tokens,
    cut so that no policy target lies strictly inside it (its logits would not be computed) and some suffix is left."""
    ids, lengths = batch.input_ids, batch.attention_mask.sum(-1)
    if ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(dim=0).to(torch.int8)
    common = int(same.cumprod(0).sum())
    targets = batch.mask.any(dim=0).nonzero()
    first_target = int(targets[0]) if len(targets) else ids.shape[1]
    return max(0, min(common, first_target + 1, int(lengths.min()) - 1))


def logprobs(model: nn.Module, batch: Collated, autocast: contextlib.AbstractContextManager[Any] | None = None, *,
             share: bool = True, entropy: Tensor | None = None) -> Tensor:
    """log p(target) [B, T] in float32, 0 where no row has a policy token. With `entropy` (a [B, T] float32 buffer),
    each of those positions' entropy is written into it too, from the same logits (no gradient)."""
    out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=batch.input_ids.device)
    keep = batch.mask.any(dim=0).nonzero().squeeze(-1)
    if len(keep) == 0:
        return out
    prefix = shared_prefix(batch) if share else 0
    with autocast or contextlib.nullcontext():
        if prefix < MIN_SHARED_PREFIX:
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_to_keep=keep,
                           use_cache=False).logits
            _fill(out, entropy, keep, logits, batch.targets[:, keep])
            return out
        return _shared(model, batch, prefix, out, entropy)


def _fill(out: Tensor, entropy: Tensor | None, where: Tensor | int, logits: Tensor, targets: Tensor) -> None:
    """Columns `where` of `out` (and of `entropy`, when given) from `logits` at those positions."""
    out[:, where] = token_logprobs(logits, targets)
    if entropy is not None:
        entropy[:, where] = token_entropy(logits)


def _shared(model: nn.Module, batch: Collated, p: int, out: Tensor, entropy: Tensor | None = None) -> Tensor:
    """The prefix once (its last logit predicts the first suffix target), then every suffix over its keys/values."""
    rows, width = batch.input_ids.shape
    head = model(input_ids=batch.input_ids[:1, :p], use_cache=True, logits_to_keep=1)
    _fill(out, entropy, p - 1, head.logits[:, -1].expand(rows, -1), batch.targets[:, p - 1])
    cache = head.past_key_values
    cache.batch_repeat_interleave(rows)
    keep = batch.mask[:, p:].any(dim=0).nonzero().squeeze(-1)
    if len(keep) == 0:
        return out
    positions = torch.arange(p, width, device=batch.input_ids.device).unsqueeze(0).expand(rows, -1)
    logits = model(input_ids=batch.input_ids[:, p:], attention_mask=batch.attention_mask, past_key_values=cache,
                   position_ids=positions, use_cache=True, logits_to_keep=keep).logits
    _fill(out, entropy, p + keep, logits, batch.targets[:, p + keep])
    return out
