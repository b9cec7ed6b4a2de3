"""`gymbox games SUITE`: generate a suite's games ahead of time (TextWorld, ALFWorld), in parallel, into the cache."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gymbox.tasks import TaskSpec, load_suite
from gymbox.tasks.games import InvalidGameTask, makes_games, prepare_game

console = Console()


def _prepare(env_id: str, task: TaskSpec) -> dict[str, Any]:
    """In a worker process: TextWorld's and Fast Downward's module state allow one generation at a time per
    process, so processes, not threads, run it in parallel."""
    started = time.perf_counter()
    try:
        made = prepare_game(env_id, task)
    except InvalidGameTask as err:
        return {"task": task.id, "error": str(err)}
    return {"task": task.id, "seconds": time.perf_counter() - started, **made}


def cmd_games(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    tasks = list(suite.tasks)[: args.limit] if args.limit else list(suite.tasks)
    for env_id in suite.envs:
        if not makes_games(env_id):
            console.print(f"[red]{env_id} has no games to generate[/red]: `gymbox games` is for the text worlds")
            return 2
    bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console)
    done: list[dict[str, Any]] = []
    with bar, ProcessPoolExecutor(max_workers=args.jobs) as pool:
        progress = bar.add_task("", total=len(tasks))
        futures = [pool.submit(_prepare, task.env, task) for task in tasks]
        for future in as_completed(futures):
            result = future.result()
            done.append(result)
            bar.update(progress, advance=1, description=result["task"])
    failed = [r for r in done if "error" in r]
    table = Table(title=f"{suite.name}: {len(done) - len(failed)} of {len(done)} games ready")
    for column in ("category", "games", "mean plan length", "mean seconds", "retried"):
        table.add_column(column, justify="left" if column == "category" else "right")
    category = {t.id: t.category for t in tasks}
    counts: Counter[str] = Counter()
    for name in sorted({category[r["task"]] for r in done if "error" not in r}):
        rows = [r for r in done if category[r["task"]] == name and "error" not in r]
        counts[name] = len(rows)
        plans = [len(r["plan"]) for r in rows if "plan" in r]
        table.add_row(name, str(len(rows)), f"{sum(plans) / len(plans):.1f}" if plans else "-",
                      f"{sum(r['seconds'] for r in rows) / len(rows):.1f}",
                      str(sum(1 for r in rows if r.get("attempt", 0) > 0)))
    console.print(table)
    for result in failed:
        console.print(f"[red]{result['task']}[/red]: {result['error']}")
    return 1 if failed else 0


def add_games_commands(sub: Any) -> None:
    help = "generate a suite's games ahead of time into the cache (textworld, alfworld suites)"
    p = sub.add_parser("games", help=help, description=help + "; episodes otherwise generate them on first use")
    p.add_argument("suite", help="SUITE or SUITE:train / SUITE:test")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="worker processes")
    p.add_argument("--limit", type=int, help="only the first N tasks")
    p.set_defaults(handler=cmd_games)
