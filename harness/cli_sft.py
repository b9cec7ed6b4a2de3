"""`gymbox sft CONFIG`: supervised fine-tuning on stored demonstrations (see configs/), and `gymbox models merge`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()


def cmd_sft(args: argparse.Namespace) -> int:
    from gymbox.harness.sft_config import SFTConfig, SFTConfigError

    try:  # every setting is checked here, before a store is read or a model loads
        config = SFTConfig.load(args.config, steps=args.steps, out=str(args.out) if args.out else None)
    except SFTConfigError as err:
        console.print(f"[red]bad sft config[/red]: {err}")
        return 2
    from gymbox.harness.sft import main
    from gymbox.harness.sft_data import NoDemonstrations

    try:
        return main(config, fresh=args.fresh)
    except NoDemonstrations as err:
        console.print(f"[red]no demonstrations to learn from[/red]: {err}")
        return 2


def cmd_merge(args: argparse.Namespace) -> int:
    """Base + LoRA adapter as one model folder."""
    from gymbox.agent.learner import lora

    if not lora.is_adapter(args.adapter):
        console.print(f"[red]not an adapter folder[/red]: {args.adapter} has no {lora.ADAPTER_CONFIG} (an sft run "
                      "with lora writes one in OUT/final)")
        return 2
    try:
        out = lora.merge_adapter(args.adapter, args.out, base=args.base)
    except (ValueError, OSError) as err:
        console.print(f"[red]cannot merge[/red]: {err}")
        return 2
    console.print(f"merged model: {out}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning on demonstrations from trajectory stores (full or LoRA)")
    p.add_argument("config", type=Path, help="sft configuration (YAML), e.g. configs/sft-echo.yaml")
    p.add_argument("--steps", type=int, help="override: this many optimizer steps (instead of epochs)")
    p.add_argument("--out", type=Path, help="override the run folder")
    p.add_argument("--fresh", action="store_true",
                   help="delete the run folder and start over (default: resume from its latest checkpoint)")
    p.set_defaults(handler=cmd_sft)


def add_merge_command(models: Any) -> None:
    """`gymbox models merge ADAPTER --out DIR`, under the `models` command."""
    p = models.add_parser("merge", help="merge a LoRA adapter into its base model (a folder vLLM can serve)")
    p.add_argument("adapter", type=Path, help="adapter folder (an sft run's OUT/final)")
    p.add_argument("--out", type=Path, required=True, help="where to write the merged model")
    p.add_argument("--base", help="base model folder (default: the one the adapter records)")
    p.set_defaults(handler=cmd_merge)
