"""The `gymbox` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from gymbox.agent.models import ModelUnavailable
from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.registry import default_registry
from gymbox.environments.api.serve import add_arguments as add_serve_arguments
from gymbox.harness.cli_collect import add_commands as add_collect_commands
from gymbox.harness.cli_docker import add_commands as add_docker_commands
from gymbox.harness.cli_eval import add_commands as add_eval_commands
from gymbox.harness.cli_games import add_games_commands
from gymbox.harness.cli_models import add_commands as add_model_commands
from gymbox.harness.cli_new_env import add_commands as add_new_env_commands
from gymbox.harness.cli_progress import add_commands as add_progress_commands
from gymbox.harness.cli_sft import add_commands as add_sft_commands
from gymbox.harness.cli_swe import add_swe_commands
from gymbox.harness.cli_train import add_commands as add_train_commands
from gymbox.harness.cli_traj import add_commands as add_traj_commands
from gymbox.harness.cli_view import add_commands as add_view_commands
from gymbox.harness.cli_webshop import add_commands as add_webshop_commands
from gymbox.harness.doctor import add_commands as add_doctor_commands
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import UnknownSuite, describe_suite, list_suites, load_suite

console = Console()


def cmd_envs(args: argparse.Namespace) -> int:
    registry = default_registry()
    table = Table(title="registered environments")
    for column in ("id", "description", "tools", "suites"):
        table.add_column(column)
    for env_id in registry.ids():
        try:
            cls = registry.load(env_id)
        except EnvError as err:
            table.add_row(env_id, f"[red]cannot load: {err.message}[/red]", "", "")
            continue
        table.add_row(env_id, cls.description, str(len(cls.tools)) if cls.tools else "per task",
                      ", ".join(cls.suites))
    console.print(table)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    if not args.suite:
        table = Table(title="task suites")
        for column in ("suite", "environments", "tasks", "train", "test"):
            table.add_column(column)
        for name in list_suites():
            try:
                suite = load_suite(name)
            except Exception as exc:  # one broken suite must not hide the others
                table.add_row(name, f"[red]cannot load: {type(exc).__name__}: {exc}[/red]", "", "", "")
                continue
            splits = [str(sum(t.split == s for t in suite.tasks)) for s in ("train", "test")]
            table.add_row(name, ", ".join(suite.envs), str(len(suite)), *splits)
        console.print(table)
        return 0
    suite = load_suite(args.suite)
    table = Table(title=f"{suite.name}: {len(suite)} tasks")
    for column in ("id", "category", "split", "instruction"):
        table.add_column(column, overflow="fold")
    for task in suite.tasks[: args.limit]:
        instruction = task.instruction if len(task.instruction) < 100 else task.instruction[:97] + "..."
        table.add_row(task.id, task.category, task.split, instruction)
    console.print(table)
    if not suite.tasks:
        console.print(f"[yellow]no tasks on this machine[/yellow]: {describe_suite(args.suite)}")
    if args.limit < len(suite):
        console.print(f"[dim]showing {args.limit} of {len(suite)}; --limit N shows more[/dim]")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gymbox.environments.api.serve import serve_from_args

    serve_from_args(args)
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    from gymbox.environments.runtime import make_runtime
    from gymbox.environments.runtime.checker import check_runtime

    kind = args.runtime or ("docker" if default_registry().load(args.env).isolation == "container" else "process")

    async def run() -> int:
        async with make_runtime(kind, args.env) as runtime:
            report = await check_runtime(runtime, max_tasks=args.tasks, seed=args.seed)
        table = Table(title=f"check-env {report.env} ({kind} runtime, tasks: {', '.join(report.tasks)})")
        for column in ("check", "result", "seconds", "detail"):
            table.add_column(column, overflow="fold")
        for r in report.results:
            mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
            table.add_row(r.name, mark, f"{r.seconds:.2f}", r.detail)
        console.print(table)
        console.print(f"{report.env}: " + ("[green]conforms[/green]" if report.ok else
                                           f"[red]{len(report.failures())} checks failed[/red]"))
        return 0 if report.ok else 1

    return asyncio.run(run())


def cmd_play(args: argparse.Namespace) -> int:
    from gymbox.environments.api.sync_client import SyncEnvClient
    from gymbox.environments.runtime import sync_client
    from gymbox.harness.play import play_in_terminal

    registry = default_registry()
    entry = registry.resolve(args.env)
    suites = [args.suite] if args.suite else entry.load().suites
    task = _find_task(suites, args.task)

    if args.url or args.uds:
        client = SyncEnvClient.connect(args.url, uds=args.uds)
    else:
        client = sync_client("local", entry.id, registry=registry)
    try:
        play_in_terminal(client, task, args.seed, console)
    finally:
        client.close()
    return 0


def _find_task(suites: list[str], task_id: str) -> TaskSpec:
    for name in suites:
        try:
            return load_suite(name).get(task_id)
        except UnknownSuite:
            continue
    raise UnknownSuite(f"no task {task_id!r} in suites {', '.join(suites)}; list them with `gymbox tasks SUITE`")


def cmd_demo(args: argparse.Namespace) -> int:
    from gymbox.harness.demo import main

    return main(args.suite, args.runtime)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gymbox", description="Multi-turn environments for tool-using agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    add("envs", cmd_envs, "list the registered environments")
    p = add("tasks", cmd_tasks, "list task suites, or the tasks of one (SUITE or SUITE:train / SUITE:test)")
    p.add_argument("suite", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    p = add("serve", cmd_serve, "serve an environment on a loopback port or a Unix socket")
    add_serve_arguments(p, log_level="info")
    p = add("check-env", cmd_check_env, "check that an environment follows the step API's rules")
    p.add_argument("env")
    p.add_argument("--runtime", choices=["local", "process", "docker"],
                   help="default: docker for container environments, process for the others")
    p.add_argument("--tasks", type=int, default=6, help="how many tasks of its suites to probe")
    p.add_argument("--seed", type=int, default=1234)
    p = add("play", cmd_play, "play an episode yourself, in the terminal")
    p.add_argument("env")
    p.add_argument("--task", required=True, help="task id (see `gymbox tasks SUITE`)")
    p.add_argument("--suite", help="the suite holding the task (default: the environment's suites)")
    p.add_argument("--seed", type=int)
    p.add_argument("--url", help="play against a running server (http://127.0.0.1:8000)")
    p.add_argument("--uds", help="play against a running server on this Unix socket")
    add_docker_commands(sub)
    add_traj_commands(sub)
    add_view_commands(sub)
    add_model_commands(sub)
    add_eval_commands(sub)
    add_collect_commands(sub)
    add_train_commands(sub)
    add_sft_commands(sub)
    add_progress_commands(sub)
    add_games_commands(sub)
    add_swe_commands(sub)
    add_new_env_commands(sub)
    add_webshop_commands(sub)
    add_doctor_commands(sub)
    p = add("demo", cmd_demo, "run scripted episodes through a real server process")
    p.add_argument("--suite", default="echo-demo:test")
    p.add_argument("--runtime", choices=["local", "process"], default="process")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except EnvError as err:
        console.print(f"[red]{type(err).__name__}[/red]: {err.message}")
        code = 2
    except UnknownSuite as err:
        console.print(f"[red]unknown suite or task[/red]: {err}")
        code = 2
    except ModelUnavailable as err:
        console.print(f"[red]model unavailable[/red]: {err}")
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
