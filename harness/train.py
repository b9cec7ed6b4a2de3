"""`gymbox train`: rollouts -> rewards -> advantages -> GRPO update -> weight sync, with checkpoints and logs.

A run lives in `config.out`: `trajectories/` (every rollout, scored), `metrics.jsonl` (one line per step),
`eval.jsonl` (held-out evaluations), `tensorboard/` (the same numbers; `tracking` adds other backends),
`checkpoints/` (model, optimizer, step, random states; the latest is resumed automatically), `weights/` (what the
vLLM policy serves) and `reward.png` (the reward curve).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gymbox.agent.learner import checkpoint, lora
from gymbox.agent.learner.learner import Learner
from gymbox.agent.models import model_path as resolve_model_name
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Trajectory
from gymbox.harness import runlog
from gymbox.harness.evaluate import USER_LOG, ready_line
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.tracking import Tracker
from gymbox.harness.train_config import TrainConfig
from gymbox.harness.train_report import RUN_CONFIG, plot_rewards, print_eval
from gymbox.harness.train_signal import advantages, reward_metrics, samples_of
from gymbox.harness.train_tasks import play_rounds, step_indices
from gymbox.harness.user_policy import served, user_endpoint
from gymbox.rewards.score import load_spec
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite
from gymbox.tasks.toolcall.tau2 import with_user

EVAL_SEED = 10_000  # held-out episodes use their own seeds, the same before and after training


class RolloutsFailed(RuntimeError):
    """Every rollout of a step failed for reasons outside the policy (workers killed, engine gone)."""


class Trainer:
    """Runs a `TrainConfig`; `await Trainer(config).run()`."""

    def __init__(self, config: TrainConfig, *, fresh: bool = False, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(soft_wrap=True)  # a step line stays one line in a log file
        self.out = Path(config.out)
        if fresh and self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        # A bad suite name fails before any model loads; offline training (`source`) has no suite.
        self.tasks = list(load_suite(config.suite).tasks) if config.suite else []
        self.eval_tasks = self._eval_tasks()

    def _eval_tasks(self) -> list[TaskSpec]:
        if self.config.eval is None:
            return []
        tasks = list(load_suite(self.config.eval.suite).tasks)
        return tasks[: self.config.eval.limit] if self.config.eval.limit else tasks

    # ---- the loop ----

    async def run(self) -> dict[str, Any]:
        """Train for the configured steps (from the latest checkpoint when there is one); the last metrics."""
        cfg = self.config
        # The settings this run goes on with, beside its results (a resumed run with another --steps rewrites it).
        (self.out / RUN_CONFIG).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        saved = checkpoint.latest(self.out / "checkpoints")
        initial = resolve_model_name(cfg.model)
        model_path = saved / "model" if saved else Path(initial)
        self.console.print(f"loading the learner from {model_path}")
        if saved:  # the KL reference stays the run's initial model (`checkpoint.resume`)
            learner, extra = await asyncio.to_thread(checkpoint.resume, saved, initial, cfg.learner, lora=cfg.lora)
            start = int(extra["step"])
            self.console.print(f"resumed from {saved} at step {start}")
        else:
            learner = await asyncio.to_thread(Learner.from_pretrained, initial, cfg.learner, lora=cfg.lora,
                                              seed=cfg.seed)
            start = 0
        tokenizer = _tokenizer(model_path)
        if saved and cfg.lora is not None:  # the checkpoint holds adapters: the policy starts from base + them
            model_path = self.out / "weights" / f"v{start}"
            await asyncio.to_thread(lora.save_servable, learner.model, model_path)
            tokenizer.save_pretrained(model_path)
        engine = "hf:" if cfg.engine == "transformers" else ""
        spec = PolicySpec.parse(f"{engine}{model_path}", max_model_len=cfg.max_model_len,
                                weights_version=str(start), seed=cfg.seed)
        writer = TrajectoryStore(self.out / "trajectories").writer()
        self.tracker = Tracker(self.out, cfg.tracking, config=cfg.model_dump(mode="json"), resume_step=start)
        last: dict[str, Any] = {}
        try:
            async with self._policy(spec) as rollouts:
                if rollouts is not None:
                    self.console.print(ready_line(rollouts.policy_info, weights=start))
                if start == 0 and cfg.eval:
                    await self._evaluate(rollouts, "before", 0)
                for step in range(start, cfg.steps):
                    last = await self._step(rollouts, learner, writer, step)
                    done = step + 1
                    if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                        path = await asyncio.to_thread(checkpoint.save, learner, self.out / "checkpoints",
                                                       extra={"step": done}, tokenizer=tokenizer,
                                                       keep=cfg.keep_checkpoints)
                        self.console.print(f"checkpoint {path}")
                    if cfg.eval and cfg.eval.every and done % cfg.eval.every == 0 and done != cfg.steps:
                        await self._evaluate(rollouts, f"step {done}", done)
                if cfg.eval and start < cfg.steps:
                    await self._evaluate(rollouts, "after", cfg.steps)
        finally:
            writer.close()
            self.tracker.close()
        plot = plot_rewards(self.out)
        if plot:
            self.console.print(f"reward curve: {plot}")
        print_eval(self.out, self.console)
        return last

    @contextlib.asynccontextmanager
    async def _policy(self, spec: PolicySpec) -> AsyncIterator[Any]:
        """The rollouts (Ray workers and the policy engine) a run plays with, and the simulated user's server
        when `user_policy` names a model for τ²-bench tasks."""
        from gymbox.harness.ray_runner import RayRollouts, runtime_options

        cfg = self.config
        tau2 = any(t.payload.get("kind") == "tau2" for t in [*self.tasks, *self.eval_tasks])
        user = cfg.user_policy if tau2 else None
        if user and served(user):
            self.console.print(f"serving the simulated user's model, {user} (log: {self.out / USER_LOG})")
        with user_endpoint(user, self.out / USER_LOG, cfg.runtime) as endpoint:
            if endpoint:
                self.tasks, self.eval_tasks = with_user(self.tasks, endpoint), with_user(self.eval_tasks, endpoint)
            async with RayRollouts(spec, cfg.episode, runtime=cfg.runtime, workers_per_env=cfg.workers,
                                   runtime_options=runtime_options(cfg.runtime, cfg.containers),
                                   address=cfg.ray_address) as rollouts:
                yield rollouts

    async def _batch(self, rollouts: Any, writer: Any, step: int) -> list[Trajectory]:
        """Step `step`'s scored trajectories: its tasks' groups, played by the policy and stored."""
        cfg = self.config
        tasks = self._tasks_for(step)
        with self._bar(f"step {step + 1}: rollouts", len(tasks) * cfg.group_size) as advance:
            scored = await play_rounds(lambda part, seed: rollouts.run(part, cfg.group_size, base_seed=seed,
                                                                       on_result=advance, step=step),
                                       tasks, cfg.seed * 1_000_003 + step)
        for t in scored:
            writer.append(t)
        return scored

    async def _step(self, rollouts: Any, learner: Learner, writer: Any, step: int) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        scored = await self._batch(rollouts, writer, step)
        rollout_s = time.perf_counter() - started
        if scored and all(t.masked for t in scored):
            first = scored[0].error
            raise RolloutsFailed(f"step {step + 1}: all {len(scored)} rollouts ended in infrastructure errors "
                                 f"({first.code if first else '?'}: {first.message if first else '?'}), so there "
                                 "is nothing to learn from; the run stops at its last checkpoint. Fix the cause "
                                 f"(see {self.out / 'gymbox.log'}) and run the same command to resume.")
        values, zero_std = advantages(scored, estimator=cfg.advantage, turn_level=cfg.turn_level, gamma=cfg.gamma,
                                      spec=load_spec(cfg.episode.reward))
        samples = samples_of(scored, values, skip_zero=cfg.skip_zero_advantage)
        metrics: dict[str, Any] = {"step": step + 1, **reward_metrics(scored), "zero_std_fraction": zero_std,
                                   "samples": len(samples), "rollout_s": rollout_s}
        if samples:
            stats = await asyncio.to_thread(learner.update, samples)
            metrics.update(stats.as_dict())
            synced = time.perf_counter()
            await self._sync(rollouts, learner, step + 1)
            metrics["sync_s"] = time.perf_counter() - synced
        else:  # every group's rewards were equal: no gradient, the weights stay as they are
            metrics["skipped"] = "no learning signal: every group's rewards are equal"
        metrics["weights_version"] = self._weights_version(rollouts, step)
        metrics["seconds"] = time.perf_counter() - started
        self.tracker.log(metrics, step=step + 1)
        self._report(metrics)
        return metrics

    def _weights_version(self, rollouts: Any, step: int) -> str | None:
        """The weights the policy serves after step `step` (the next step's rollouts are theirs)."""
        return rollouts.policy_info.get("weights_version")

    def _tasks_for(self, step: int) -> list[TaskSpec]:
        """`tasks_per_step` tasks, distinct while the suite has enough (`train_tasks.step_indices`)."""
        indices = step_indices(len(self.tasks), self.config.tasks_per_step, step, self.config.seed)
        return [self.tasks[i] for i in indices]

    async def _sync(self, rollouts: Any, learner: Learner, version: int) -> None:
        """Write the weights where the policy can read them and have it load them as `version`."""
        folder = self.out / "weights" / f"v{version}"
        await asyncio.to_thread(lora.save_servable, learner.model, folder)
        await rollouts.load_weights(str(folder.resolve()), str(version))
        for old in (self.out / "weights").glob("v*"):
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)

    async def _evaluate(self, rollouts: Any, when: str, step: int) -> None:
        evs = self.config.eval
        assert evs is not None
        episode = self.config.episode
        if evs.samples == 1:  # one sample per task is greedy
            episode = episode.model_copy(update={"sampling": episode.sampling.model_copy(update={"temperature": 0.0})})
        self.console.print(f"held-out evaluation ({when}): {len(self.eval_tasks)} tasks x {evs.samples}")
        with self._bar(f"evaluation ({when})", len(self.eval_tasks) * evs.samples) as advance:
            scored = await rollouts.run(self.eval_tasks, evs.samples, base_seed=EVAL_SEED, config=episode,
                                        on_result=advance, step=step)
        record = {"when": when, "step": step, "suite": evs.suite, **reward_metrics(scored)}
        self.tracker.log(record, step=step, file="eval.jsonl", prefix="eval/")

    @contextlib.contextmanager
    def _bar(self, what: str, total: int) -> Iterator[Callable[[Trajectory], None]]:
        """A transient progress bar counting finished episodes; yields the callback that advances it."""
        with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda _: bar.advance(task)

    def _report(self, m: dict[str, Any]) -> None:
        def f(key: str, fmt: str = ".3f") -> str:
            value = m.get(key)
            return "-" if value is None else format(value, fmt)

        self.console.print(
            f"step {m['step']:>4}/{self.config.steps}  reward {f('reward_mean')} ± {f('reward_std')}  "
            f"success {f('success', '.2f')}  zero-std {f('zero_std_fraction', '.2f')}  samples {m['samples']}  "
            f"loss {f('loss', '.4f')}  clip {f('clip_fraction', '.3f')}  kl {f('kl', '.4f')}  "
            f"entropy {f('entropy', '.2f')}  {f('tokens_per_s', '.0f')} tok/s  {m['seconds']:.0f} s")


def _tokenizer(model_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path))


def main(config: TrainConfig, *, fresh: bool = False) -> int:
    if config.source is not None:  # batches from a trajectory store, not rollouts
        from gymbox.harness.train_offline import OfflineTrainer

        trainer: Trainer = OfflineTrainer(config, fresh=fresh)
    else:
        trainer = Trainer(config, fresh=fresh)
    trainer.console.print(f"engine, Ray and worker output: {runlog.start(trainer.out / 'gymbox.log')}")
    try:
        asyncio.run(trainer.run())
    except RolloutsFailed as err:
        trainer.console.print(f"[red]training stopped[/red]: {err}")
        return 1
    return 0
