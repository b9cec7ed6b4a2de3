"""`swe`: reset latency, hidden-test time, and episodes per hour at concurrency 1 and 4, with their floors.

Each episode is a scripted agent that applies the task's gold patch with the environment's own tools and
submits. Measured in the same run, as baselines:
- reset floor: starting a bare container of the same image and running one command in it (what any container
  per episode costs before the repository is put at the task's state);
- test floor: the same hidden tests run straight away in a container of the fixed repository, with none of the
  grader's process cleanup and restore.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _workload import percentile
from rich.console import Console
from rich.table import Table

from gymbox.environments.runtime.containers import docker_client
from gymbox.environments.runtime.docker_sandbox import ContainerSandbox
from gymbox.environments.swe.env import SweEnv
from gymbox.harness.swe_validate import apply_with_tools, call
from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.swe.grader import run_tests
from gymbox.tasks.swe.packages import package

err = Console(stderr=True)


def episode(task: TaskSpec) -> dict[str, float]:
    """One scripted episode: reset, gold patch through the tools, submit."""
    env = SweEnv()
    started = time.perf_counter()
    try:
        env.reset(task, 0)
        reset = time.perf_counter() - started
        apply_with_tools(env, task.payload["gold_patch"])
        before = time.perf_counter()
        signals = env.step(call("submit")).signals
        grading = time.perf_counter() - before
    finally:
        env.close()
    if signals["resolved"] != 1.0:
        raise RuntimeError(f"{task.id}: the gold patch did not resolve it ({signals})")
    return {"reset": reset, "tests": signals["tests_seconds"], "grading": grading,
            "episode": time.perf_counter() - started}


def floors(task: TaskSpec) -> dict[str, float]:
    """A bare container's start plus one command, and the task's tests run on the fixed checkout directly."""
    client, pkg = docker_client(timeout=600), package(task.payload["package"])
    started = time.perf_counter()
    with ContainerSandbox.start(client, pkg.image(), env_id="swe@v1") as box:
        box.exec("true", timeout=30)
        start = time.perf_counter() - started
        tests = [*task.payload["fail_to_pass"], *task.payload["pass_to_pass"]]
        run = run_tests(box, pkg, tests, timeout=600, expect=tests)
    client.close()
    return {"start": start, "tests": run.seconds}


def pct(values: list[float], q: float) -> float:
    return percentile(sorted(values), 100 * q)


def throughput(tasks: list[TaskSpec], concurrency: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(episode, tasks))
    return len(tasks) * 3600 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-package", type=int, default=2, help="tasks per package (test split first)")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per throughput run")
    args = parser.parse_args()

    suite = sorted(load_suite("swe").tasks, key=lambda t: (t.split != "test", t.id))
    tasks = [t for p in sorted({t.category for t in suite}) for t in [t for t in suite if t.category == p]
             [: args.per_package]]
    rows: list[dict[str, Any]] = []
    for number, task in enumerate(tasks, 1):
        measured, floor = episode(task), floors(task)
        rows.append({"task": task.id, "package": task.category, **measured, "start_floor": floor["start"],
                     "tests_floor": floor["tests"]})
        err.print(f"[{number}/{len(tasks)}] {task.id}: reset {measured['reset']:.2f} s (floor "
                  f"{floor['start']:.2f}), tests {measured['tests']:.1f} s (floor {floor['tests']:.1f})")
    quick = sorted(tasks, key=lambda t: len(t.payload["pass_to_pass"]))[: max(1, len(tasks) // 2)]
    batch = [quick[i % len(quick)] for i in range(args.episodes)]
    per_hour = {c: throughput(batch, c) for c in (1, 4)}

    table = Table("package", "tasks", "reset s (p50)", "floor s", "hidden tests s (p50)", "direct s", "grading s")
    for pkg in sorted({r["package"] for r in rows}):
        mine = [r for r in rows if r["package"] == pkg]
        table.add_row(pkg, str(len(mine)), *(f"{statistics.median(r[k] for r in mine):.2f}"
                                             for k in ("reset", "start_floor", "tests", "tests_floor", "grading")))
    err.print(table)
    result = {
        "benchmark": "swe", "machine": platform.node(), "tasks": len(rows),
        "reset_p50_s": pct([r["reset"] for r in rows], 0.5), "reset_p99_s": pct([r["reset"] for r in rows], 0.99),
        "reset_floor_p50_s": pct([r["start_floor"] for r in rows], 0.5),
        "tests_p50_s": pct([r["tests"] for r in rows], 0.5), "tests_p99_s": pct([r["tests"] for r in rows], 0.99),
        "tests_floor_p50_s": pct([r["tests_floor"] for r in rows], 0.5),
        "grading_p50_s": pct([r["grading"] for r in rows], 0.5),
        "episodes_per_hour_c1": round(per_hour[1], 1), "episodes_per_hour_c4": round(per_hour[4], 1),
        "throughput_episodes": len(batch),
    }
    err.print(f"episodes per hour: {per_hour[1]:.0f} at concurrency 1, {per_hour[4]:.0f} at 4 "
              f"({per_hour[4] / per_hour[1]:.2f}x on this machine's cores)")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
