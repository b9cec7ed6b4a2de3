"""`gymbox swe images | generate | validate`: the package images, task generation, and checking the suite."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def _packages(names: list[str] | None) -> list[Any]:
    from gymbox.tasks.swe.packages import PACKAGES, package

    return [package(n) for n in names] if names else list(PACKAGES.values())


def build_package_image(client: Any, pkg: Any, *, force: bool = False) -> str:
    """Build (or reuse) `gymbox/swe-NAME:VERSION` from its recipe in `tasks.swe.images`; returns the image id."""
    from gymbox.environments.runtime.images import BASE_TAG, build_base, build_image, built_image
    from gymbox.tasks.swe.images import RECIPE_LABEL, image_labels, recipe_digest, write_context

    tag = pkg.image()
    image = None if force else built_image(client, tag, RECIPE_LABEL, recipe_digest(pkg))
    if image is not None:
        console.print(f"{tag} is up to date ({image.id[:19]})")
        return str(image.id)
    build_base(client, log=console.print)  # the Debian base all gymbox images share (debootstrap, once)
    console.print(f"docker build {tag}")
    image = build_image(client, tag, context=lambda folder: write_context(pkg, folder, base=BASE_TAG),
                        log=console.print, network_mode="none", labels=image_labels(pkg))
    return str(image.id)


def cmd_images(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.containers import docker_client

    client = docker_client(timeout=600)
    for pkg in _packages(args.packages):
        build_package_image(client, pkg, force=args.force)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime.containers import docker_client, reap
    from gymbox.environments.runtime.docker_sandbox import ContainerSandbox
    from gymbox.environments.runtime.images import image_files
    from gymbox.tasks.swe.generate import generate_package

    client = docker_client(timeout=600)  # a whole test run is one engine call
    reap(client)
    packages = _packages(args.packages)
    for pkg in packages:
        build_package_image(client, pkg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[list[dict[str, Any]], float]] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = {pkg.slug: progress.add_task(pkg.slug, total=args.count) for pkg in packages}

        def one(pkg: Any) -> None:
            started = time.monotonic()
            checkout = image_files(client, pkg.image(), pkg.root)
            with ContainerSandbox.start(client, pkg.image(), env_id="swe@v1") as box:
                tasks = generate_package(box, checkout, pkg, count=args.count, seed=args.seed, tries=args.tries,
                                         log=progress.console.print,
                                         advance=lambda n: progress.advance(bars[pkg.slug], n))
            path = out / f"{pkg.slug}.jsonl"
            path.write_text("".join(json.dumps(t, sort_keys=True) + "\n" for t in sorted(tasks, key=lambda t: t["id"])))
            results[pkg.slug] = (tasks, time.monotonic() - started)

        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(one, pkg) for pkg in packages]:
                future.result()
    table = Table("package", "tasks", "train", "test", "FAIL_TO_PASS (median)", "PASS_TO_PASS (median)", "minutes")
    for slug, (tasks, seconds) in sorted(results.items()):
        table.add_row(slug, str(len(tasks)), str(sum(t["split"] == "train" for t in tasks)),
                      str(sum(t["split"] == "test" for t in tasks)),
                      _median([len(t["fail_to_pass"]) for t in tasks]),
                      _median([len(t["pass_to_pass"]) for t in tasks]), f"{seconds / 60:.1f}")
    console.print(table)
    console.print(f"wrote {sum(len(t) for t, _ in results.values())} tasks to {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from gymbox.harness.swe_validate import check_task
    from gymbox.tasks import load_suite

    tasks = [t for t in load_suite(args.suite).tasks if not args.packages or t.category in args.packages]
    tasks = tasks[: args.limit]
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, ThreadPoolExecutor(args.jobs) as pool:
        bar = progress.add_task("validate", total=len(tasks))
        for row in pool.map(check_task, tasks):
            rows.append(row)
            progress.advance(bar)
            if not row["ok"]:
                progress.console.print(f"[red]{row['task']}[/red]: {row['why']}")
            elif not console.is_terminal:  # no live bar in a log file: a line per task instead
                progress.console.print(f"{len(rows)}/{len(tasks)} {row['task']}: valid ({row['gold_seconds']:.0f} s)")
    table = Table("package", "tasks", "valid", "gold resolves", "unpatched fails", "gold episode s (median)")
    for package in sorted({r["package"] for r in rows}):
        mine = [r for r in rows if r["package"] == package]
        table.add_row(package, str(len(mine)), str(sum(r["ok"] for r in mine)),
                      str(sum(r["gold_resolved"] for r in mine)), str(sum(not r["bare_resolved"] for r in mine)),
                      f"{statistics.median(r['gold_seconds'] for r in mine):.1f}")
    console.print(table)
    bad = [r for r in rows if not r["ok"]]
    console.print(f"{len(rows) - len(bad)} of {len(rows)} tasks valid")
    return 1 if bad else 0


def _median(values: list[int]) -> str:
    return f"{statistics.median(values):g}" if values else "-"


def add_swe_commands(sub: Any) -> None:
    from gymbox.tasks.swe.suite import DATA

    parser = sub.add_parser("swe", help="the swe environment's package images, task generation and validation")
    swe = parser.add_subparsers(dest="swe_command", required=True)
    p = swe.add_parser("images", help="build the package images (sources and test tools come from PyPI)")
    p.add_argument("packages", nargs="*", help="package names (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(handler=cmd_images)
    p = swe.add_parser("generate", help="inject bugs into the packages and keep those the tests catch")
    p.add_argument("packages", nargs="*", help="package names (default: all)")
    p.add_argument("--count", type=int, default=20, help="tasks per package (default 20)")
    p.add_argument("--tries", type=int, default=None, help="mutations tried per package (default 3 x count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="packages generated at once (one container each)")
    p.add_argument("--out", default=str(DATA), help=f"folder for PACKAGE.jsonl (default {DATA})")
    p.set_defaults(handler=cmd_generate)
    p = swe.add_parser("validate", help="play each task's gold patch (resolves) and no patch (does not)")
    p.add_argument("suite", nargs="?", default="swe", help="suite or suite:split (default swe)")
    p.add_argument("--packages", nargs="*", help="only these packages' tasks")
    p.add_argument("--limit", type=int, help="the first N tasks only")
    p.add_argument("--jobs", type=int, default=2, help="tasks checked at once (two containers each)")
    p.set_defaults(handler=cmd_validate)
