"""Per-turn rewards and advantages for multi-turn rollouts: ReNorm shaping, discounted returns, cell normalization."""

from __future__ import annotations

import torch
from torch import Tensor

from gymbox.rewards.advantages import EPS, Advantages, group_normalize, number_groups

# Per-turn tensors are padded: Tensor[N, T] with `lengths` LongTensor[N] the number of turns of each rollout; entries
# at t >= lengths[n] are padding, never read (they may hold NaN) and 0 in every output. `groups` and `valid` are as in
# `rewards.advantages`: masked rollouts (valid False) are left out of every statistic and get advantage 0 at every turn.


def _turn_mask(per_turn: Tensor, lengths: Tensor) -> Tensor:
    """[N, T] True at real turns; refuses lengths that do not fit the padded tensor."""
    if per_turn.dim() != 2:
        raise ValueError(f"per-turn values must be shaped [N, T], got {list(per_turn.shape)}")
    n, t = per_turn.shape
    if n == 0:
        raise ValueError("empty batch: there are no rollouts")
    if lengths.shape != (n,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor shaped [{n}], got {lengths.dtype} {list(lengths.shape)}")
    if ((lengths < 0) | (lengths > t)).any():
        raise ValueError(f"lengths must be in 0..{t} (the padded number of turns), got {lengths.tolist()}")
    return torch.arange(t, device=per_turn.device).unsqueeze(0) < lengths.unsqueeze(1)


def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()


def _returns(rewards: Tensor, real: Tensor, gamma: float) -> Tensor:
    """Discounted returns in float64."""
    r = torch.where(real, rewards.to(torch.float64), 0.0)  # padding adds nothing to the returns before it
    returns = torch.zeros_like(r)
    following = torch.zeros(r.shape[0], dtype=torch.float64, device=r.device)
    for t in reversed(range(r.shape[1])):  # T is the number of turns: a short loop
        following = r[:, t] + gamma * following
        returns[:, t] = following
    return returns


def renorm(process: Tensor, outcome: Tensor, lengths: Tensor, *, beta: float = 1.0) -> Tensor:
    """ReNorm hybrid per-turn reward (arXiv 2509.25598): r^_t = r_process_t + r_outcome - beta before the last turn.

    `process` [N, T] holds each turn's process reward and `outcome` [N] the rollout's outcome reward; the last turn
    gets r_outcome alone (its process reward is not used). With beta = 1, outcomes in {0, 1} and process rewards in
    [0, 1], a failed rollout's intermediate turns land in [-1, 0] and a successful one's in [0, 1]: the outcome sets
    the sign and the process reward the size. Returns [N, T] in the process rewards' dtype, 0 at padding.
    """
    real = _turn_mask(process, lengths)
    if outcome.shape != lengths.shape:
        raise ValueError(f"outcome must be shaped [{len(lengths)}], got {list(outcome.shape)}")
    last = torch.arange(process.shape[1], device=process.device).unsqueeze(0) == (lengths - 1).unsqueeze(1)
    r_outcome = outcome.to(torch.float64).unsqueeze(1)
    shaped = torch.where(last, r_outcome, process.to(torch.float64) + r_outcome - beta)
    return torch.where(real, shaped, 0.0).to(_out_dtype(process))


def discounted_returns(rewards: Tensor, lengths: Tensor, *, gamma: float = 1.0) -> Tensor:
    """G_t = r_t + gamma G_{t+1} from each turn to the rollout's last turn; [N, T], 0 at padding."""
    real = _turn_mask(rewards, lengths)
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return _returns(rewards, real, gamma).to(_out_dtype(rewards))


def turn_advantages(rewards: Tensor, lengths: Tensor, groups: Tensor, valid: Tensor | None = None, *,
                    gamma: float = 1.0, keys: Tensor | None = None, scale: bool = True,
                    eps: float = EPS) -> Advantages:
    """Per-turn advantages from per-turn rewards [N, T]: discounted returns, normalized within cells of turns.

    The advantage of turn t is the discounted return from t (`gamma`, default 1), normalized as in GRPO
    ((G - mean) / (population std + eps); centered only when `scale` is False) within a cell of comparable turns:
    by default the turns of one group at the same step index (rewards spec, section 7); with `keys` [N, T] (an
    integer id of each turn's observation, e.g. a hash of its text), the turns of one group that saw the same
    observation, as GiGPO's anchor-state groups do (Feng et al., arXiv 2505.10978). A cell with a single valid turn
    (one rollout reached that step, or a unique observation) gets 0 and counts as zero-std; `groups` in the result
    counts cells. Rollout groups still need G >= 2, and a valid rollout's per-turn rewards must be finite.
    """
    real = _turn_mask(rewards, lengths)
    n, t = rewards.shape
    if valid is None:
        valid = torch.ones(n, dtype=torch.bool, device=rewards.device)
    elif valid.shape != (n,) or valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor shaped [{n}], got {valid.dtype} {list(valid.shape)}")
    if keys is not None and keys.shape != rewards.shape:
        raise ValueError(f"keys must be shaped like rewards {[n, t]}, got {list(keys.shape)}")
    # A singleton rollout group is a configuration error; a singleton cell of turns is ordinary data.
    group_index, _ = number_groups(groups, n, min_size=2)
    used = real & valid.unsqueeze(1)
    bad = (used & ~rewards.isfinite()).nonzero()
    if len(bad):
        i, turn = (int(x) for x in bad[0])
        raise ValueError(f"the reward of rollout {i} at turn {turn} is {rewards[i, turn].item()}: per-turn rewards "
                         "must be finite (use 0 for a turn without reward; mask the rollout if it failed)")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    returns = _returns(rewards, real, gamma)
    second = keys if keys is not None else torch.arange(t, device=rewards.device).expand(n, t)
    cell_of = torch.stack([group_index.unsqueeze(1).expand(n, t), second], dim=-1)[used]  # [M, 2]
    values = torch.zeros((n, t), dtype=_out_dtype(rewards), device=rewards.device)
    if not used.any():  # every rollout masked: nothing to normalize, and no cells
        return Advantages(values=values, zero_std_groups=0, groups=0)
    _, cells = torch.unique(cell_of, dim=0, return_inverse=True)
    normalized = group_normalize(returns[used], cells, eps=eps, scale=scale)
    values[used] = normalized.values.to(values.dtype)
    return Advantages(values=values, zero_std_groups=normalized.zero_std_groups, groups=normalized.groups)
