"""`gymbox traj ...`: show, list and export the trajectories of a store."""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gymbox.environments.api.models import Message, ToolCall
from gymbox.environments.records import Trajectory, Turn
from gymbox.harness.store import StoreError, TrajectoryStore

console = Console()
err_console = Console(stderr=True)


def _store_command(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Skipped lines become one-line notices on stderr, and store errors an exit status of 2 with the reason."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *rest: err_console.print(
                Text.assemble(("warning: ", "yellow"), str(message)))
            try:
                return handler(args)
            except StoreError as err:
                err_console.print(Text.assemble(("error: ", "red"), str(err)))
                return 2

    return run


@_store_command
def cmd_show(args: argparse.Namespace) -> int:
    store = TrajectoryStore(args.path)
    trajectory = store.get(args.id) if args.id is not None else _at(store, args.index)
    console.print(render(trajectory, tokens=args.tokens))
    return 0


def _at(store: TrajectoryStore, index: int) -> Trajectory:
    """The record at `index` in write order, holding at most |index| records (a store can outgrow memory)."""
    last: deque[Trajectory] = deque(maxlen=max(-index, 1))
    count = 0
    for count, record in enumerate(store.iter(), 1):
        last.append(record)
        if count == index + 1:
            return record
    if index < 0 and -index <= count:
        return last[0]
    raise StoreError(f"no trajectory at index {index}: {store.path} holds {count}")


@_store_command
def cmd_ls(args: argparse.Namespace) -> int:
    store = TrajectoryStore(args.path)
    table = Table(title=f"trajectories in {args.path}")
    for column in ("#", "id", "task", "group / sample", "turns", "tokens", "reward", "error"):
        table.add_column(column, overflow="fold", justify="right" if column in ("#", "turns", "tokens") else "left")
    count = masked = 0
    for i, t in enumerate(store.iter()):
        count += 1
        masked += t.masked
        if args.limit is None or i < args.limit:
            error = Text(f"{t.error.code}{f' ({t.error.kind}, masked)' if t.masked else ''}", "red") if t.error else ""
            table.add_row(str(i), t.id, t.task.id, f"{t.group} / {t.sample}", str(len(t.turns)),
                          str(len(t.prompt_ids) + sum(len(turn.token_ids) for turn in t.turns)),
                          _number(t.reward), error)
    console.print(table)
    shown = "" if args.limit is None or args.limit >= count else f", showing {args.limit}"
    console.print(f"{count} trajectories, {masked} masked{shown}")
    return 0


@_store_command
def cmd_export(args: argparse.Namespace) -> int:
    from gymbox.harness.store_export import export

    fmt = args.format or {".parquet": "parquet", ".jsonl": "jsonl"}.get(Path(args.out).suffix)
    if fmt is None:
        raise StoreError(f"cannot tell the format from {args.out!r}: pass --format parquet or --format jsonl")
    count = export(TrajectoryStore(args.path), args.out, fmt, progress=True)
    console.print(f"wrote {count} trajectories to {args.out} ({fmt})")
    return 0


def render(t: Trajectory, *, tokens: bool = False) -> RenderableType:
    """A trajectory for the terminal: a header, the prompt, then each turn."""
    p = t.provenance
    head = _grid()
    head.add_row("task", Text(f"{t.task.id} ({t.task.env}{', ' + t.task.category if t.task.category else ''}"
                              f"{', ' + t.task.split if t.task.split else ''})"))
    if t.task.instruction:
        head.add_row("instruction", Text(t.task.instruction))
    head.add_row("group", Text(f"{t.group}, sample {t.sample}"))
    head.add_row("seed", Text(f"{t.seed} (base seed {t.base_seed})"))
    image = f", image {p.image}" + (f" ({p.image_digest})" if p.image_digest else "") if p.image else ""
    head.add_row("environment", Text(f"{p.env} on the {p.runtime} runtime{image}"))
    head.add_row("policy", Text(f"{p.policy}, weights {p.weights_version}"
                                + (f", sampling {json.dumps(p.sampling)}" if p.sampling else "")))
    if p.packages:
        head.add_row("packages", Text(", ".join(f"{k} {v}" for k, v in sorted(p.packages.items()))))
    head.add_row("reward", Text(_number(t.reward) + (f"  {_pairs(t.rewards)}" if t.rewards else ""), "bold"))
    if t.signals:
        head.add_row("signals", Text(_pairs(t.signals)))
    head.add_row("ended", Text(_ending(t.terminated, t.truncated, t.truncated_by)))
    if t.error:
        head.add_row("error", Text(f"{t.error.code}: {t.error.message}"
                                   f" ({t.error.kind}: {'masked from learning' if t.masked else 'scored'}"
                                   f", {t.error.attempts} attempts)", "red"))
    for number, failure in enumerate(t.failed_attempts, start=1):
        head.add_row(f"attempt {number}", Text(f"failed: {failure.code}: {failure.message}", "yellow"))
    generated = sum(t.loss_mask)
    head.add_row("tokens", Text(f"{len(t.prompt_ids)} prompt + {len(t.loss_mask) - len(t.prompt_ids)} in "
                                f"{len(t.turns)} turns ({generated} generated)"))
    started = ("at an unrecorded time" if t.started_at is None else
               datetime.datetime.fromtimestamp(t.started_at).isoformat(sep=" ", timespec="seconds"))
    head.add_row("time", Text(f"{t.seconds:.2f} s, started {started}"))
    parts: list[RenderableType] = [Panel(head, title=Text(f"trajectory {t.id}", "bold"), title_align="left")]
    if t.prompt or t.tools:
        prompt = _grid()
        if t.instructions:
            prompt.add_row("format", Text(t.instructions, style="dim"))
        for m in t.prompt:
            _add_message(prompt, m)
        if t.tools:
            prompt.add_row("tools", Text(", ".join(tool.function.name for tool in t.tools)))
        parts.append(Panel(prompt, title="prompt", title_align="left"))
    if tokens and t.prompt_ids:
        parts.append(Panel(_token_runs(t.prompt_ids, [0] * len(t.prompt_ids)), title="prompt tokens",
                           title_align="left"))
    parts.extend(_render_turn(turn, tokens) for turn in t.turns)
    return Group(*parts)


def _render_turn(turn: Turn, tokens: bool) -> RenderableType:
    grid = _grid()
    text = turn.text or (turn.action.text if turn.action else "")
    grid.add_row("generated", Text(text or "(empty)", "" if text else "dim"))
    for call in turn.action.tool_calls if turn.action else []:
        grid.add_row("tool call", _call(call))
    if turn.parse_error:
        grid.add_row("parse error", Text(turn.parse_error, "red"))
    for m in turn.observation:
        _add_message(grid, m)
    if turn.reward is not None:
        grid.add_row("reward", Text(_number(turn.reward)))
    if turn.signals:
        grid.add_row("signals", Text(_pairs(turn.signals)))
    if turn.terminated or turn.truncated:
        grid.add_row("ended", Text(_ending(turn.terminated, turn.truncated, None)))
    grid.add_row("time", Text(f"policy {turn.policy_seconds:.3f} s, environment {turn.env_seconds:.3f} s"))
    generated = [lp for lp, m in zip(turn.logprobs, turn.loss_mask, strict=True) if m and lp is not None]
    mean = f", mean logprob {sum(generated) / len(generated):.3f}" if generated else ""
    grid.add_row("tokens", Text(f"{len(turn.token_ids)} ({sum(turn.loss_mask)} generated{mean})"))
    if tokens and turn.token_ids:
        grid.add_row("token ids", _token_runs(turn.token_ids, turn.loss_mask))
    return Panel(grid, title=f"turn {turn.index}", title_align="left")


def _token_runs(ids: list[int], mask: list[int]) -> Text:
    """Token ids in runs of equal loss mask, labelled, so the mask reads without colour too."""
    text = Text()
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or mask[end] != mask[start]:
            style = "green" if mask[start] else "dim"
            text.append(f"[mask {mask[start]}] ", "bold " + style)
            text.append(" ".join(map(str, ids[start:end])) + "\n", style)
            start = end
    text.rstrip()
    return text


def _add_message(grid: Table, m: Message) -> None:
    label = m.role + (f" {m.name}" if m.name else "") + (f" ({m.tool_call_id})" if m.tool_call_id else "")
    grid.add_row(label, Text(m.content or "", "cyan" if m.role == "tool" else ""))
    for call in m.tool_calls or []:
        grid.add_row("  tool call", _call(call))


def _call(call: ToolCall) -> Text:
    try:
        args: Any = json.loads(call.function.arguments)
        shown = json.dumps(args, ensure_ascii=False)
    except json.JSONDecodeError:
        shown = call.function.arguments  # shown as generated: a malformed call is worth seeing
    return Text.assemble((call.function.name, "bold magenta"), f"({shown})  ", (call.id, "dim"))


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def _number(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def _pairs(values: dict[str, float | None]) -> str:
    return ", ".join(f"{k}={_number(v)}" for k, v in values.items())


def _ending(terminated: bool, truncated: bool, by: str | None) -> str:
    if truncated:
        return "truncated" + (f" by {by}" if by else "")
    return "terminated" if terminated else "neither terminated nor truncated"


def add_commands(sub: Any) -> None:
    traj = sub.add_parser("traj", help="show, list and export stored trajectories").add_subparsers(
        dest="traj_command", required=True)
    where = "a store directory, or one JSON-lines file"
    p = traj.add_parser("show", help="print one trajectory readably (default: the first)")
    p.add_argument("path", help=where)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--id", help="the trajectory's id")
    which.add_argument("--index", type=int, default=0, help="position in write order; negative counts from the end")
    p.add_argument("--tokens", action="store_true", help="also print the token ids with their loss mask")
    p.set_defaults(handler=cmd_show)
    p = traj.add_parser("ls", help="list the trajectories of a store")
    p.add_argument("path", help=where)
    p.add_argument("--limit", type=int, help="list at most this many (all are counted)")
    p.set_defaults(handler=cmd_ls)
    p = traj.add_parser("export", help="export a store to Parquet (one flat row per trajectory) or JSONL")
    p.add_argument("path", help=where)
    p.add_argument("--format", choices=["parquet", "jsonl"], help="default: from the extension of --out")
    p.add_argument("--out", required=True, help="the file to write")
    p.set_defaults(handler=cmd_export)
