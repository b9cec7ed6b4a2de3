"""`gymbox view PATH`: serve the web viewer over a store, a `gymbox train` run or a `gymbox eval` folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from gymbox.harness.store import StoreError

console = Console()
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_view(args: argparse.Namespace) -> int:
    import uvicorn

    from gymbox.harness.view.app import Viewer, create_app

    try:
        viewer = Viewer(args.path, tokenizer=args.tokenizer)
        total = viewer.index.store.size_bytes()
        with Progress(TextColumn("indexing"), BarColumn(), DownloadColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("index", total=total)
            viewer.index.refresh(progress=lambda n: bar.advance(task, n))
    except StoreError as err:
        console.print(f"[red]error[/red]: {err}")
        return 2
    if args.host not in LOOPBACK:
        console.print(f"[yellow]serving on {args.host}: anyone who can reach this machine can read the "
                      "trajectories[/yellow]")
    console.print(f"{viewer.opened.kind} {viewer.opened.root}: {len(viewer.index)} trajectories indexed; "
                  f"open http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(create_app(viewer), host=args.host, port=args.port, log_level="warning")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("view", help="browse a trajectory store, a training run or an evaluation in a web browser")
    p.add_argument("path", type=Path, help="a store (folder or JSONL file), a `gymbox train` output folder or a "
                                          "`gymbox eval` output folder")
    p.add_argument("--port", type=int, default=8765, help="default 8765")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--tokenizer", help="tokenizer for the token view (folder or name); default: the recorded "
                                       "policy's when it is a local model")
    p.set_defaults(handler=cmd_view)
