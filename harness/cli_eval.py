"""`gymbox eval`, `gymbox replay` and `gymbox rescore`: evaluate a policy, re-execute and re-score trajectories."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gymbox.agent.parsers import PARSERS
from gymbox.agent.policy import Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.store import TrajectoryStore
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
    run = EvalRun(suite=args.suite, policy=spec, k=args.k, out=args.out, limit=args.limit, config=config,
                  runtime=args.runtime, workers=args.workers, base_seed=args.seed, ray_address=args.ray_address)
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
    from gymbox.harness.replay import replay

    trajectories = _load(args.path, args.id)[: args.limit]
    results = asyncio.run(replay(trajectories, runtime=args.runtime))
    table = Table(title=f"replay of {len(results)} trajectories from {args.path}")
    for column in ("trajectory", "steps", "result"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(result.id, str(result.steps),
                      "[green]identical[/green]" if result.ok else f"[red]diverged[/red] {result.divergence}")
    console.print(table)
    diverged = sum(not r.ok for r in results)
    console.print(f"{len(results) - diverged} identical, {diverged} diverged")
    return 1 if diverged else 0


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


def add_commands(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a policy on a task suite: pass@k, mean reward, per-category tables")
    p.add_argument("suite", nargs="?", default=DEFAULT_SUITE, help=f"SUITE or SUITE:split (default {DEFAULT_SUITE})")
    p.add_argument("--policy", default="default",
                   help="`default` (SmolLM2-135M-Instruct on vLLM, CPU), a model folder or name, openai:URL[#MODEL], "
                        "openai+tokens:URL (a vLLM server, token-accurate), or scripted:MODULE:FUNCTION")
    p.add_argument("-k", type=int, default=1, help="samples per task (pass@1 ... pass@k)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder (default runs/eval)")
    p.add_argument("--limit", type=int, help="evaluate only the first N tasks")
    p.add_argument("--parser", choices=sorted(PARSERS), default="hermes", help="tool-call format")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per turn (default 128)")
    p.add_argument("--temperature", type=float, help="default: 0 (greedy) with -k 1, else 1")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-turns", type=int, help="policy turns per episode (default: the task's limit)")
    p.add_argument("--max-model-len", type=int, help="context length of a vLLM policy")
    p.add_argument("--tokenizer", help="tokenizer folder or name (scripted or openai+tokens policies)")
    p.add_argument("--runtime", choices=["local", "process", "docker"], default="local",
                   help="where environments run (container environments need docker)")
    p.add_argument("--workers", type=int, default=2, help="environment workers per environment")
    p.add_argument("--retries", type=int, default=2, help="new attempts after an infrastructure error")
    p.add_argument("--reward", type=Path, help="reward specification (YAML, e.g. rewards/specs/toolcall.yaml); "
                                              "default: the outcome")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start one here)")
    p.set_defaults(handler=cmd_eval)
    p = sub.add_parser("replay", help="re-execute recorded actions against a fresh environment; report divergences")
    p.add_argument("path", type=Path, help="a trajectory store folder or JSONL file")
    p.add_argument("--id", action="append", help="only this trajectory (repeatable)")
    p.add_argument("--limit", type=int, help="at most N trajectories")
    p.add_argument("--runtime", choices=["local", "process", "docker"], help="default: the recorded runtime")
    p.set_defaults(handler=cmd_replay)
    p = sub.add_parser("rescore", help="recompute trajectories' rewards offline from their recorded signals")
    p.add_argument("path", type=Path, help="a trajectory store folder or JSONL file")
    p.add_argument("--out", type=Path, help="write the rescored trajectories to this store")
    p.add_argument("--reward", type=Path, help="reward specification (YAML); default: the outcome")
    p.set_defaults(handler=cmd_rescore)
