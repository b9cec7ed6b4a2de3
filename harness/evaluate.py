"""`gymbox eval`: run a task suite with a policy, k samples per task, and report pass@k and mean reward.

Writes into the output folder: `trajectories/` (the store, every episode as it finishes), `summary.json` and
`summary.md` (overall and per-category tables). Shows a progress bar while it runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gymbox.agent.models import resolve_model
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Trajectory
from gymbox.harness import runlog
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.metrics import Summary, summarize
from gymbox.harness.ray_runner import runtime_options
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.user_policy import served, user_endpoint
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite
from gymbox.tasks.toolcall.tau2 import with_user

USER_LOG = "user-server.log"  # a served simulated user's vLLM output


class EvalRun(BaseModel):
    """What to evaluate and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(description="SUITE or SUITE:split")
    policy: PolicySpec
    k: int = Field(default=1, ge=1, description="samples per task")
    out: Path = Path("runs/eval")
    limit: int | None = Field(default=None, gt=0, description="only the first N tasks")
    config: EpisodeConfig = Field(default_factory=EpisodeConfig)
    runtime: Literal["local", "process", "docker"] = "local"
    workers: int = Field(default=2, ge=1, description="environment workers per environment")
    containers: int | None = Field(default=None, ge=1, description="docker runtime: containers at once per worker "
                                                                    "(default: what the machine can run)")
    concurrency: int = Field(default=32, ge=1, description="episodes at a time on one worker")
    base_seed: int = 0
    ray_address: str | None = None
    user_policy: str | None = Field(default=None, description="τ²-bench tasks: the simulated user (a model to "
                                    "serve, openai:URL#MODEL or gold), written into each task's payload")

    @model_validator(mode="after")
    def _runtime_fits(self) -> EvalRun:
        runtime_options(self.runtime, self.containers)
        return self

    def tasks(self, user: str | None = None) -> list[TaskSpec]:
        """The tasks to play, with the simulated user `user` (default: `user_policy` as given) in τ² payloads."""
        tasks = list(load_suite(self.suite).tasks)
        user = user or self.user_policy
        tasks = with_user(tasks, user) if user else tasks
        return tasks[: self.limit] if self.limit else tasks


def ready_line(info: dict[str, Any], **more: object) -> str:
    """`policy ready: NAME, dtype D (why), ...` from a policy server's `info()` and `more` settings."""
    parts = [f"policy ready: {info.get('name', '?')}"]
    described = info.get("describe") or {}
    if described.get("dtype"):
        reason = described.get("dtype_reason")
        parts.append(f"dtype {described['dtype']}" + (f" ({reason})" if reason else ""))
    return ", ".join(parts + [f"{k} {v}" for k, v in more.items()])


def pass_ks(k: int) -> list[int]:
    """The k values reported for k samples per task: 1, powers of two below k, and k."""
    return sorted({1, k, *(2**i for i in range(1, k.bit_length()) if 2**i < k)})


class _Progress:
    """A progress bar that counts episodes, successes and masked failures as they arrive."""

    def __init__(self, console: Console, total: int) -> None:
        self.bar = Progress(TextColumn("[bold]eval[/bold]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=console, transient=False)
        self.task = self.bar.add_task("episodes", total=total, status="starting the policy")
        self.success = self.masked = self.done = 0

    def starting(self, what: str) -> None:
        self.bar.update(self.task, status=what)

    def __call__(self, trajectory: Trajectory) -> None:
        self.done += 1
        self.masked += trajectory.masked
        self.success += trajectory.signals.get("success", 0.0) >= 1.0 and not trajectory.masked
        self.bar.update(self.task, advance=1, status=f"success {self.success}/{self.done - self.masked}"
                        + (f", masked {self.masked}" if self.masked else ""))


async def evaluate(run: EvalRun, console: Console | None = None) -> Summary:
    """Run the evaluation, writing trajectories and summaries under `run.out`; returns the summary."""
    console = console or Console()
    tasks = run.tasks()
    if not tasks:
        raise ValueError(f"suite {run.suite!r} has no tasks to evaluate")
    run.out.mkdir(parents=True, exist_ok=True)
    user = run.user_policy if any(t.payload.get("kind") == "tau2" for t in tasks) else None
    if user and served(user):
        console.print(f"serving the simulated user's model, {user} (log: {run.out / USER_LOG})")
    with user_endpoint(user, run.out / USER_LOG, run.runtime) as endpoint:
        return await _play(run, run.tasks(endpoint) if endpoint else tasks, console)


async def _play(run: EvalRun, tasks: list[TaskSpec], console: Console) -> Summary:
    from gymbox.harness.ray_runner import RayRollouts

    writer = TrajectoryStore(run.out / "trajectories").writer()
    started = time.perf_counter()
    trajectories: list[Trajectory] = []
    progress = _Progress(console, len(tasks) * run.k)

    def on_result(trajectory: Trajectory) -> None:
        writer.append(trajectory)  # before anything else: a crash later loses no finished episode
        trajectories.append(trajectory)
        progress(trajectory)

    with progress.bar:
        async with RayRollouts(run.policy, run.config, runtime=run.runtime, workers_per_env=run.workers,
                               runtime_options=runtime_options(run.runtime, run.containers),
                               concurrency=run.concurrency, address=run.ray_address) as rollouts:
            progress.starting("running episodes")
            console.print(ready_line(rollouts.policy_info))
            await rollouts.run(tasks, run.k, base_seed=run.base_seed, on_result=on_result)
            policy_name = rollouts.policy_info.get("name", run.policy.label)
    writer.close()
    summary = summarize(trajectories, pass_ks(run.k))
    seconds = time.perf_counter() - started
    write_summary(run, summary, policy_name, seconds)
    console.print(Markdown(f"### {run.suite}: {policy_name}, k={run.k}\n\n{summary.to_markdown()}"))
    console.print(f"{len(trajectories)} episodes in {seconds:.0f} s; trajectories and summaries in {run.out}")
    return summary


def write_summary(run: EvalRun, summary: Summary, policy_name: str, seconds: float) -> None:
    meta: dict[str, Any] = {"suite": run.suite, "policy": run.policy.model_dump(), "policy_name": policy_name,
                            "k": run.k, "limit": run.limit, "base_seed": run.base_seed, "runtime": run.runtime,
                            "config": run.config.model_dump(), "seconds": round(seconds, 1)}
    (run.out / "summary.json").write_text(json.dumps({**meta, "summary": summary.to_dict()}, indent=2) + "\n")
    (run.out / "summary.md").write_text(
        f"# {run.suite}: {policy_name}\n\nk = {run.k}, {summary.overall.episodes} episodes, "
        f"{seconds:.0f} s\n\n{summary.to_markdown()}\n")


def main(run: EvalRun) -> int:
    console = Console()
    if run.policy.kind in ("vllm", "hf") and run.policy.model:  # a bad model fails here, not in a Ray actor
        resolve_model(run.policy.model)
    log = runlog.start(run.out / "gymbox.log")
    console.print(f"engine, Ray and worker output: {log}")
    asyncio.run(evaluate(run, console))
    return 0
