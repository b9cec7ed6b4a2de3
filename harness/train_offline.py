"""Offline GRPO: `gymbox train` with `source: {store: PATH}` learns from a trajectory store instead of rollouts.

Each step takes `tasks_per_step` of the store's groups (a group: the rollouts of one task from one initial state,
`Trajectory.group`), walked in seeded passes as online training walks a suite's tasks, rescores them with the
run's reward spec (`rewards.score`), and takes advantages within each group whatever its size; groups with fewer
than `source.min_group` usable rollouts are left out (a group of one has no baseline). No policy engine starts
unless the run evaluates on held-out tasks; that engine gets the learner's weights before each evaluation only.

What the ratio and the clip mean offline. The store's per-token log-probs are the behaviour policy mu (whatever
sampled the store). The loss is the online one: r = pi_theta / pi_old, pi_old the learner's weights at the start
of the step, clipped to [1 - clip_low, 1 + clip_high]; so the clip bounds how far one step moves the policy, not
how far the policy is from the data. That distance is corrected by the truncated importance weight
w = min(pi_old / mu, tis_cap) on each token's policy-gradient term (Yao et al. 2025's correction, applied here to an
off-policy store rather than a sampler/learner mismatch): as training leaves mu behind, `mismatch_kl` grows and
`is_truncated_fraction` counts the tokens whose weight the cap cut. A scripted or expert behaviour policy records
log-prob 0 (mu = 1, it is deterministic), so there w = pi_old(token). A store without log-probs trains only with
`learner.old_logprobs: recompute`, which treats it as on-policy data (w = 1).
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gymbox.agent.learner.learner import Learner
from gymbox.agent.models import model_path
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Trajectory
from gymbox.harness.episode import policy_messages
from gymbox.harness.store import StoreError, TrajectoryStore
from gymbox.harness.train import Trainer
from gymbox.harness.train_config import OfflineSource, TrainConfig, TrainConfigError
from gymbox.harness.train_tasks import step_indices
from gymbox.rewards.score import score

PROBES = 16  # trajectories whose prompt tokens are re-rendered with the trained model's tokenizer


@dataclass
class StoreGroups:
    """A store's usable groups (each in sample order, the groups in the order the store first holds them)."""

    path: Path
    records: int
    groups: list[list[Trajectory]]
    left_out: Counter[str] = field(default_factory=Counter)

    @property
    def trajectories(self) -> list[Trajectory]:
        return [t for g in self.groups for t in g]


def read_groups(source: OfflineSource, *, held_out: set[str] | frozenset[str] = frozenset()) -> StoreGroups:
    """The store's groups for training; `TrainConfigError` when the store cannot be trained on as configured:
    unreadable or empty, trajectories without token ids, test-split tasks (unless `allow_test`), tasks of the
    held-out evaluation (`held_out`: task ids), or no group left with `min_group` usable rollouts."""
    where = f"source.store {source.store}"
    latest: dict[str, Trajectory] = {}
    try:
        for t in TrajectoryStore(source.store).iter():
            latest[t.id] = t  # a later record of the same id supersedes an earlier one (`TrajectoryStore.get`)
    except StoreError as exc:
        raise TrainConfigError(f"{where}: {exc}") from exc
    records = list(latest.values())
    if not records:
        raise TrainConfigError(f"{where}: the store holds no trajectories")
    test = sorted({t.task.id for t in records if t.task.split == "test"})
    if test and not source.allow_test:
        raise TrainConfigError(f"{where}: {len(test)} task(s) of a test split ({', '.join(test[:3])} ...): held-out "
                               "tasks are never trained on by default; collect from a train split, or set "
                               "source.allow_test: true if that is really meant")
    overlap = sorted({t.task.id for t in records} & set(held_out))
    if overlap:
        raise TrainConfigError(f"{where}: {len(overlap)} task(s) of the store are also in eval.suite "
                               f"({', '.join(overlap[:3])} ...): an evaluation on tasks trained on measures nothing; "
                               "evaluate on another split")
    text_only = [t.id for t in records if not t.prompt_ids or any(turn.loss_mask and not turn.token_ids
                                                                  for turn in t.turns)]
    if text_only:
        raise TrainConfigError(f"{where}: {len(text_only)} trajectorie(s) have no token ids ({text_only[0]} ...): "
                               "they were played by a text-level policy (a chat endpoint); offline training needs "
                               "the tokens the policy generated: collect with a token policy (vLLM, openai+tokens:, "
                               "an expert with a tokenizer)")
    left_out: Counter[str] = Counter()
    by_group: dict[str, list[Trajectory]] = {}
    for t in records:
        if t.masked:  # an infrastructure failure is never learned from (nor scored)
            left_out["masked (infrastructure error)"] += 1
            continue
        by_group.setdefault(t.group, []).append(t)
    groups = []
    for members in by_group.values():
        if len(members) < source.min_group:
            left_out[f"in groups of fewer than {source.min_group}"] += len(members)
            continue
        groups.append(sorted(members, key=lambda t: t.sample))
    if not groups:
        raise TrainConfigError(f"{where}: no group has {source.min_group} or more usable rollouts ({len(records)} "
                               f"trajectories, {len(by_group)} groups): GRPO compares rollouts of one task; collect "
                               "several samples per task (group size >= 2)")
    return StoreGroups(path=source.store, records=len(records), groups=groups, left_out=left_out)


def check_tokens(trajectories: list[Trajectory], tokenizer: Any, model: str, probes: int = PROBES) -> None:
    """Refuse a store whose tokens are not the trained model's: a token id beyond its vocabulary, or a prompt whose
    ids differ from what its tokenizer and chat template make of the recorded messages (checked on `probes`
    trajectories spread over the store)."""
    from gymbox.agent.chat import ChatFormatter

    vocab = len(tokenizer)
    for t in trajectories:
        top = max(chain(t.prompt_ids, *(turn.token_ids for turn in t.turns)), default=0)
        if top >= vocab:
            raise TrainConfigError(f"trajectory {t.id} has token id {top}, beyond the {vocab} tokens of {model}'s "
                                   f"tokenizer: the store was made with another tokenizer (behaviour policy "
                                   f"{t.provenance.policy!r}); train a model with that tokenizer")
    for t in trajectories[:: max(1, len(trajectories) // probes)][:probes]:
        expected = ChatFormatter(tokenizer).prompt(policy_messages(t.prompt, t.instructions), t.tools)
        if expected != t.prompt_ids:
            at = next((i for i, (a, b) in enumerate(zip(expected, t.prompt_ids, strict=False)) if a != b),
                      min(len(expected), len(t.prompt_ids)))
            raise TrainConfigError(f"trajectory {t.id}: its prompt tokens differ from what {model}'s tokenizer and "
                                   f"chat template make of its messages (from token {at} of {len(t.prompt_ids)}): "
                                   f"the store was tokenized for another model (behaviour policy "
                                   f"{t.provenance.policy!r}); train a model with the same tokenizer and template, "
                                   "or collect again with this one's")


def check_logprobs(trajectories: list[Trajectory], old_logprobs: str) -> None:
    """Refuse importance correction from a store that lacks the behaviour policy's log-probs."""
    lacking = [t.id for t in trajectories
               if any(lp is None for turn in t.turns for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True) if m)]
    if lacking and old_logprobs != "recompute":
        raise TrainConfigError(f"{len(lacking)} of {len(trajectories)} trajectories lack the behaviour policy's "
                               f"log-probs ({lacking[0]} ...), which weigh each token offline: set "
                               "learner.old_logprobs: recompute to train on them as if on-policy (no importance "
                               "correction), or collect with a policy that records log-probs (vLLM does)")


class OfflineTrainer(Trainer):
    """`Trainer` whose batches come from a trajectory store (`config.source`); the loop, the learner, checkpoints,
    resume, metrics and evaluation are the online run's."""

    def __init__(self, config: TrainConfig, *, fresh: bool = False, console: Console | None = None) -> None:
        if config.source is None:
            raise ValueError("OfflineTrainer needs a config with `source`")
        super().__init__(config, fresh=fresh, console=console)
        from transformers import AutoTokenizer

        self.source = config.source
        with self.console.status(f"reading {self.source.store}"):
            self.data = read_groups(self.source, held_out={t.id for t in self.eval_tasks})
            model = model_path(config.model)
            check_tokens(self.data.trajectories, AutoTokenizer.from_pretrained(model), config.model)
            check_logprobs(self.data.trajectories, config.learner.old_logprobs)
        self.per_step = min(config.tasks_per_step, len(self.data.groups))  # a step never holds a group twice
        if self.source.epochs is not None:
            steps = max(1, math.ceil(self.source.epochs * len(self.data.groups) / self.per_step))
            self.config = config.model_copy(update={"steps": steps})
        self._pending: tuple[Learner, int] | None = None  # weights the evaluation engine has not loaded yet
        self._version: int | None = None
        self._summary()

    def _policy(self, spec: PolicySpec) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.config.eval is None:
            return contextlib.nullcontext(None)  # nothing is played: no engine, no Ray
        return super()._policy(spec)

    async def _batch(self, rollouts: Any, writer: Any, step: int) -> list[Trajectory]:
        """Step `step`'s groups from the store, rescored by the run's reward spec at this step."""
        indices = step_indices(len(self.data.groups), self.per_step, step, self.config.seed)
        return [score(t, self.config.episode.reward, step=step) for i in indices for t in self.data.groups[i]]

    async def _sync(self, rollouts: Any, learner: Learner, version: int) -> None:
        self._pending, self._version = (learner, version), version  # loaded before the next evaluation

    async def _evaluate(self, rollouts: Any, when: str, step: int) -> None:
        if self._pending is not None:
            learner, version = self._pending
            await super()._sync(rollouts, learner, version)
            self._pending = None
        await super()._evaluate(rollouts, when, step)

    def _weights_version(self, rollouts: Any, step: int) -> str | None:
        return None if self._version is None else str(self._version)  # the learner's: nothing serves them

    def _summary(self) -> None:
        data, cfg = self.data, self.config
        sizes = Counter(len(g) for g in data.groups)
        policies = Counter(f"{t.provenance.policy} (weights {t.provenance.weights_version})"
                           for t in data.trajectories)
        table = Table(title=f"offline training from {data.path}", show_header=False)
        table.add_row("trajectories", f"{data.records} read, {len(data.trajectories)} used")
        by_size = ", ".join(f"{n} of {s}" for s, n in sorted(sizes.items()))
        table.add_row("groups", f"{len(data.groups)} ({by_size} rollouts)")
        for why, n in sorted(data.left_out.items()):
            table.add_row("left out", f"{n} {why}")
        table.add_row("environments", ", ".join(f"{e} {n}" for e, n in
                                                Counter(t.task.env for t in data.trajectories).most_common()))
        table.add_row("behaviour policy", "; ".join(f"{p}: {n}" for p, n in policies.most_common(3)))
        table.add_row("reward", f"rescored by {cfg.episode.reward or 'the outcome'}")
        epochs = cfg.steps * self.per_step / len(data.groups)
        table.add_row("steps", f"{cfg.steps} x {self.per_step} groups ({epochs:.2g} passes over the store)")
        table.add_row("policy engine", "for evaluation only" if cfg.eval else "none (no evaluation configured)")
        self.console.print(table)
