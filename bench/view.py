"""`gymbox view` on a large store: index build, time to first page, filter and page latency, incremental refresh,
against a naive viewer that scans the whole store for every request (the same filters, in the same run).

    .venv/bin/python bench/view.py [--n 100000] [--store DIR]

The store holds short trajectories (2 turns, ~80 tokens) over 500 tasks, 8 samples each, with errors and masked
rollouts mixed in. Pages are requested through the app in-process (Starlette's test client: ASGI, no sockets).
The last line of output is a JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from starlette.testclient import TestClient

from gymbox.environments.api.models import Action, FunctionCall, Message, ToolCall
from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.harness.metrics import pass_at_k
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.view.app import create_app
from gymbox.harness.view.index import Filters, StoreIndex
from gymbox.tasks.spec import TaskSpec

err = Console(stderr=True)
# (query string, the same filter as a Python predicate for the naive scan)
QUERIES: dict[str, tuple[str, Callable[[Trajectory], bool]]] = {
    "all": ("", lambda t: True),
    "category + failed": ("category=c3&success=no", lambda t: t.task.category == "c3" and
                          t.signals.get("success", 0) < 1),
    "masked": ("masked=yes", lambda t: t.masked),
    "error code": ("error=timeout", lambda t: t.error is not None and t.error.code == "timeout"),
    "reward range, sorted": ("reward_min=0.2&reward_max=0.6&sort=reward&desc=1",
                             lambda t: t.reward is not None and 0.2 <= t.reward <= 0.6),
    "task substring": ("task=task-0042", lambda t: "task-0042" in t.task.id),
}


def trajectory(i: int) -> Trajectory:
    task, sample = i // 8 % 500, i % 8
    ok = (i * 2654435761) % 7 < 3
    error = EpisodeError(code="timeout", message="no reply") if i % 97 == 0 else \
        EpisodeError(code="invalid_action", message="bad call") if i % 89 == 0 else None
    tokens = list(range(100 + i % 50, 140 + i % 50))
    turns = [Turn(index=k, token_ids=tokens, loss_mask=[0] * 20 + [1] * 20, logprobs=[None] * 20 + [-0.1] * 20,
                  text=f"calling echo {k}", signals={"valid_action": 1.0},
                  action=Action(tool_calls=[ToolCall(id=f"c{k}", function=FunctionCall(name="echo",
                                                                                       arguments='{"word": "x"}'))]),
                  observation=[Message(role="tool", content="x", tool_call_id=f"c{k}")]) for k in range(2)]
    return Trajectory(
        id=f"task-{task:04d}@{i // 4000}#{sample}", group=f"task-{task:04d}@{i // 4000}", sample=sample,
        task=TaskSpec(id=f"task-{task:04d}", env="echo", instruction="say x", category=f"c{task % 10}",
                      split="test" if task % 5 == 0 else "train"),
        base_seed=i // 4000, seed=i, provenance=Provenance(env="echo@v1", runtime="local", policy="bench",
                                                          weights_version=str(i // 10000)),
        prompt=[Message(role="user", content="Say x twice.")], prompt_ids=list(range(30)), turns=turns,
        signals={"success": float(ok)}, reward=None if error and error.code == "timeout" else (i % 11) / 10,
        rewards={"outcome": float(ok)}, error=error, seconds=0.5)


def build(path: Path, n: int) -> float:
    started = time.perf_counter()
    with TrajectoryStore(path).writer(fsync_every=None) as writer, Progress(console=err, transient=True) as bar:
        task = bar.add_task("writing the store", total=n)
        for i in range(n):
            writer.append(trajectory(i))
            if i % 1000 == 0:
                bar.update(task, completed=i)
    return time.perf_counter() - started


def naive(path: Path, keep: Callable[[Trajectory], bool], sort: str | None) -> dict[str, Any]:
    """What a viewer without an index does per request: read every record, filter, count, pass@k, sort, page."""
    chosen = [t for t in TrajectoryStore(path).iter() if keep(t)]
    by_task: dict[str, list[bool]] = {}
    for t in chosen:
        if not t.masked:
            by_task.setdefault(t.task.id, []).append(t.signals.get("success", 0) >= 1)
    pass1 = statistics.fmean(pass_at_k(len(v), sum(v), 1) for v in by_task.values()) if by_task else None
    if sort:
        chosen.sort(key=lambda t: -(t.reward or 0))
    return {"total": len(chosen), "pass@1": pass1, "first": [t.id for t in chosen[:50]]}


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="trajectories in the store (default 100000)")
    parser.add_argument("--store", type=Path, help="reuse (or create) the store here instead of a temporary one")
    parser.add_argument("--naive-repeat", type=int, default=1, help="naive full scans per query (slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "store"
        write_s = build(path, args.n) if not path.exists() else None
        result: dict[str, Any] = {"n": args.n, "store_mb": round(TrajectoryStore(path).size_bytes() / 2**20, 1),
                                  "write_s": write_s}
        started = time.perf_counter()
        index = StoreIndex(path)
        index.refresh()
        result["index_build_s"] = time.perf_counter() - started
        started = time.perf_counter()
        client = TestClient(create_app(path))
        first = client.get("/")
        result["first_page_s"] = time.perf_counter() - started  # a fresh app: index build + the first page
        assert first.status_code == 200, first.text
        table = Table(title=f"gymbox view on {args.n} trajectories ({result['store_mb']} MB)")
        for column in ("query", "rows", "indexed page (ms)", "naive full scan (ms)", "speedup"):
            table.add_column(column, justify="left" if column == "query" else "right")
        result["queries"] = {}
        for name, (query, keep) in QUERIES.items():
            seconds, page = timed(lambda q=query: client.get("/?" + q), 5)
            assert page.status_code == 200
            naive_s, scanned = timed(lambda k=keep, q=query: naive(path, k, "sort=" in q), args.naive_repeat)
            indexed = index.page(Filters.from_query(dict(p.split("=") for p in query.split("&") if p)))
            assert indexed.counts.total == scanned["total"], (name, indexed.counts.total, scanned["total"])
            entry = {"rows": scanned["total"], "indexed_ms": seconds * 1e3, "naive_ms": naive_s * 1e3,
                     "speedup": naive_s / seconds}
            result["queries"][name] = entry
            table.add_row(name, str(entry["rows"]), f"{entry['indexed_ms']:.1f}", f"{entry['naive_ms']:.0f}",
                          f"{entry['speedup']:.0f}x")
        deep, _ = timed(lambda: client.get(f"/?sort=reward&offset={args.n // 2}"), 5)
        result["deep_page_ms"] = deep * 1e3
        # The store grows: 1% more records appended, then the next page reads only those.
        with TrajectoryStore(path).writer(fsync_every=None) as writer:
            for i in range(args.n, args.n + args.n // 100):
                writer.append(trajectory(i))
        grown, _ = timed(lambda: client.get("/"), 1)
        result["page_after_growth_ms"] = grown * 1e3
        result["refresh_unchanged_ms"] = timed(lambda: client.get("/"), 5)[0] * 1e3
        trajectory_page, shown = timed(lambda: client.get("/trajectory?id=task-0007%400%233"), 3)
        assert shown.status_code == 200, shown.text
        result["trajectory_page_ms"] = trajectory_page * 1e3
        result["median_speedup"] = statistics.median(q["speedup"] for q in result["queries"].values())
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        result["load_average"] = os.getloadavg()  # the machine's load while it ran: shared machines vary
    err.print(table)
    err.print(f"index build {result['index_build_s']:.1f} s, first page {result['first_page_s']:.1f} s, deep page "
              f"{result['deep_page_ms']:.0f} ms, after +{args.n // 100} records {result['page_after_growth_ms']:.0f} "
              f"ms, trajectory page {result['trajectory_page_ms']:.0f} ms")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
