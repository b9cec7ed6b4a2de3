"""`gymbox progress train`: train SPA-RL's progress estimator from a trajectory store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gymbox.harness.store import StoreError, TrajectoryStore

if TYPE_CHECKING:
    from gymbox.rewards.progress_train import OnStep, ProgressTrainConfig, TrainReport

console = Console()


def train_from_store(store: str | Path, model_dir: str | Path, out: str | Path,
                     config: ProgressTrainConfig | None = None, on_step: OnStep | None = None) -> TrainReport:
    """`rewards.progress_train.train_progress` on every trajectory of the store at `store`."""
    from gymbox.rewards.progress_train import train_progress

    return train_progress(list(TrajectoryStore(store).iter()), model_dir, out, config, on_step, store=store)


def cmd_progress_train(args: argparse.Namespace) -> int:
    # torch and transformers load only when this command runs, not for every `gymbox` invocation.
    from gymbox.rewards.progress_train import ProgressTrainConfig, ProgressTrainError

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=console)
    task = bar.add_task("", total=None)

    def on_step(done: int, total: int, running_mse: float) -> None:
        bar.start()  # on the first step: the store and the model are checked before any bar is drawn
        bar.update(task, completed=done, total=total, description=f"running MSE {running_mse:.4f}")

    try:
        config = ProgressTrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                     max_length=args.max_length, holdout=args.holdout, seed=args.seed,
                                     device=args.device)
        report = train_from_store(args.store, args.model, args.out, config, on_step)
    except (ProgressTrainError, StoreError) as err:
        console.print(f"[red]cannot train the progress estimator[/red]: {err}")
        return 2
    finally:
        if bar.live.is_started:
            bar.stop()
    table = Table(title=f"progress estimator: MSE of Σ c_t against the reward ({report.optimizer_steps} optimizer "
                        f"steps, {report.seconds:.1f} s)")
    for column in ("set", "trajectories", "MSE before", "MSE after"):
        table.add_column(column)
    table.add_row("train", str(report.trained), f"{report.train_mse_before:.4f}", f"{report.train_mse_after:.4f}")
    if report.holdout_mse_before is not None and report.holdout_mse_after is not None:
        table.add_row("held out", str(report.held_out), f"{report.holdout_mse_before:.4f}",
                      f"{report.holdout_mse_after:.4f}")
    console.print(table)
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items() if n)
    console.print(f"skipped: {skipped or 'none'}")
    console.print(f"saved to {report.out}; use it in a reward spec with `fn: spa` and `options: {{estimator: "
                  f"{report.out}}}`")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("progress", help="SPA-RL's learned progress estimator",
                       description="SPA-RL's learned progress estimator")
    commands = p.add_subparsers(dest="progress_command", required=True)
    t = commands.add_parser("train", help="train a progress estimator so that Σ_t c_t regresses onto the reward",
                            description="train a progress estimator so that Σ_t c_t regresses onto the reward")
    t.add_argument("store", type=Path, help="a trajectory store folder or JSONL file (scored trajectories)")
    t.add_argument("--model", required=True, help="the base causal LM: a Hugging Face model folder")
    t.add_argument("--out", type=Path, required=True, help="folder to save the trained estimator to")
    t.add_argument("--epochs", type=int, default=1, help="passes over the trajectories (default 1)")
    t.add_argument("--lr", type=float, default=3e-6, help="AdamW learning rate (default 3e-6)")
    t.add_argument("--batch-size", type=int, default=1, help="trajectories per optimizer step (default 1)")
    t.add_argument("--max-length", type=int, help="skip longer trajectories (default: the model's context)")
    t.add_argument("--holdout", type=float, default=0.0, help="fraction kept out of training and evaluated")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    t.set_defaults(handler=cmd_progress_train)
