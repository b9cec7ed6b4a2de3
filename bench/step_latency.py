"""Step-API round-trip latency and concurrent throughput of gymbox against OpenEnv, on a null environment."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _null_env import NULL_ACTION, NullEnv, null_task
from _workload import Workload, loop_name, measure_all, run
from rich.console import Console
from rich.table import Table

from gymbox.environments.api.client import EnvClient
from gymbox.environments.runtime import ProcessRuntime
from gymbox.tasks.spec import TaskSpec

BENCH = Path(__file__).resolve().parent
BENCH_VENV = BENCH.parent / ".venv-bench"
REQUIREMENTS = BENCH / "requirements-openenv.txt"
TASK = null_task(max_turns=1_000_000)  # no measurement may end an episode by its turn limit
GOAL_P50_RATIO = 1.0  # gymbox p50 / OpenEnv p50 at most this
GOAL_THROUGHPUT_RATIO = 1.5  # gymbox episodes/s / OpenEnv episodes/s at least this
err = Console(stderr=True)


class GymboxEpisode:
    """Adapts an `EnvClient` on the runtime's shared channel to the workload's episode protocol."""

    def __init__(self, client: EnvClient, task: TaskSpec) -> None:
        self.client, self.task = client, task

    async def reset(self) -> None:
        await self.client.reset(self.task)

    async def step(self) -> None:
        await self.client.step(NULL_ACTION)

    async def close(self) -> None:
        await self.client.close()


async def measure_gymbox(work: Workload, *, uds: bool) -> dict[str, Any]:
    """Serve the null environment in a child process (Unix socket or loopback port) and run the workload."""
    # The child imports the environment by module name, so it needs this folder on its path.
    path = os.pathsep.join(p for p in (str(BENCH), os.environ.get("PYTHONPATH", "")) if p)
    async with ProcessRuntime(NullEnv, uds=uds, env_vars={"PYTHONPATH": path}) as runtime:
        async def open_episode() -> GymboxEpisode:
            return GymboxEpisode(await runtime.client(), TASK)

        figures = await measure_all(open_episode, work)
    figures["client_loop"] = loop_name()
    return figures


# ---- the OpenEnv side, in its own venv ---------------------------------------------------------------------

def ensure_bench_venv(venv: Path) -> Path:
    """The venv's python, creating the venv from requirements-openenv.txt when it is missing (a few minutes)."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    err.print(f"creating {venv} with {REQUIREMENTS.name} for the OpenEnv side (once; a few minutes)")
    # pip's chatter goes to stderr: stdout carries only the table and the JSON line.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, stdout=sys.stderr)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True, timeout=1800,
                   stdout=sys.stderr)
    return python


def measure_openenv(python: Path, work: Workload, timeout: float, ws: str) -> dict[str, Any]:
    """Run `_openenv_side.py measure` under `python`; its last stdout line is its figures."""
    command = [str(python), str(BENCH / "_openenv_side.py"), "measure", "--workload", json.dumps(work.to_dict()),
               "--ws", ws]
    # Its own process group, so that a timeout or Ctrl-C here takes it (and the server it started) down.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                            text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    if proc.returncode != 0:
        raise RuntimeError(f"the OpenEnv side exited with code {proc.returncode} (its stderr is above)")
    return json.loads(out.strip().splitlines()[-1])


# ---- report ------------------------------------------------------------------------------------------------

def summary(figures: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one run, flat."""
    single, concurrent = figures["single"], figures["concurrent"]
    return {"p50_ms": single["p50_ms"], "p99_ms": single["p99_ms"], "steps_per_s": single["steps_per_s"],
            "episodes_per_s": concurrent["episodes_per_s"],
            "episodes_per_s_reused": figures["reused"]["episodes_per_s"]}


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each headline number's median over repeated runs: a shared 2-core VM swings by 2x from run to run."""
    flat = [summary(r) for r in runs]
    return {key: statistics.median(f[key] for f in flat) for key in flat[0]}


def compare(gymbox: dict[str, float], openenv: dict[str, float]) -> tuple[dict[str, float], dict[str, bool]]:
    """Ratios gymbox/OpenEnv (lower is better for latencies, higher for rates) and whether the goals are met."""
    ratios = {key: gymbox[key] / openenv[key] for key in gymbox}
    goals = {"p50_at_most_openenv": ratios["p50_ms"] <= GOAL_P50_RATIO,
             "episodes_per_s_at_least_1_5x": ratios["episodes_per_s"] >= GOAL_THROUGHPUT_RATIO}
    return ratios, goals


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs, to report how much the hypervisor took during the run."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7] if len(fields) > 7 else 0, sum(fields)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(),
            "gymbox_deps": {p: version(p) for p in ("uvicorn", "websockets", "pydantic", "uvloop")}}


def print_table(sides: dict[str, dict[str, float]], ratios: dict[str, dict[str, float]]) -> None:
    table = Table(title="step API, null environment: medians (ratios are gymbox / OpenEnv)")
    table.add_column("metric")
    for name in sides:
        table.add_column(name, justify="right")
    for name in ratios:
        table.add_column(f"ratio {name}", justify="right")
    labels = {"p50_ms": "step p50 (ms)", "p99_ms": "step p99 (ms)", "steps_per_s": "steps/s, one session",
              "episodes_per_s": "episodes/s, 64 at once", "episodes_per_s_reused": "episodes/s, 64 kept clients"}
    for key, label in labels.items():
        table.add_row(label, *(f"{side[key]:.3f}" if key.endswith("ms") else f"{side[key]:.0f}"
                               for side in sides.values()), *(f"{r[key]:.2f}x" for r in ratios.values()))
    Console(width=110).print(table)  # wide enough for one line a row, also when piped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds, one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, help="interleaved runs of each side, medians reported (default 3)")
    parser.add_argument("--skip-openenv", action="store_true", help="measure gymbox only")
    parser.add_argument("--bench-venv", type=Path, default=BENCH_VENV,
                        help="venv with openenv-core (created from requirements-openenv.txt when missing)")
    parser.add_argument("--openenv-timeout", type=float, default=900.0, help="seconds for one OpenEnv run")
    parser.add_argument("--openenv-ws", default="websockets", choices=["websockets", "websockets-sansio"],
                        help="uvicorn WebSocket implementation for OpenEnv's server (see bench/README.md)")
    args = parser.parse_args(argv)
    work = Workload.quick() if args.quick else Workload()
    repeats = args.repeats or (1 if args.quick else 3)
    started, steal_before = time.perf_counter(), cpu_times()
    sides: dict[str, Callable[[], dict[str, Any]]] = {
        "gymbox uds": lambda: run(lambda: measure_gymbox(work, uds=True)),
        "gymbox tcp": lambda: run(lambda: measure_gymbox(work, uds=False)),
    }
    if not args.skip_openenv:
        python = ensure_bench_venv(args.bench_venv)
        sides["openenv tcp"] = lambda: measure_openenv(python, work, args.openenv_timeout, args.openenv_ws)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    names = list(sides)
    for repeat in range(repeats):
        # Interleaved, and in a rotated order each repeat, so a slow spell of the machine hits every side.
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            err.print(f"repeat {repeat + 1}/{repeats}: {name}")
            runs[name].append(sides[name]())
    table = {name: medians(r) for name, r in runs.items()}
    result: dict[str, Any] = {"workload": work.to_dict(), "repeats": repeats, "gymbox": {}}
    for name, side_runs in runs.items():
        framework, transport = name.split()
        entry = {"median": table[name], "runs": side_runs}
        if framework == "gymbox":
            result["gymbox"][transport] = entry
        else:
            result["openenv"] = entry
    ratios: dict[str, dict[str, float]] = {}
    if args.skip_openenv:
        result["openenv"] = {"skipped": "--skip-openenv"}
    else:
        result["ratios"], result["goals_met"] = ratios, {}
        for transport in ("uds", "tcp"):
            ratios[transport], result["goals_met"][transport] = compare(table[f"gymbox {transport}"],
                                                                         table["openenv tcp"])
    steal_after = cpu_times()
    result["machine"] = {**machine(), "cpu_steal_fraction": round(
        (steal_after[0] - steal_before[0]) / max(1, steal_after[1] - steal_before[1]), 4)}
    result["duration_s"] = round(time.perf_counter() - started, 1)
    print_table(table, ratios)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
