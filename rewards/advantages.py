"""Group-relative advantage estimators (GRPO family, multi-reward, likelihood-shaped) as pure tensor functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

# One input convention for every estimator, over a flat batch of N rollouts:
#
# - `rewards`: float Tensor[N] (one scalar reward per rollout), or Tensor[N, K] for the multi-reward estimators, where
#   NaN means "this reward does not apply to this rollout" (None in the records) and is left out of that reward's
#   statistics.
# - `groups`: integer Tensor[N], the group id of each rollout (rollouts of one task that share an initial state); ids
#   need not be contiguous or sorted.
# - `valid`: bool Tensor[N] or None (all valid). False masks a rollout: an infrastructure failure
#   (`Trajectory.masked`) or a reward function that raised. A masked rollout is left out of every statistic, its reward
#   may be anything (NaN included) and its advantage is exactly 0.
#
# Edge cases, the same for every estimator (rewards spec, section 6): an empty batch, a group with fewer than 2
# rollouts, and a missing (NaN) required reward on a valid rollout are refused with a ValueError before any compute;
# a group whose valid rewards are all equal (population std <= eps), or which has fewer than 2 valid rollouts, gets
# advantage 0 and is counted in `Advantages.zero_std_groups`. Statistics are computed in float64; the values come
# back in the rewards' dtype.

EPS = 1e-6


@dataclass(frozen=True)
class Advantages:
    """Advantages shaped like the rewards' batch, and how many groups carried no learning signal."""

    values: Tensor
    zero_std_groups: int
    groups: int

    @property
    def zero_std_fraction(self) -> float:
        """The fraction of groups whose advantage is 0 because their rewards do not vary (a training metric)."""
        return self.zero_std_groups / self.groups if self.groups else 0.0


@dataclass(frozen=True)
class _Batch:
    index: Tensor  # [N] group number in 0..size-1
    size: int  # number of groups
    valid: Tensor  # [N] bool
    dtype: torch.dtype  # of the returned values


def number_groups(groups: Tensor, n: int, *, min_size: int = 2) -> tuple[Tensor, int]:
    """Number the groups 0..B-1 (an index [n] and B), refusing a group with fewer than `min_size` rollouts."""
    if groups.shape != (n,) or groups.dtype.is_floating_point or groups.dtype.is_complex or groups.dtype == torch.bool:
        raise ValueError(f"groups must be an integer tensor shaped [{n}], got {groups.dtype} {list(groups.shape)}")
    ids, index, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    small = (counts < min_size).nonzero()
    if len(small):
        g = small[0, 0]
        raise ValueError(f"group {ids[g].item()} has {counts[g].item()} rollout(s): group-relative estimators need "
                         f"G >= {min_size} rollouts per group (configure at least {min_size} samples per task)")
    return index, len(ids)


def _prepare(rewards: Tensor, groups: Tensor, valid: Tensor | None, *, reward_dims: int, min_group: int,
             eps: float) -> _Batch:
    """Check the inputs and number the groups; every refusal happens here, before any arithmetic."""
    if rewards.dim() != reward_dims:
        shape = "[N]" if reward_dims == 1 else "[N, K]"
        raise ValueError(f"rewards must be shaped {shape}, got {list(rewards.shape)}")
    n = rewards.shape[0]
    if n == 0:
        raise ValueError("empty batch: there are no rollouts to compute advantages for")
    index, size = number_groups(groups, n, min_size=min_group)
    if valid is None:
        valid = torch.ones(n, dtype=torch.bool, device=rewards.device)
    elif valid.shape != (n,) or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor shaped [{n}], got {valid.dtype} {list(valid.shape)}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    # Multi-reward estimators read NaN as "not applicable"; a single required reward must be a real number.
    bad = valid.unsqueeze(1) & (rewards.isinf() if reward_dims == 2 else ~rewards.isfinite()).reshape(n, -1)
    if bad.any():
        i, k = (int(x) for x in bad.nonzero()[0])
        what = f"reward {k} of rollout {i}" if reward_dims == 2 else f"the reward of rollout {i}"
        raise ValueError(f"{what} is {rewards[i].reshape(-1)[k].item()}: a required reward must be finite; mask the "
                         "rollout (valid=False) when its reward could not be computed")
    dtype = rewards.dtype if rewards.dtype.is_floating_point else torch.get_default_dtype()
    return _Batch(index=index, size=size, valid=valid, dtype=dtype)


def _group_stats(x: Tensor, present: Tensor, index: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per group: count, mean and population std of `x` over its present entries (x is [N] or [N, K])."""
    x = torch.where(present, x.to(torch.float64), 0.0)  # absent entries may hold NaN: keep them out of the sums
    zeros = torch.zeros((size, *x.shape[1:]), dtype=torch.float64, device=x.device)
    count = zeros.index_add(0, index, present.to(torch.float64))
    mean = zeros.index_add(0, index, x) / count.clamp(min=1)
    deviation = torch.where(present, x - mean[index], 0.0)
    std = (zeros.index_add(0, index, deviation.square()) / count.clamp(min=1)).sqrt()
    return count, mean, std


def _flat(count: Tensor, std: Tensor, eps: float) -> Tensor:
    """Groups with no signal: fewer than 2 valid values, or values that do not vary beyond eps."""
    return (count < 2) | (std <= eps)


def _finish(values: Tensor, flat: Tensor, batch: _Batch) -> Advantages:
    """Zero the flat groups and the masked rollouts exactly, and count the flat groups."""
    keep = batch.valid & ~flat[batch.index]
    values = torch.where(keep, values, 0.0).to(batch.dtype)
    return Advantages(values=values, zero_std_groups=int(flat.sum()), groups=batch.size)


def _standardize(rewards: Tensor, batch: _Batch, *, eps: float, scale: bool, also_flat: Tensor | None = None
                 ) -> Advantages:
    count, mean, std = _group_stats(rewards, batch.valid, batch.index, batch.size)
    centered = rewards.to(torch.float64) - mean[batch.index]
    values = centered / (std[batch.index] + eps) if scale else centered
    flat = _flat(count, std, eps) if also_flat is None else _flat(count, std, eps) | also_flat
    return _finish(values, flat, batch)


def group_normalize(values: Tensor, groups: Tensor, valid: Tensor | None = None, *, eps: float = EPS,
                    scale: bool = True) -> Advantages:
    """(x - group mean) / (group population std + eps), or x - group mean when `scale` is False.

    The normalization inside GRPO with no minimum group size: a group with fewer than 2 valid values gets 0 and
    counts as zero-std. Turn-level advantages use it over (group, step) or (group, observation) cells, where a cell
    of one turn is ordinary data, not a configuration error.
    """
    batch = _prepare(values, groups, valid, reward_dims=1, min_group=0, eps=eps)
    return _standardize(values, batch, eps=eps, scale=scale)


def grpo(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, eps: float = EPS) -> Advantages:
    """GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300): A_i = (R_i - mean) / (std + eps) within each group.

    std is the population std (divide by the number of valid rollouts n, not n - 1): it is the group's own spread,
    not an estimate of a wider one, and it is the std that DVAO and GDPO are specified with here, so the estimators
    share one scale (TRL and verl use the sample std, which gives advantages smaller by sqrt((n-1)/n)).
    """
    batch = _prepare(rewards, groups, valid, reward_dims=1, min_group=2, eps=eps)
    return _standardize(rewards, batch, eps=eps, scale=True)


def dr_grpo(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, eps: float = EPS) -> Advantages:
    """Dr. GRPO (Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783): A_i = R_i - group mean.

    Dropping the std division removes GRPO's bias toward groups that are nearly all right or all wrong. `eps` only
    decides when a group counts as constant.
    """
    batch = _prepare(rewards, groups, valid, reward_dims=1, min_group=2, eps=eps)
    return _standardize(rewards, batch, eps=eps, scale=False)


def rloo(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, eps: float = EPS) -> Advantages:
    """RLOO (Ahmadian et al., "Back to Basics", arXiv 2402.14740): A_i = R_i - mean of the other valid R_j.

    The baseline leaves out the rollout itself, so it does not depend on R_i; over n valid rollouts this equals
    n / (n - 1) * (R_i - mean).
    """
    batch = _prepare(rewards, groups, valid, reward_dims=1, min_group=2, eps=eps)
    count, mean, std = _group_stats(rewards, batch.valid, batch.index, batch.size)
    r = rewards.to(torch.float64)
    n = count[batch.index]
    others = (n * mean[batch.index] - r) / (n - 1).clamp(min=1)
    return _finish(r - others, _flat(count, std, eps), batch)


def _reward_weights(weights: Tensor | None, k: int, name: str, *, non_negative: bool, device: torch.device) -> Tensor:
    if weights is None:
        return torch.ones(k, dtype=torch.float64, device=device)
    if weights.shape != (k,) or not weights.isfinite().all():
        raise ValueError(f"{name} must be {k} finite numbers, one per reward, got {weights.tolist()}")
    if non_negative and (weights < 0).any():
        raise ValueError(f"{name} must be >= 0: they set each reward's share of the advantage, got {weights.tolist()}")
    return weights.to(device=device, dtype=torch.float64)


def gdpo(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, weights: Tensor | None = None,
         eps: float = EPS) -> Advantages:
    """GDPO (arXiv 2601.05242): z-score each reward within its group, sum with `weights`, normalize over the batch.

    A_ik = (r_ik - mean_k) / (std_k + eps) over the group's rollouts where reward k applies (NaN: not applicable,
    A_ik = 0); a reward constant within a group contributes 0, so it no longer flattens the others. S_i = sum_k
    w_k A_ik (weights default to 1); A_i = (S_i - mean S) / (std S + eps) over all valid rollouts of the batch,
    zero-std groups included (as the authors' code does). A group whose S does not vary gets 0. Stds: population.
    """
    batch = _prepare(rewards, groups, valid, reward_dims=2, min_group=2, eps=eps)
    w = _reward_weights(weights, rewards.shape[1], "weights", non_negative=False, device=rewards.device)
    present = batch.valid.unsqueeze(1) & ~rewards.isnan()
    count, mean, std = _group_stats(rewards, present, batch.index, batch.size)
    informative = present & ~_flat(count, std, eps)[batch.index]
    z = torch.where(informative, (rewards.to(torch.float64) - mean[batch.index]) / (std[batch.index] + eps), 0.0)
    summed = z @ w
    # The whole batch is one group for the second normalization.
    _, batch_mean, batch_std = _group_stats(summed, batch.valid, torch.zeros_like(batch.index), 1)
    values = (summed - batch_mean) / (batch_std + eps)
    s_count, _, s_std = _group_stats(summed, batch.valid, batch.index, batch.size)
    return _finish(values, _flat(s_count, s_std, eps), batch)


def dvao(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, weights: Tensor | None = None,
         eps: float = EPS) -> Advantages:
    """DVAO (arXiv 2605.25604): each reward's z-score weighted by its share of the group's spread.

    v_k = b_k sigma_k / sum_l b_l sigma_l and A_i = sum_k v_k (r_ik - mu_k) / (sigma_k + eps), with mu_k, sigma_k
    the group's mean and population std of reward k over the rollouts where it applies (NaN: not applicable, term
    0) and b_k = `weights` (>= 0, default 1). A reward constant within the group (sigma_k <= eps) gets v_k = 0. A
    group with fewer than 2 valid rollouts or sum_l b_l sigma_l <= eps gets A = 0.
    """
    batch = _prepare(rewards, groups, valid, reward_dims=2, min_group=2, eps=eps)
    b = _reward_weights(weights, rewards.shape[1], "weights", non_negative=True, device=rewards.device)
    present = batch.valid.unsqueeze(1) & ~rewards.isnan()
    count, mean, std = _group_stats(rewards, present, batch.index, batch.size)
    sigma = torch.where(_flat(count, std, eps), 0.0, std)
    spread = sigma * b  # [groups, K]
    total = spread.sum(dim=1)
    share = spread / total.clamp(min=eps).unsqueeze(1)  # groups with total <= eps are zeroed by _finish
    z = torch.where(present, (rewards.to(torch.float64) - mean[batch.index]) / (sigma[batch.index] + eps), 0.0)
    values = (share[batch.index] * z).sum(dim=1)
    n_valid = torch.zeros(batch.size, dtype=torch.float64, device=rewards.device).index_add(
        0, batch.index, batch.valid.to(torch.float64))
    return _finish(values, (n_valid < 2) | (total <= eps), batch)


def unlikeliness(rewards: Tensor, groups: Tensor, valid: Tensor | None = None, *, logprobs: Tensor,
                 beta: float = 0.25, eps: float = EPS) -> Advantages:
    """Unlikeliness reward (He et al., "Rewarding the Unlikely", arXiv 2506.02355), then GRPO.

    `logprobs` [N] is each rollout's mean token log-probability under the policy that sampled it. Within a group,
    rank_i in 0..G-1 orders the G valid rollouts from least to most likely (tied log-probs share the mean of their
    ranks, so identical samples get identical advantages); r~_i = r_i (1 - beta rank_i / G) lowers the reward of
    likely rollouts, and GRPO normalizes r~. A group whose raw rewards are all equal still gets 0 (spec, section 6),
    so ranks only reorder credit among rollouts whose rewards differ. O(N^2) memory for the rank comparison.
    """
    batch = _prepare(rewards, groups, valid, reward_dims=1, min_group=2, eps=eps)
    if logprobs.shape != rewards.shape:
        raise ValueError(f"logprobs must be shaped like rewards {list(rewards.shape)}, got {list(logprobs.shape)}")
    bad = (batch.valid & ~logprobs.isfinite()).nonzero()
    if len(bad):
        raise ValueError(f"the mean log-prob of rollout {int(bad[0, 0])} is {logprobs[bad[0, 0]].item()}: it must be "
                         "finite")
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1] so that shaped rewards keep their sign, got {beta}")
    lp = torch.where(batch.valid, logprobs.to(torch.float64), 0.0)
    peers = (batch.index.unsqueeze(1) == batch.index.unsqueeze(0)) & batch.valid.unsqueeze(0)
    below = (peers & (lp.unsqueeze(0) < lp.unsqueeze(1))).sum(dim=1)
    tied = (peers & (lp.unsqueeze(0) == lp.unsqueeze(1))).sum(dim=1) - 1  # minus the rollout itself
    rank = below + tied / 2
    count, _, raw_std = _group_stats(rewards, batch.valid, batch.index, batch.size)
    shaped = torch.where(batch.valid, rewards.to(torch.float64), 0.0) * (1 - beta * rank / count[batch.index])
    return _standardize(shaped, batch, eps=eps, scale=True, also_flat=_flat(count, raw_std, eps))


Estimator = Callable[..., Advantages]

# Chosen once by name from configuration files; the turn-level functions (rewards.turns) take per-turn inputs.
ESTIMATORS: Mapping[str, Estimator] = MappingProxyType({
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
    "gdpo": gdpo,
    "dvao": dvao,
    "unlikeliness": unlikeliness,
})


def get_estimator(name: str) -> Estimator:
    """The estimator called `name` in ESTIMATORS."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {', '.join(ESTIMATORS)}") from None
