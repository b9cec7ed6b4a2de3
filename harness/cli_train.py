"""`gymbox train CONFIG`: the GRPO training loop from a YAML configuration (see configs/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console()


def cmd_train(args: argparse.Namespace) -> int:
    from gymbox.harness.train_config import TrainConfig, TrainConfigError

    try:  # every setting and the reward spec are checked here, before a model or an engine loads
        config = TrainConfig.load(args.config, steps=args.steps, out=str(args.out) if args.out else None,
                                  seed=args.seed)
    except TrainConfigError as err:
        console.print(f"[red]bad training config[/red]: {err}")
        return 2
    from gymbox.harness.train import main

    try:  # an offline run's store is checked against the model when the run starts, before the learner loads
        return main(config, fresh=args.fresh)
    except TrainConfigError as err:
        console.print(f"[red]cannot train[/red]: {err}")
        return 2


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train a policy with GRPO: rollouts, rewards, advantages, updates, weight sync")
    p.add_argument("config", type=Path, help="training configuration (YAML), e.g. configs/toolcall-format.yaml")
    p.add_argument("--steps", type=int, help="override the number of training steps")
    p.add_argument("--out", type=Path, help="override the run folder")
    p.add_argument("--seed", type=int,
                   help="override the seed (the order of training tasks and the rollouts' sampling)")
    p.add_argument("--fresh", action="store_true",
                   help="delete the run folder and start over (default: resume from its latest checkpoint)")
    p.set_defaults(handler=cmd_train)
