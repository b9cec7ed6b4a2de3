"""`gymbox sft`: supervised fine-tuning on stored demonstrations, with checkpoints, resume and a validation slice.

A run lives in `config.out`: `metrics.jsonl` (one line per step; `val_loss` where the validation slice was scored),
`tensorboard/` (the same numbers; `tracking` adds other backends), `checkpoints/` (weights or adapters, optimizer,
step, random states; the latest is resumed automatically), `final/` (the selected weights: the lowest validation
loss, or the last step) and, with LoRA, `merged/` (base + adapter as one model folder that vLLM serves).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gymbox.agent.learner import checkpoint, lora
from gymbox.agent.learner.learner import Learner
from gymbox.agent.learner.sft import nll, sft_step
from gymbox.agent.models import model_path
from gymbox.harness import sft_data
from gymbox.harness.sft_config import SFTConfig
from gymbox.harness.tracking import Tracker

BEST = ".best"  # the weights of the lowest validation loss so far, under out/


class SFTRun:
    """Runs an `SFTConfig`; `SFTRun(config).run()` returns the last step's metrics."""

    def __init__(self, config: SFTConfig, *, fresh: bool = False, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(soft_wrap=True)
        self.out = Path(config.out)
        if fresh and self.out.exists():
            shutil.rmtree(self.out)
        self.demos = sft_data.load(config)  # bad stores or filters fail before any model loads
        per_epoch = sft_data.steps_per_epoch(len(self.demos.train), config.batch_size)
        self.steps = config.steps or per_epoch * (config.epochs or 1)
        self.per_epoch = per_epoch
        self.out.mkdir(parents=True, exist_ok=True)

    def run(self) -> dict[str, Any]:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading and saving bars would bury the step lines
        cfg = self.config
        self._describe()
        initial = model_path(cfg.model)
        if Path(initial).exists():  # an adapter records its base: a path that works from any folder
            initial = str(Path(initial).resolve())
        learner = Learner.from_pretrained(initial, cfg.learner, lora=cfg.lora, seed=cfg.seed)
        state: dict[str, Any] = {"step": 0, "best_val": None, "best_step": None}
        saved = checkpoint.latest(self.out / "checkpoints")
        if saved is not None:
            state.update(checkpoint.restore(learner, saved))
            self.console.print(f"resumed from {saved} at step {state['step']}")
        tokenizer = _tokenizer(initial)
        self.tracker = Tracker(self.out, cfg.tracking, config=cfg.model_dump(mode="json"), resume_step=state["step"])
        try:
            return self._train(learner, tokenizer, state)
        finally:
            self.tracker.close()

    def _train(self, learner: Learner, tokenizer: Any, state: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        last: dict[str, Any] = {}
        evaluate_every = cfg.eval_every or cfg.checkpoint_every
        if state["step"] == 0 and self.demos.validation:
            self._log({"step": 0, "val_loss": nll(learner, self.demos.validation)})
        with Progress(TextColumn("sft"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=True) as bar:
            task = bar.add_task("sft", total=self.steps, completed=state["step"])
            for step in range(state["step"], self.steps):
                batch = sft_data.batch_at(self.demos.train, cfg.batch_size, step, cfg.seed)
                stats = sft_step(learner, batch)
                done = step + 1
                last = {"step": done, "epoch": round(done / self.per_epoch, 3), **stats.as_dict()}
                if self.demos.validation and (done % evaluate_every == 0 or done == self.steps):
                    last["val_loss"] = nll(learner, self.demos.validation)
                    if state["best_val"] is None or last["val_loss"] < state["best_val"]:
                        state.update(best_val=last["val_loss"], best_step=done)
                        _save_weights(learner, self.out / BEST, tokenizer)
                self._log(last)
                bar.advance(task)
                state["step"] = done
                if done % cfg.checkpoint_every == 0 or done == self.steps:
                    checkpoint.save(learner, self.out / "checkpoints", extra=dict(state), tokenizer=tokenizer,
                                    keep=cfg.keep_checkpoints)
        self._finish(learner, tokenizer, state)
        return last

    def _finish(self, learner: Learner, tokenizer: Any, state: dict[str, Any]) -> None:
        cfg = self.config
        final = self.out / "final"
        shutil.rmtree(final, ignore_errors=True)
        if cfg.select == "best" and state["best_step"] is not None and (self.out / BEST).exists():
            shutil.copytree(self.out / BEST, final)
            chosen = f"step {state['best_step']} (lowest validation loss, {state['best_val']:.4f})"
        else:
            _save_weights(learner, final, tokenizer)
            chosen = f"step {learner.step} (the last)"
        what = "adapter" if cfg.lora is not None else "model"
        self.console.print(f"final {what}: {final}, from {chosen}")
        if cfg.lora is not None and cfg.merge:
            merged = lora.merge_adapter(final, self.out / "merged", base=learner.initial)
            self.console.print(f"merged model (base + adapter, for vLLM): {merged}")

    def _describe(self) -> None:
        d = self.demos
        table = Table(title="demonstrations")
        for column in ("environment", "kept"):
            table.add_column(column, justify="left" if column == "environment" else "right")
        for env, n in sorted(d.kept_by_env.items()):
            table.add_row(env, str(n))
        table.add_row("train / validation", f"{len(d.train)} / {len(d.validation)}")
        table.add_row("train tokens (loss tokens)",
                      f"{d.train_tokens} ({sum(s.policy_tokens for s in d.train)})")
        for why, n in d.left_out.most_common():
            table.add_row(f"left out: {why}", str(n))
        self.console.print(table)
        mode = f"LoRA rank {self.config.lora.rank}" if self.config.lora else "full fine-tuning"
        self.console.print(f"{self.steps} steps of {self.config.batch_size} demonstrations ({self.per_epoch} per "
                           f"epoch), {mode}, lr {self.config.learner.lr:g}")

    def _log(self, metrics: dict[str, Any]) -> None:
        self.tracker.log(metrics, step=metrics["step"])
        if "loss" not in metrics:
            self.console.print(f"step {metrics['step']:>5}  val loss {metrics['val_loss']:.4f}")
            return
        val = f"  val loss {metrics['val_loss']:.4f}" if "val_loss" in metrics else ""
        self.console.print(f"step {metrics['step']:>5}/{self.steps}  loss {metrics['loss']:.4f}{val}  grad norm "
                           f"{metrics['grad_norm']:.3f}  {metrics['tokens_per_s']:.0f} tok/s")


def _save_weights(learner: Learner, folder: Path, tokenizer: Any) -> None:
    """The trained weights (the adapter alone with LoRA) and the tokenizer, written whole before they replace
    `folder`."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    learner.model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def main(config: SFTConfig, *, fresh: bool = False) -> int:
    SFTRun(config, fresh=fresh).run()
    return 0
