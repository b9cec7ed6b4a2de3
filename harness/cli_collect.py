"""`gymbox collect`: play every task of a suite (an expert's, usually) and keep the demonstrations in a store.

The episodes run through the same rollout machinery as `gymbox eval` (Ray workers, the episode loop, retries), so
a demonstration has the trained model's chat template, the parser's format and the loss masks of a policy's own
turns. By default only successful episodes are kept: an expert that fails its own task is a bug to look at (the
summary lists each one), not a demonstration to train on. Tasks the expert has nothing for (say, BFCL's relevance
tasks, which have no reference answer) are skipped and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gymbox.agent.parsers import PARSERS
from gymbox.agent.policy import Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Trajectory
from gymbox.harness import runlog
from gymbox.harness.cli_eval import add_rollout_arguments
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.metrics import succeeded
from gymbox.harness.ray_runner import runtime_options
from gymbox.harness.store import TrajectoryStore
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite

console = Console()
SHOWN_FAILURES = 20


class NothingToCollect(ValueError):
    """The suite (after --limit and the skipped tasks) leaves no task to play."""


class CollectRun(BaseModel):
    """What to collect and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str = Field(description="SUITE or SUITE:split")
    policy: PolicySpec
    out: Path = Field(description="the trajectory store to write (a folder; appended to when it exists)")
    keep: Literal["success", "all"] = Field(default="success", description="which episodes go into the store")
    limit: int | None = Field(default=None, gt=0, description="only the first N tasks")
    config: EpisodeConfig = Field(default_factory=EpisodeConfig)
    runtime: Literal["local", "process", "docker"] = "local"
    workers: int = Field(default=2, ge=1, description="environment workers per environment")
    containers: int | None = Field(default=None, ge=1, description="docker runtime: containers at once per worker")
    concurrency: int = Field(default=32, ge=1, description="episodes at a time on one worker")
    base_seed: int = 0
    ray_address: str | None = None

    @model_validator(mode="after")
    def _runtime_fits(self) -> CollectRun:
        runtime_options(self.runtime, self.containers)
        return self

    def tasks(self) -> list[TaskSpec]:
        tasks = list(load_suite(self.suite).tasks)
        return tasks[: self.limit] if self.limit else tasks


def kept(trajectory: Trajectory) -> bool:
    """A demonstration: the episode ran without error and succeeded."""
    return trajectory.error is None and succeeded(trajectory)


def failure_reason(trajectory: Trajectory) -> str:
    """Why an episode is no demonstration, in a few words."""
    if trajectory.error is not None:
        return f"{trajectory.error.code}: {trajectory.error.message}"
    if trajectory.truncated:
        return f"truncated by {trajectory.truncated_by} after {len(trajectory.turns)} turns"
    return f"not successful (success {trajectory.signals.get('success', 0.0):g}) after {len(trajectory.turns)} turns"


@dataclass
class EnvTally:
    """Figures of one environment."""

    tasks: int = 0
    skipped: int = 0
    played: int = 0
    succeeded: int = 0
    masked: int = 0
    kept: int = 0
    tokens: int = 0  # in the kept episodes
    trained_tokens: int = 0  # kept tokens under the loss mask (the policy's turns)
    turns: int = 0  # in the kept episodes


@dataclass
class CollectReport:
    envs: dict[str, EnvTally] = field(default_factory=lambda: defaultdict(EnvTally))
    failures: list[tuple[str, str]] = field(default_factory=list)  # (trajectory id, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (task id, reason)
    seconds: float = 0.0

    def add(self, trajectory: Trajectory, keep: bool) -> None:
        tally = self.envs[trajectory.task.env]
        tally.played += 1
        tally.masked += trajectory.masked
        if kept(trajectory):
            tally.succeeded += 1
        else:
            self.failures.append((trajectory.id, failure_reason(trajectory)))
        if keep:
            tally.kept += 1
            tally.tokens += len(trajectory.token_ids)
            tally.trained_tokens += sum(trajectory.loss_mask)
            tally.turns += len(trajectory.turns)

    def to_dict(self) -> dict[str, Any]:
        return {"envs": {env: asdict(t) for env, t in sorted(self.envs.items())}, "failures": self.failures,
                "skipped": self.skipped, "seconds": round(self.seconds, 1)}


def skip_reason(spec: PolicySpec, task: TaskSpec) -> str | None:
    """Why the policy has no demonstration for a task (experts only: a model may try anything)."""
    if spec.kind != "expert":
        return None
    from gymbox.agent.experts import missing_demonstration

    return missing_demonstration(task)


async def collect(run: CollectRun, console: Console = console) -> CollectReport:
    """Play the suite, writing the episodes `run.keep` asks for into the store at `run.out`."""
    from gymbox.harness.ray_runner import RayRollouts

    report = CollectReport()
    tasks = []
    for task in run.tasks():
        report.envs[task.env].tasks += 1
        reason = skip_reason(run.policy, task)
        if reason is None:
            tasks.append(task)
        else:
            report.envs[task.env].skipped += 1
            report.skipped.append((task.id, reason))
    if not tasks:
        raise NothingToCollect(f"suite {run.suite!r} has no tasks to collect from"
                         + (f" ({len(report.skipped)} skipped: no demonstration)" if report.skipped else ""))
    started = time.perf_counter()
    writer = TrajectoryStore(run.out).writer()
    bar = Progress(TextColumn("[bold]collect[/bold]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    progress = bar.add_task("episodes", total=len(tasks), status="starting the policy")

    def on_result(trajectory: Trajectory) -> None:
        keep = run.keep == "all" or kept(trajectory)
        if keep:
            writer.append(trajectory)  # at once: a crash later loses no finished episode
        report.add(trajectory, keep)
        done = sum(t.played for t in report.envs.values())
        good = sum(t.succeeded for t in report.envs.values())
        bar.update(progress, advance=1, status=f"succeeded {good}/{done}")

    try:
        with bar:
            async with RayRollouts(run.policy, run.config, runtime=run.runtime, workers_per_env=run.workers,
                                   runtime_options=runtime_options(run.runtime, run.containers),
                                   concurrency=run.concurrency, address=run.ray_address) as rollouts:
                bar.update(progress, status="running episodes")
                await rollouts.run(tasks, 1, base_seed=run.base_seed, on_result=on_result)
    finally:
        writer.close()
    report.seconds = time.perf_counter() - started
    (run.out / "collect.json").write_text(json.dumps(
        {"suite": run.suite, "policy": run.policy.model_dump(), "keep": run.keep, "limit": run.limit,
         "runtime": run.runtime, "base_seed": run.base_seed, "config": run.config.model_dump(),
         **report.to_dict()}, indent=2) + "\n")
    return report


def print_report(run: CollectRun, report: CollectReport, console: Console = console) -> None:
    # Plain text: "shell:train: expert" would otherwise show the emoji :train:.
    table = Table(title=Text(f"{run.suite} - {run.policy.label} (kept: {run.keep})", style="italic"))
    # Short headers: the table must fit an 80-column terminal. "trained": tokens under the loss mask.
    for column in ("env", "tasks", "skipped", "played", "success", "rate", "kept", "masked", "tokens", "trained",
                   "turns"):
        table.add_column(column, justify="left" if column == "env" else "right", no_wrap=True)
    rows = sorted(report.envs.items())
    total = EnvTally(**{k: sum(getattr(t, k) for _, t in rows) for k in asdict(EnvTally())})
    for name, t in [*rows, *([("all", total)] if len(rows) > 1 else [])]:
        rate = f"{100 * t.succeeded / t.played:.0f}%" if t.played else "-"
        table.add_row(name, str(t.tasks), str(t.skipped), str(t.played), str(t.succeeded), rate, str(t.kept),
                      str(t.masked), f"{t.tokens:,}", f"{t.trained_tokens:,}",
                      f"{t.turns / t.kept:.1f}" if t.kept else "-")
    console.print(table)
    if report.failures:
        failed = Table(title=f"episodes that failed ({len(report.failures)})")
        failed.add_column("trajectory", overflow="fold")
        failed.add_column("why", overflow="fold")
        for trajectory_id, reason in report.failures[:SHOWN_FAILURES]:
            failed.add_row(escape(trajectory_id), escape(reason[:300]))
        console.print(failed)
    if report.skipped:
        reasons = sorted({reason.split(": ", 1)[-1] for _, reason in report.skipped})
        console.print(f"skipped {len(report.skipped)} tasks with no demonstration: " + "; ".join(reasons[:3]))
    shown = f" (first {SHOWN_FAILURES} above)" if len(report.failures) > SHOWN_FAILURES else ""
    console.print(f"{total.kept} episodes written to {run.out} in {report.seconds:.0f} s; "
                  f"{len(report.failures)} failed{shown}; all figures in {run.out / 'collect.json'}")


def cmd_collect(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"max_model_len": args.max_model_len} if args.max_model_len else {}
    spec = PolicySpec.parse(args.policy, **options)
    if args.tokenizer:
        spec = spec.model_copy(update={"tokenizer": args.tokenizer})
    config = EpisodeConfig(parser=args.parser, sampling=Sampling(max_tokens=args.max_tokens, temperature=0.0),
                           max_turns=args.max_turns, retries=args.retries)
    try:
        runtime_options(args.runtime, args.containers)
    except ValueError as err:
        console.print(f"[red]bad options[/red]: {err}")
        return 2
    run = CollectRun(suite=args.suite, policy=spec, out=args.out, keep=args.keep, limit=args.limit, config=config,
                     runtime=args.runtime, workers=args.workers, containers=args.containers, base_seed=args.seed,
                     ray_address=args.ray_address)
    console.print(f"engine, Ray and worker output: {runlog.start(run.out / 'gymbox.log')}")
    try:
        report = asyncio.run(collect(run))
    except NothingToCollect as err:
        console.print(f"[red]nothing to collect[/red]: {err}")
        return 2
    print_report(run, report)
    return 1 if report.failures else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("collect", help="play a suite with a policy (default: the experts) and keep the successful "
                                       "episodes as demonstrations in a trajectory store")
    p.add_argument("suite", help="SUITE or SUITE:split (e.g. toolcall-single:train)")
    p.add_argument("--out", type=Path, required=True, help="the trajectory store to write (a folder)")
    p.add_argument("--policy", default="expert", help="`expert` (every environment's expert, in the default "
                                                      "model's tokens; expert:MODEL for another tokenizer), or any "
                                                      "policy `gymbox eval` takes")
    p.add_argument("--keep", choices=["success", "all"], default="success",
                   help="which episodes go into the store (default: successful ones; failures are listed)")
    p.add_argument("--limit", type=int, help="only the first N tasks")
    p.add_argument("--parser", choices=sorted(PARSERS), default="hermes", help="tool-call format")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per turn (default 4096: experts write "
                                                                "whole scripts and patches)")
    p.add_argument("--max-turns", type=int, help="policy turns per episode (default: the task's limit)")
    p.add_argument("--max-model-len", type=int, help="context length of the policy: longer episodes are cut")
    p.add_argument("--tokenizer", help="tokenizer folder or name (default: the policy's)")
    add_rollout_arguments(p)
    p.set_defaults(handler=cmd_collect)
