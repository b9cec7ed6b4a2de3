"""Gated reward accumulation (G-RA) and direct accumulation (D-RA), its baseline.

G-RA is from "Stabilizing Long-term Multi-turn Reinforcement Learning with Gated Rewards" (2025).
"""

from __future__ import annotations

from collections.abc import Sequence


def gate_masks(values: Sequence[float | None], thresholds: Sequence[float | None], *,
               closed: bool = False) -> list[int]:
    """m_i = Π over higher-priority j of 1[R_j >= δ_j], components ordered from the highest priority.

    A component with no threshold gates nothing. A gating component that is not applicable (None) cannot be
    tested and is passed over. `closed` shuts every gate: the decision for an episode that timed out or ran
    out of turns, which counts as "no submit".
    """
    if len(values) != len(thresholds):
        raise ValueError(f"{len(values)} values but {len(thresholds)} thresholds; give one threshold (or None) each")
    masks, open_ = [], 1
    for value, delta in zip(values, thresholds, strict=True):
        masks.append(open_)
        if delta is not None and (closed or (value is not None and value < delta)):
            open_ = 0
    return masks


def gated_total(values: Sequence[float | None], thresholds: Sequence[float | None], *,
                weights: Sequence[float] | None = None, closed: bool = False) -> float | None:
    """R_total = Σ_i m_i w_i R_i over the applicable components; None when none applies."""
    masks = gate_masks(values, thresholds, closed=closed)
    weights = weights if weights is not None else [1.0] * len(values)
    present = [(m, w, v) for m, w, v in zip(masks, weights, values, strict=True) if v is not None]
    return sum(m * w * v for m, w, v in present) if present else None


def direct_total(values: Sequence[float | None], weights: Sequence[float] | None = None) -> float | None:
    """D-RA: R_total = Σ_i w_i R_i with no gate; None when no component applies."""
    return gated_total(values, [None] * len(values), weights=weights)


def two_level_rewards(r_high: float, r_low: Sequence[float], delta: float, *, submitted: bool = True,
                      gate_penalties: bool = True) -> list[float]:
    """Per-step rewards of the two-level form: r_low_t while r_high >= δ, and r_high added at the last step.

    `submitted` False (a timeout, out of turns) closes the gate. With `gate_penalties` False a negative r_low_t
    (an invalid-call penalty) counts even when the gate is closed. An episode with no step gets [r_high].
    """
    open_ = submitted and r_high >= delta
    steps = [r if open_ or (r < 0 and not gate_penalties) else 0.0 for r in r_low] or [0.0]
    steps[-1] += r_high
    return steps


def two_level_return(r_high: float, r_low: Sequence[float], delta: float, *, submitted: bool = True,
                     gate_penalties: bool = True) -> float:
    """G-RA's two-level return: r_high + Σ_t (r_low_t if r_high >= δ else 0)."""
    return sum(two_level_rewards(r_high, r_low, delta, submitted=submitted, gate_penalties=gate_penalties))


def direct_return(r_high: float, r_low: Sequence[float]) -> float:
    """D-RA's return: r_high + Σ_t r_low_t."""
    return r_high + sum(r_low)
