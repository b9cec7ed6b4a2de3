"""Reset latency and steps/s of `textworld` and `alfworld` through gymbox, against TextWorld and ALFWorld alone."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import _textworlds_direct
import uvloop
from rich.console import Console
from rich.table import Table

from gymbox.environments.api import Action
from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.games import prepare_game

GAMES = {
    "textworld": ["tw-custom-medium-1", "tw-cooking-medium-1", "tw-treasure_hunter-easy-1"],
    # The same games with `payload.admissible: true`: the environment lists the admissible commands each turn,
    # and the direct side asks TextWorld for them too.
    "textworld-admissible": ["tw-custom-medium-1", "tw-cooking-medium-1", "tw-treasure_hunter-easy-1"],
    "alfworld": ["alfworld-pick_and_place_simple-1", "alfworld-pick_heat_then_place_in_recep-1",
                 "alfworld-look_at_obj_in_light-1"],
}
GOAL_STEP_OVERHEAD = 0.10  # gymbox's steps/s at most 10% below the direct calls', through a server process
SIDES = ["direct", "gymbox-local", "gymbox-process"]
Rounds = list[tuple[list[float], list[float]]]  # per round: (reset seconds, step seconds)
err = Console(stderr=True)


def game_and_plan(env: str, task: TaskSpec) -> tuple[Path, list[str]]:
    """The task's game file (generated into the cache on first use) and the commands that win it."""
    made = prepare_game(env, task)
    folder = Path(made["game"])
    return (folder / "game.tw-pddl" if folder.is_dir() else folder), made["plan"]


async def run_gymbox(runtime: Runtime, tasks: list[TaskSpec], plans: list[list[str]]) -> tuple[list[float],
                                                                                               list[float]]:
    resets, steps = [], []
    for task, plan in zip(tasks, plans, strict=True):
        async with await runtime.client() as client:
            started = time.perf_counter()
            await client.reset(task, 0)
            resets.append(time.perf_counter() - started)
            for command in plan:
                started = time.perf_counter()
                result = await client.step(Action(text=command))
                steps.append(time.perf_counter() - started)
            assert result.terminated and result.signals["success"] == 1.0, f"the plan did not win {task.id}"
    return resets, steps


def summary(rounds: Rounds) -> dict[str, Any]:
    resets = [r for reset, _ in rounds for r in reset]
    steps = [s for _, step in rounds for s in step]
    return {"reset_p50_ms": statistics.median(resets) * 1e3, "reset_mean_ms": statistics.mean(resets) * 1e3,
            "step_p50_ms": statistics.median(steps) * 1e3, "steps_per_s": len(steps) / sum(steps),
            "rounds_steps_per_s": [len(step) / sum(step) for _, step in rounds], "resets": len(resets),
            "steps": len(steps)}


async def bench_env(name: str, rounds: int, direct: ProcessPoolExecutor) -> dict[str, Any]:
    env, _, variant = name.partition("-")
    suite = load_suite(env)
    tasks = [suite.get(t) for t in GAMES[name]]
    if variant == "admissible":
        tasks = [t.model_copy(update={"payload": {**t.payload, "admissible": True}}) for t in tasks]
    err.print(f"{env}: preparing {len(tasks)} games (generated on first use)")
    games = [game_and_plan(env, t) for t in tasks]
    plans = [plan for _, plan in games]
    loop = asyncio.get_running_loop()
    samples: dict[str, Rounds] = {side: [] for side in SIDES}
    async with LocalRuntime(env) as local, ProcessRuntime(env) as process:
        runtimes = {"gymbox-local": local, "gymbox-process": process}
        for round_ in range(-1, rounds):  # round -1 warms up: imports, first loads, the server's worker threads
            order = SIDES[round_ % 3:] + SIDES[:round_ % 3]  # rotated, so drift on a shared VM hits every side
            for side in order:
                if side == "direct":
                    measured = await loop.run_in_executor(direct, _textworlds_direct.run, name, games)
                else:
                    measured = await run_gymbox(runtimes[side], tasks, plans)
                if round_ >= 0:
                    samples[side].append(measured)
            if round_ % 5 == 4 or round_ == rounds - 1:
                err.print(f"{name}: {round_ + 1}/{rounds} rounds")
    figures: dict[str, Any] = {side: summary(samples[side]) for side in SIDES}
    for side in SIDES[1:]:
        # Paired by round (the sides ran back to back), then the median: drift on a shared VM cancels out.
        paired = [d / g - 1 for d, g in zip(figures["direct"]["rounds_steps_per_s"],
                                            figures[side]["rounds_steps_per_s"], strict=True)]
        figures[side]["step_overhead"] = statistics.median(paired)
        figures[side]["reset_overhead"] = figures[side]["reset_p50_ms"] / figures["direct"]["reset_p50_ms"] - 1
    figures["games"] = {t.id: len(p) for t, p in zip(tasks, plans, strict=True)}
    figures["rounds"] = rounds
    return figures


def show(result: dict[str, Any]) -> None:
    table = Table(title="text worlds: gymbox against TextWorld and ALFWorld called directly")
    for column in ("env", "side", "reset p50", "step p50", "steps/s", "step overhead", "reset overhead"):
        table.add_column(column, justify="left" if column in ("env", "side") else "right")
    for env, figures in result["envs"].items():
        for side in SIDES:
            row = figures[side]
            overhead = "" if side == "direct" else f"{row['step_overhead']:+.1%}"
            reset = "" if side == "direct" else f"{row['reset_overhead']:+.1%}"
            table.add_row(env, side, f"{row['reset_p50_ms']:.0f} ms", f"{row['step_p50_ms']:.1f} ms",
                          f"{row['steps_per_s']:.1f}", overhead, reset)
    Console().print(table)
    verdict = "met" if all(result["goals_met"].values()) else "NOT met"
    Console().print(f"goal: step overhead through a server process under {GOAL_STEP_OVERHEAD:.0%}: {verdict} "
                    "(median of rounds; negative: gymbox is faster)")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as direct:
        envs = {env: await bench_env(env, args.rounds[env], direct) for env in args.envs}
    return {
        "bench": "textworlds", "envs": envs,
        "goals_met": {f"{env}_step_overhead_under_10pct": envs[env]["gymbox-process"]["step_overhead"]
                      < GOAL_STEP_OVERHEAD for env in envs},
        "step_overhead_ms": {env: {side: envs[env][side]["step_p50_ms"] - envs[env]["direct"]["step_p50_ms"]
                                   for side in SIDES[1:]} for env in envs},
        "versions": {p: version(p) for p in ("gymbox", "textworld", "alfworld")},
        "machine": {"python": platform.python_version(), "cpus": len(os.sched_getaffinity(0)),
                    "processor": platform.processor() or platform.machine()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, nargs=3, default=[30, 20, 8], metavar=("TW", "TW_ADMISSIBLE", "ALFWORLD"),
                        help="timed rounds per side (one episode of each game), for each configuration")
    parser.add_argument("--envs", nargs="+", default=list(GAMES), choices=list(GAMES))
    arguments = parser.parse_args()
    arguments.rounds = dict(zip(GAMES, arguments.rounds, strict=True))
    result = uvloop.run(main(arguments))  # as in step_latency.py: the client side of a server runs uvloop
    show(result)
    print(json.dumps(result))
    sys.exit(0)
