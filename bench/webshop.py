"""Web shop search and steps: Tantivy's index build and query latency at 5k and 100k products against a plain
in-memory BM25 in Python over the same documents and queries, and step latency through a server process.

Prints a table, then JSON on the last line. Usage: `.venv/bin/python bench/webshop.py [--sizes 5000 100000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _workload import percentile
from rich.console import Console
from rich.table import Table

from gymbox.environments.api import Action
from gymbox.environments.runtime import ProcessRuntime
from gymbox.environments.webshop.search import SearchEngine, query_terms
from gymbox.tasks import load_suite
from gymbox.tasks.webshop.catalog import Catalog, generated_catalog
from gymbox.tasks.webshop.expert import WebShopExpert

K1, B = 1.5, 0.75  # Okapi BM25's usual constants (Tantivy uses the same)


class PlainBM25:
    """BM25 with an inverted index of Python dicts: the baseline a simple environment would write itself."""

    def __init__(self, catalog: Catalog) -> None:
        self.asins = [p.asin for p in catalog.products]
        self.postings: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        self.lengths: list[int] = []
        for doc, product in enumerate(catalog.products):
            words = _words(product.document())
            self.lengths.append(len(words))
            for term, count in collections.Counter(words).items():
                self.postings[term].append((doc, count))
        self.mean_length = sum(self.lengths) / len(self.lengths)

    def search(self, query: str, top_k: int = 50) -> list[str]:
        scores: dict[int, float] = collections.defaultdict(float)
        n = len(self.asins)
        for term in query_terms(query):
            postings = self.postings.get(term, [])
            idf = math.log(1 + (n - len(postings) + 0.5) / (len(postings) + 0.5))
            for doc, tf in postings:
                norm = tf + K1 * (1 - B + B * self.lengths[doc] / self.mean_length)
                scores[doc] += idf * tf * (K1 + 1) / norm
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top_k]
        return [self.asins[doc] for doc, _ in best]


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def measure_search(size: int, queries: list[str], plain_queries: int) -> dict[str, float]:
    catalog = generated_catalog(0, size)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        SearchEngine.build(catalog, Path(folder))
        build = time.perf_counter() - started
        engine = SearchEngine(Path(folder))
        tantivy_ms = _latencies(engine.search, queries)
    started = time.perf_counter()
    plain = PlainBM25(catalog)
    plain_build = time.perf_counter() - started
    plain_ms = _latencies(plain.search, queries[:plain_queries])  # seconds a query at 100k: a sample is enough
    return {"products": size, "tantivy_build_s": build, "tantivy_p50_ms": percentile(tantivy_ms, 50),
            "tantivy_p99_ms": percentile(tantivy_ms, 99), "plain_build_s": plain_build,
            "plain_p50_ms": percentile(plain_ms, 50), "plain_p99_ms": percentile(plain_ms, 99)}


def _latencies(search: Callable[[str], list[str]], queries: list[str]) -> list[float]:
    out = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        out.append(1000 * (time.perf_counter() - started))
    return sorted(out)


async def measure_steps(episodes: int) -> dict[str, float]:
    """Step round trips of expert episodes through a server process (search, open, options, buy)."""
    tasks = list(load_suite("webshop:test").tasks)[:episodes]
    times: list[float] = []
    async with ProcessRuntime("webshop") as runtime:
        for n, task in enumerate([tasks[-1], *tasks]):  # the first episode warms up (index, spaCy's tagger)
            expert = WebShopExpert(task)
            async with await runtime.client() as client:
                text = (await client.reset(task, 0)).messages[0].content or ""
                while True:
                    started = time.perf_counter()
                    result = await client.step(Action(text=expert.act(text)))
                    if n:
                        times.append(1000 * (time.perf_counter() - started))
                    text = result.observation.messages[0].content or ""
                    if result.done:
                        break
    times.sort()
    return {"steps": len(times), "step_p50_ms": percentile(times, 50), "step_p99_ms": percentile(times, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--plain-queries", type=int, default=30, help="queries for the plain BM25 (slow at 100k)")
    parser.add_argument("--episodes", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("GYMBOX_CACHE", tempfile.mkdtemp(prefix="gymbox-bench-"))
    console = Console(stderr=True)
    goals = generated_catalog(0, 5000).goals
    queries = [goal.instruction for goal, _ in goals[: args.queries]]  # the instructions: long, many-word queries
    rows = []
    for size in args.sizes:
        console.print(f"search at {size:,} products ...")
        rows.append(measure_search(size, queries, args.plain_queries))
    console.print("steps through a server process ...")
    steps = asyncio.run(measure_steps(args.episodes))
    table = Table(title=f"web shop search ({len(queries)} instruction queries, top 50)")
    for column in ("products", "engine", "index build s", "query p50 ms", "query p99 ms"):
        table.add_column(column)
    for row in rows:
        table.add_row(f"{row['products']:,}", "tantivy", f"{row['tantivy_build_s']:.2f}",
                      f"{row['tantivy_p50_ms']:.3f}", f"{row['tantivy_p99_ms']:.3f}")
        table.add_row("", "plain BM25 (Python dicts)", f"{row['plain_build_s']:.2f}", f"{row['plain_p50_ms']:.3f}",
                      f"{row['plain_p99_ms']:.3f}")
    console.print(table)
    console.print(f"step through a server process: p50 {steps['step_p50_ms']:.2f} ms, p99 "
                  f"{steps['step_p99_ms']:.2f} ms ({steps['steps']} steps of {args.episodes} expert episodes)")
    print(json.dumps({"search": rows, "server": steps, "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
