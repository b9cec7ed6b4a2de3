"""What the viewer's trajectory pages show: token spans with loss mask and logprob, per-turn advantages, diffs."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymbox.environments.records import Trajectory, Turn

log = logging.getLogger(__name__)

# Estimators that need no reward spec (gdpo and dvao combine a spec's components; the viewer may not have it).
ESTIMATORS = ("grpo", "dr_grpo", "rloo", "unlikeliness")


@dataclass(frozen=True)
class Token:
    """One token as the token view shows it."""

    id: int
    text: str
    mask: int
    logprob: float | None

    @property
    def color(self) -> str:
        """Background by logprob: green when the policy was sure (p near 1), through yellow, to red (p near 0)."""
        if self.logprob is None:
            return ""
        p = math.exp(max(self.logprob, -50.0))
        return f"hsl({round(120 * p)}, 75%, 82%)"

    @property
    def title(self) -> str:
        lp = "-" if self.logprob is None else f"{self.logprob:.3f} (p={math.exp(max(self.logprob, -50.0)):.3f})"
        return f"id {self.id} · loss mask {self.mask} · logprob {lp}"


class Tokenizers:
    """Tokenizers to show token text, loaded once each: the one named on the command line, else the recorded
    policy's when it is a local model folder; none (token ids shown as numbers) when neither is there."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def for_trajectory(self, trajectory: Trajectory) -> Any:
        from gymbox.agent.models import resolve_model

        if self.name:
            return _load(self.name)
        folder = Path(resolve_model(trajectory.provenance.policy))
        has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
        return _load(str(folder)) if has_tokenizer else None


@functools.lru_cache(maxsize=4)
def _load(name: str) -> Any:
    from gymbox.agent.spec import load_tokenizer

    try:
        return load_tokenizer(name)
    except (OSError, ValueError) as err:  # not a tokenizer folder: the view shows ids instead
        log.warning("cannot load tokenizer %s: %s", name, err)
        return None


def tokens(token_ids: Sequence[int], loss_mask: Sequence[int], logprobs: Sequence[float | None],
           tokenizer: Any) -> list[Token]:
    """Aligned tokens; each token's text decoded alone (what it adds), or its id when there is no tokenizer."""
    texts = tokenizer.batch_decode([[i] for i in token_ids]) if tokenizer is not None and token_ids else \
        [f"[{i}]" for i in token_ids]
    return [Token(i, text, m, lp) for i, text, m, lp in zip(token_ids, texts, loss_mask, logprobs, strict=True)]


def token_summary(trajectory: Trajectory) -> dict[str, Any]:
    """Counts for the token view's header: tokens, trained (mask 1), and the mean logprob of trained tokens."""
    mask = trajectory.loss_mask
    lps = [lp for lp, m in zip(trajectory.logprobs, mask, strict=True) if m and lp is not None]
    return {"tokens": len(mask), "trained": sum(mask), "masked": len(mask) - sum(mask),
            "mean_logprob": sum(lps) / len(lps) if lps else None}


def group_advantages(group: Sequence[Trajectory], *, estimator: str = "grpo",
                     turn_level: bool = False) -> tuple[list[list[float] | float | None], str | None]:
    """Each rollout's advantage as the learner computes it (`train_signal.advantages`): one number, or one per
    turn with `turn_level`; masked or unscored rollouts get 0 and stay out of the statistics. When there is none
    (a group of one, an unknown estimator), None for each and the reason."""
    if estimator not in ESTIMATORS:
        return [None] * len(group), f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
    from gymbox.harness.train_signal import advantages

    try:
        values, _ = advantages(list(group), estimator=estimator, turn_level=turn_level)
    except ValueError as err:  # the estimator's own reason, e.g. a group of fewer than 2 rollouts
        return [None] * len(group), str(err)
    return list(values), None


def per_turn(value: list[float] | float | None, turns: int) -> list[float | None]:
    """A rollout's advantage on each turn: the same number on every turn for a trajectory-level estimator."""
    if value is None:
        return [None] * turns
    if isinstance(value, list):
        return [*value, *[None] * (turns - len(value))]
    return [value] * turns


def turn_differs(a: Turn | None, b: Turn | None) -> bool:
    """Whether two aligned turns did something different (text, call or answer)."""
    if a is None or b is None:
        return True
    return (a.text, a.action, a.observation) != (b.text, b.action, b.observation)
