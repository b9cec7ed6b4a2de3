"""`gymbox webshop`: make a catalog, score the expert and the rule baseline, serve the shop as web pages."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.models import Action
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite
from gymbox.tasks.webshop.catalog import DEFAULT_PRODUCTS, generated_catalog
from gymbox.tasks.webshop.expert import FirstResultBaseline, WebShopExpert

console = Console()
POLICIES = {"expert": WebShopExpert, "first result": FirstResultBaseline}


def cmd_catalog(args: argparse.Namespace) -> int:
    try:
        catalog = generated_catalog(args.seed, args.products)
    except ValueError as exc:
        console.print(f"[red]cannot make the catalog[/red]: {exc}")
        return 2
    table = Table(title=f"generated catalog: seed {args.seed}, {len(catalog.products):,} products, "
                        f"{len(catalog.goals):,} goals")
    for column in ("category", "products", "product types", "mean price", "goals"):
        table.add_column(column)
    goals = collections.Counter(catalog.get(g.asin).category for g, _ in catalog.goals)
    for category in sorted({p.category for p in catalog.products}):
        items = [p for p in catalog.products if p.category == category]
        table.add_row(category, f"{len(items):,}", str(len({p.query for p in items})),
                      f"${statistics.mean(p.price for p in items):.2f}", f"{goals[category]:,}")
    console.print(table)
    if args.out:
        with open(args.out, "w") as out:
            for product in catalog.products:
                out.write(json.dumps({"product": asdict(product)}) + "\n")
            for goal, split in catalog.goals:
                out.write(json.dumps({"goal": goal.payload(), "split": split}) + "\n")
        console.print(f"wrote {args.out} (JSON lines: products, then goals with their split)")
    return 0


async def _play(client_of: Callable[[], Awaitable[EnvClient]], task: TaskSpec, policy_cls: type) -> float:
    policy = policy_cls(task)
    async with await client_of() as client:
        text = (await client.reset(task, 0)).messages[0].content or ""
        for _ in range(task.limits.max_turns):
            result = await client.step(Action(text=policy.act(text)))
            text = result.observation.messages[0].content or ""
            if result.done:
                return result.reward or 0.0
    return 0.0


def cmd_baseline(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime import LocalRuntime

    tasks = list(load_suite(args.suite).tasks)[: args.limit]

    async def run() -> dict[str, list[float]]:
        scores: dict[str, list[float]] = {}
        async with LocalRuntime("webshop") as runtime:
            with Progress(console=console) as progress:
                for name, policy in POLICIES.items():
                    bar = progress.add_task(name, total=len(tasks))
                    scores[name] = []
                    for task in tasks:
                        scores[name].append(await _play(runtime.client, task, policy))
                        progress.advance(bar)
        return scores

    scores = asyncio.run(run())
    table = Table(title=f"{args.suite}: {len(tasks)} tasks (score = 100 x mean reward; success = reward 1)")
    for column in ("policy", "score", "success"):
        table.add_column(column)
    for name, values in scores.items():
        success = 100 * sum(v == 1 for v in values) / len(values)
        table.add_row(name, f"{100 * statistics.mean(values):.1f}", f"{success:.1f}%")
    table.add_row("original rule baseline (paper)", "45.6", "9.6%")
    console.print(table)
    console.print(json.dumps({k: round(100 * statistics.mean(v), 2) for k, v in scores.items()}))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gymbox.harness.webshop_web import serve

    server = serve(args.host, args.port, args.suite)
    host, port = server.server_address[:2]
    console.print(f"web shop on http://{host}:{port}/ (tasks of {args.suite}; /new?task=ID starts another); "
                  "Ctrl-C ends")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    shop = sub.add_parser("webshop", help="the web shop: catalog, baseline figures, web pages",
                          description="the web shop: catalog, baseline figures, web pages")
    commands = shop.add_subparsers(dest="webshop_command", required=True)
    p = commands.add_parser("catalog", help="make a generated catalog and show what it holds")
    p.add_argument("--products", type=int, default=DEFAULT_PRODUCTS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the products and goals here as JSON lines")
    p.set_defaults(handler=cmd_catalog)
    p = commands.add_parser("baseline", help="score the expert and the 'buy the first result' rule on a suite")
    p.add_argument("--suite", default="webshop:test")
    p.add_argument("--limit", type=int, default=500)
    p.set_defaults(handler=cmd_baseline)
    p = commands.add_parser("serve", help="serve the shop as web pages a person can use")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--suite", default="webshop:test")
    p.set_defaults(handler=cmd_serve)
