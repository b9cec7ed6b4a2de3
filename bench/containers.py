"""Docker runtime figures: reset latency cold and warm, episodes/s on shell tasks, idle memory, leaks.

The baseline, measured in the same run, is a bare `docker run --rm --network none IMAGE true`: what a container
costs before any environment runs in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import docker
from rich.console import Console
from rich.table import Table

from gymbox.environments.api.models import Action, ToolCall
from gymbox.environments.runtime import DockerRuntime
from gymbox.environments.runtime.containers import docker_client, list_containers, owner_label
from gymbox.environments.runtime.images import image_name
from gymbox.tasks import TaskSpec, load_suite

GOALS = {"warm_reset_p50_ms": 100.0, "cold_reset_p50_ms": 1500.0, "idle_container_mb": 64.0, "leaked": 0}
err = Console(stderr=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], "n": len(ordered)}


def bare_docker_run(image: str, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True,
                       stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


async def reset_latency(task: TaskSpec, n: int, *, warm: bool) -> dict[str, float]:
    """Time from asking for an episode to holding its first observation: a pooled container, or a new one."""
    samples = []
    async with DockerRuntime("shell", pool_size=2 if warm else 0) as runtime:
        for i in range(n):
            if warm:  # measure the pool, not its refill: wait until a container is ready
                while runtime._pool.empty():
                    await asyncio.sleep(0.05)
            started = time.perf_counter()
            async with await runtime.client() as client:
                await client.reset(task, i)
                samples.append(time.perf_counter() - started)
    return percentiles(samples)


async def throughput(tasks: list[TaskSpec], concurrency: int, episodes: int,
                     capacity: int | None = None) -> dict[str, float]:
    """Episodes/s when `concurrency` episodes are asked for at once, each solving a shell task with its reference
    solution; the runtime runs at most `capacity` of them (by default what the machine holds) and queues the rest."""
    failed: list[str] = []

    async def episode(runtime: DockerRuntime, task: TaskSpec) -> None:
        async with await runtime.client() as client:
            await client.reset(task)
            await client.step(Action(tool_calls=[ToolCall.make("bash", {"command": task.payload["solution"]})]))
            result = await client.step(Action(tool_calls=[ToolCall.make("submit")]))
            if result.signals.get("success", 0.0) != 1.0:
                failed.append(task.id)

    async with DockerRuntime("shell", pool_size=concurrency, capacity=capacity) as runtime:
        assert runtime.capacity is not None
        while runtime._pool.qsize() < min(concurrency, runtime.capacity):  # a full pool, as a long run would have
            await asyncio.sleep(0.1)
        queue: asyncio.Queue[TaskSpec] = asyncio.Queue()
        for i in range(episodes):
            queue.put_nowait(tasks[i % len(tasks)])

        async def worker() -> None:
            while not queue.empty():
                await episode(runtime, queue.get_nowait())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"episodes_per_s": episodes / elapsed, "episodes": episodes, "capacity": runtime.capacity,
            "success_rate": 1 - len(failed) / episodes, "failed": sorted(failed)}


async def idle_memory(engine: docker.DockerClient, pool: int) -> dict[str, float]:
    """Memory of containers waiting in the pool, as `docker stats` counts it (usage less inactive file cache)."""
    async with DockerRuntime("shell", pool_size=pool, capacity=pool) as runtime:
        while runtime._pool.qsize() < pool:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # let the servers settle after start
        used = []
        for container in list(runtime._pool._queue):
            stats = await asyncio.to_thread(engine.api.stats, container.id, stream=False, one_shot=True)
            memory = stats["memory_stats"]
            cache = memory.get("stats", {}).get("total_inactive_file", memory.get("stats", {}).get("inactive_file", 0))
            used.append((memory["usage"] - cache) / 2**20)
    return {"mean_mb": statistics.mean(used), "max_mb": max(used), "containers": len(used)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    engine = docker_client()
    image = image_name("shell")
    tasks = list(load_suite("shell").tasks)
    probe = tasks[0]
    err.print("baseline: bare docker run")
    figures: dict[str, Any] = {"baseline_docker_run": bare_docker_run(image, args.cold)}
    err.print("cold resets")
    figures["cold_reset"] = await reset_latency(probe, args.cold, warm=False)
    err.print("warm resets")
    figures["warm_reset"] = await reset_latency(probe, args.warm, warm=True)
    figures["throughput"] = {}
    for concurrency in args.concurrency:
        err.print(f"episodes at concurrency {concurrency}")
        episodes = max(args.episodes, 2 * concurrency)
        figures["throughput"][str(concurrency)] = await throughput(tasks, concurrency, episodes, args.capacity)
    err.print("idle memory")
    figures["idle_memory"] = await idle_memory(engine, args.pool)
    figures["leaked"] = len([c for c in list_containers(engine) if c.owner == owner_label()])
    figures["goals_met"] = {
        "warm_reset_p50_under_100_ms": figures["warm_reset"]["p50_ms"] < GOALS["warm_reset_p50_ms"],
        "cold_reset_p50_under_1_5_s": figures["cold_reset"]["p50_ms"] < GOALS["cold_reset_p50_ms"],
        "idle_container_under_64_mb": figures["idle_memory"]["max_mb"] < GOALS["idle_container_mb"],
        "zero_leaks": figures["leaked"] == 0,
    }
    figures["image"] = {"name": image, "id": engine.images.get(image).id}
    return figures


def show(figures: dict[str, Any]) -> None:
    table = Table(title="docker runtime, shell environment")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("goal / baseline")
    base = figures["baseline_docker_run"]
    table.add_row("bare `docker run true` p50 / p99", f"{base['p50_ms']:.0f} / {base['p99_ms']:.0f} ms", "baseline")
    for key, goal in (("cold_reset", "p50 < 1500 ms"), ("warm_reset", "p50 < 100 ms")):
        row = figures[key]
        table.add_row(f"{key.replace('_', ' ')} p50 / p99", f"{row['p50_ms']:.0f} / {row['p99_ms']:.0f} ms", goal)
    for concurrency, row in figures["throughput"].items():
        table.add_row(f"episodes/s at concurrency {concurrency}", f"{row['episodes_per_s']:.2f}",
                      f"{row['episodes']} episodes, capacity {row.get('capacity')}, success {row['success_rate']:.0%}")
    memory = figures["idle_memory"]
    table.add_row("idle pooled container, mean / max", f"{memory['mean_mb']:.1f} / {memory['max_mb']:.1f} MB",
                  "< 64 MB")
    table.add_row("containers left behind", str(figures["leaked"]), "0")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", type=int, default=10, help="cold resets to time")
    parser.add_argument("--warm", type=int, default=30, help="warm resets to time")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--episodes", type=int, default=16, help="episodes per concurrency level (at least 2x it)")
    parser.add_argument("--capacity", type=int, help="containers at once (default: what the machine holds)")
    parser.add_argument("--pool", type=int, default=8, help="pooled containers whose idle memory is measured")
    parser.add_argument("--quick", action="store_true", help="fewer samples, concurrency 1 and 8")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.cold, arguments.warm, arguments.concurrency, arguments.episodes = 4, 10, [1, 8], 8
    result = asyncio.run(main(arguments))
    show(result)
    print(json.dumps(result))
    sys.exit(0)
