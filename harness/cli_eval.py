"""`gymbox eval`, `gymbox replay` and `gymbox rescore`: evaluate a policy, re-execute and re-score trajectories."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gymbox.agent.parsers import PARSERS
from gymbox.agent.policy import Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.ray_runner import runtime_options
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.user_policy import HELP as USER_HELP
from gymbox.rewards.score import load_spec, score

console = Console()
DEFAULT_SUITE = "echo-demo:test"


def cmd_eval(args: argparse.Namespace) -> int:
    from gymbox.harness.evaluate import EvalRun, main

    options: dict[str, Any] = {}
    if args.max_model_len:
        options["max_model_len"] = args.max_model_len
    spec = PolicySpec.parse(args.policy, **options)
    if args.tokenizer:
        spec = spec.model_copy(update={"tokenizer": args.tokenizer})
    # One sample per task is scored greedily, as is usual for pass@1; several need sampling to differ.
    temperature = args.temperature if args.temperature is not None else (0.0 if args.k == 1 else 1.0)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=temperature, top_p=args.top_p)
    reward = str(args.reward.resolve()) if args.reward else None
    if reward and not _spec_ok(reward):  # a bad specification fails here, before any engine starts
        return 2
    config = EpisodeConfig(parser=args.parser, sampling=sampling, max_turns=args.max_turns, retries=args.retries,
                           reward=reward)
    try:
        runtime_options(args.runtime, args.containers)
    except ValueError as err:
        console.print(f"[red]bad options[/red]: {err}")
        return 2
    run = EvalRun(suite=args.suite, policy=spec, k=args.k, out=args.out, limit=args.limit, config=config,
                  runtime=args.runtime, workers=args.workers, containers=args.containers, base_seed=args.seed,
                  ray_address=args.ray_address, user_policy=args.user_policy)
    return main(run)


def _spec_ok(path: str) -> bool:
    try:
        load_spec(path)
    except ValueError as err:  # RewardSpecError: what is wrong and where
        console.print(f"[red]bad reward specification[/red]: {err}")
        return False
    return True


def _load(path: Path, ids: list[str] | None) -> list[Any]:
    store = TrajectoryStore(path)
    if ids:
        return [store.get(i) for i in ids]
    return list(store.iter())


def cmd_replay(args: argparse.Namespace) -> int:
    from gymbox.harness.replay import REFUSED, replay

    trajectories = _load(args.path, args.id)[: args.limit]
    tokenizer = _replay_tokenizer(args.tokenizer, trajectories)
    results = asyncio.run(replay(trajectories, runtime=args.runtime, tokenizer=tokenizer, twice=args.twice,
                                 any_image=args.any_image))
    _print_replay(results, f"replay of {len(results)} trajectories from {args.path}")
    if any(r.status == REFUSED for r in results):
        return 2
    return 0 if all(r.ok and r.deterministic is not False for r in results) else 1


def _replay_tokenizer(name: str | None, trajectories: list[Any]) -> Any:
    """The tokenizer that checks token ids: the one named, else the recorded policy's when it is a local model."""
    from gymbox.agent.models import resolve_model
    from gymbox.agent.spec import load_tokenizer

    if name:
        return load_tokenizer(name)
    policies = {t.provenance.policy for t in trajectories if t.prompt_ids}
    local = [p for p in policies if Path(resolve_model(p)).is_dir()]
    if len(local) == 1 and len(policies) == 1:
        return load_tokenizer(local[0])
    if policies:
        console.print(f"[yellow]token ids are not checked[/yellow]: pass --tokenizer (the policy's; recorded "
                      f"policies: {', '.join(sorted(policies))})")
    return None


def _print_replay(results: list[Any], title: str) -> None:
    from gymbox.harness.replay_compare import summarize

    twice = any(r.deterministic is not None for r in results)
    table = Table(title=title)
    for column in ("trajectory", "steps", "result", *(["deterministic"] if twice else [])):
        table.add_column(column, overflow="fold")
    colors = {"identical": "green", "masked": "yellow"}
    for r in results:
        shown = f"[{colors.get(r.status, 'red')}]{r.status}[/]"
        if r.divergences:
            shown += f" ({len(r.divergences)})"
        shown += "".join(f"\n{escape(str(line))}" for line in [*r.divergences, *r.notes])
        differ = "; ".join(escape(str(d)) for d in r.nondeterminism[:3])
        same = {None: "-", True: "[green]yes[/]", False: f"[red]no[/] {differ}"}
        table.add_row(escape(r.id), str(r.steps), shown, *([same[r.deterministic]] if twice else []))
    console.print(table)
    rows = summarize((r.id, r.divergences) for r in results)
    if rows:
        summary = Table(title="divergences by field")
        for column in ("field", "trajectories", "times", "first at", "example"):
            summary.add_column(column, overflow="fold")
        for row in rows:
            summary.add_row(row.field, str(row.trajectories), str(row.occurrences), row.first_seen, escape(row.example))
        console.print(summary)
    counts = {status: sum(r.status == status for r in results)
              for status in ("identical", "diverged", "masked", "failed", "refused")}
    line = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status in ("identical", "diverged"))
    if twice:
        line += f"; {sum(r.deterministic is False for r in results)} replayed differently twice"
    console.print(line)


def cmd_rescore(args: argparse.Namespace) -> int:
    spec = str(args.reward) if args.reward else None
    if spec and not _spec_ok(spec):  # a bad specification fails before any trajectory is read
        return 2
    trajectories = []
    changed = 0
    writer = TrajectoryStore(args.out).writer() if args.out else None
    for recorded in _load(args.path, None):
        trajectory = score(recorded, spec)
        changed += (trajectory.reward, trajectory.rewards) != (recorded.reward, recorded.rewards)
        trajectories.append(trajectory)
        if writer is not None:
            writer.append(trajectory)
    if writer is not None:
        writer.close()
    rewards = [t.reward for t in trajectories if t.reward is not None]
    mean = f"{sum(rewards) / len(rewards):.3f}" if rewards else "-"
    console.print(f"rescored {len(trajectories)} trajectories: {changed} changed, mean reward {mean}"
                  + (f"; written to {args.out}" if args.out else " (use --out DIR to write them)"))
    return 0


def add_rollout_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how a command's episodes run on the Ray harness (`gymbox eval`, `gymbox collect`)."""
    p.add_argument("--runtime", choices=["local", "process", "docker"], default="local",
                   help="where environments run (container environments need docker)")
    p.add_argument("--workers", type=int, default=2, help="environment workers per environment")
    p.add_argument("--containers", type=int, help="docker runtime: containers at once per worker (default: as many "
                                                  "as this machine can run with their CPU and memory limits)")
    p.add_argument("--retries", type=int, default=2, help="new attempts after an infrastructure error")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start one here)")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a policy on a task suite: pass@k, mean reward, per-category tables")
    p.add_argument("suite", nargs="?", default=DEFAULT_SUITE, help=f"SUITE or SUITE:split (default {DEFAULT_SUITE})")
    p.add_argument("--policy", default="default",
                   help="`default` (SmolLM2-135M-Instruct warm-started on echo demonstrations, on vLLM, CPU), `base` "
                        "(SmolLM2-135M-Instruct itself), a model folder or name, openai:URL[#MODEL], "
                        "openai+tokens:URL (a vLLM server, token-accurate), expert, or scripted:MODULE:FUNCTION")
    p.add_argument("-k", type=int, default=1, help="samples per task (pass@1 ... pass@k)")
    p.add_argument("--user-policy", help=USER_HELP)
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)")
    p.add_argument("--limit", type=int, help="evaluate only the first N tasks")
    p.add_argument("--parser", choices=sorted(PARSERS), default="hermes", help="tool-call format")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per turn (default 128)")
    p.add_argument("--temperature", type=float, help="default: 0 (greedy) with -k 1, else 1")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-turns", type=int, help="policy turns per episode (default: the task's limit)")
    p.add_argument("--max-model-len", type=int, help="context length of a vLLM policy")
    p.add_argument("--tokenizer", help="tokenizer folder or name (scripted or openai+tokens policies)")
    add_rollout_arguments(p)
    p.add_argument("--reward", type=Path, help="reward specification (YAML, e.g. rewards/specs/toolcall.yaml); "
                                              "default: the outcome")
    p.set_defaults(handler=cmd_eval)
    p = sub.add_parser("replay", help="play recorded trajectories again through the episode loop; report every "
                                      "divergence")
    p.add_argument("path", type=Path, help="a trajectory store folder or JSONL file")
    p.add_argument("--id", action="append", help="only this trajectory (repeatable)")
    p.add_argument("--limit", type=int, help="at most N trajectories")
    p.add_argument("--runtime", choices=["local", "process", "docker"], help="default: the recorded runtime")
    p.add_argument("--tokenizer", help="the policy's tokenizer (folder or name), to check token ids; default: the "
                                       "recorded policy's when it is a local model")
    p.add_argument("--twice", action="store_true", help="replay each trajectory twice: is the environment "
                                                        "deterministic (same answers to the same actions)?")
    p.add_argument("--any-image", action="store_true", help="when the recorded container image is gone, replay on "
                                                            "the current one (a warning) instead of refusing")
    p.set_defaults(handler=cmd_replay)
    p = sub.add_parser("rescore", help="recompute trajectories' rewards offline from their recorded signals")
    p.add_argument("path", type=Path, help="a trajectory store folder or JSONL file")
    p.add_argument("--out", type=Path, help="write the rescored trajectories to this store")
    p.add_argument("--reward", type=Path, help="reward specification (YAML); default: the outcome")
    p.set_defaults(handler=cmd_rescore)
