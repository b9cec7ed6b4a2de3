"""The SFT mode of bench/learner.py: one optimizer step of `gymbox sft`'s learner against TRL's `SFTTrainer` on the
same model, the same demonstrations and the same micro-batches."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
from _learner_common import PeakMemory, UpdateResult, load_model


@dataclass(frozen=True)
class Demo:
    """A multi-turn demonstration: token ids and the loss mask (1 on the expert's replies, 0 on the prompt and the
    environment's answers)."""

    token_ids: list[int]
    mask: list[int]


def synthetic_demos(n: int, system_tokens: int, turns: int, reply_range: tuple[int, int],
                    observation_range: tuple[int, int], vocab_size: int, seed: int) -> list[Demo]:
    """`n` demonstrations from one seed, shaped as an environment's: a system prompt shared by all (the tool
    descriptions), a task of 20-60 tokens, then `turns` replies each answered by an observation, the last reply
    unanswered. Random ids: content does not change the cost."""
    rng = random.Random(seed)
    low = 100  # above SmolLM2's special tokens

    def tokens(k: int) -> list[int]:
        return [rng.randrange(low, vocab_size) for _ in range(k)]

    system = tokens(system_tokens)
    demos = []
    for _ in range(n):
        ids = system + tokens(rng.randint(20, 60))
        mask = [0] * len(ids)
        for turn in range(turns):
            reply = tokens(rng.randint(*reply_range))
            ids, mask = ids + reply, mask + [1] * len(reply)
            if turn < turns - 1:
                obs = tokens(rng.randint(*observation_range))
                ids, mask = ids + obs, mask + [0] * len(obs)
        demos.append(Demo(ids, mask))
    return demos


class GymboxSFT:
    """`gymbox sft`'s step: `sft_step` on the learner, as `SFTRun` calls it."""

    def __init__(self, path: str, device: torch.device, args: argparse.Namespace, pad_id: int,
                 demos: list[Demo]) -> None:
        from gymbox.agent.learner.batch import Sample
        from gymbox.agent.learner.config import LearnerConfig
        from gymbox.agent.learner.learner import Learner

        extra = {} if args.share_prefix is None else {"share_prefix": args.share_prefix}
        self.config = LearnerConfig(lr=args.sft_lr, max_grad_norm=1.0, micro_batch_size=args.micro_batch_size,
                                    precision=args.precision, seed=args.seed, **extra)
        self.learner = Learner(load_model(path, device), self.config, pad_id=pad_id)
        self.samples = [Sample(token_ids=d.token_ids, mask=d.mask, advantages=[0.0] * len(d.mask),
                               logprobs=[0.0] * len(d.mask), source=f"d{i}") for i, d in enumerate(demos)]
        self.device = device

    def micro_batches(self) -> list[list[int]]:
        """The demonstrations of each micro-batch, as the learner groups them."""
        from gymbox.agent.learner.sft import micro_batches

        index = {id(s): i for i, s in enumerate(self.samples)}
        return [[index[id(s)] for s in part] for part in micro_batches(self.learner, self.samples)]

    def update(self) -> UpdateResult:
        from gymbox.agent.learner.sft import sft_step

        with PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            stats = sft_step(self.learner, self.samples)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return UpdateResult(seconds=seconds, loss=stats.loss, grad_norm=stats.grad_norm, peak_mb=memory.peak_mb,
                            cpu_seconds=cpu)

    def describe(self) -> dict[str, Any]:
        return {"precision": str(self.learner.autocast or "float32"), "share_prefix": self.config.share_prefix}


class TrlSFT:
    """TRL's `SFTTrainer` loss step as `Trainer`'s inner loop runs it: per micro-batch the collator, `compute_loss`
    with the accumulation window's loss-token count (`num_items_in_batch`, so the loss is a token mean over the whole
    batch, as gymbox's) and `accelerator.backward`, then clipping, `optimizer.step`, `zero_grad`."""

    def __init__(self, path: str, device: torch.device, args: argparse.Namespace, pad_id: int,
                 demos: list[Demo]) -> None:
        from datasets import Dataset
        from transformers import AutoTokenizer
        from trl import SFTConfig, SFTTrainer
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.output_dir = tempfile.TemporaryDirectory(prefix="bench-learner-sft-")
        rows = [{"input_ids": d.token_ids, "labels": [t if m else -100 for t, m in zip(d.token_ids, d.mask,
                                                                                          strict=True)]}
                for d in demos]
        config = SFTConfig(
            output_dir=self.output_dir.name, report_to="none", save_strategy="no", logging_strategy="no",
            use_cpu=device.type == "cpu", bf16=args.precision == "bf16", fp16=False,
            per_device_train_batch_size=args.micro_batch_size,
            gradient_accumulation_steps=max(1, len(demos) // args.micro_batch_size), learning_rate=args.sft_lr,
            lr_scheduler_type="constant", weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
            max_grad_norm=1.0, max_length=None, packing=False, seed=args.seed, dataloader_num_workers=0)
        self.trainer = SFTTrainer(model=load_model(path, device), args=config,
                                  train_dataset=Dataset.from_list(rows),
                                  processing_class=AutoTokenizer.from_pretrained(path))
        self.optimizer = self.trainer.create_optimizer()
        self.model = self.trainer.model
        self.rows, self.device = rows, device
        self.collator = DataCollatorForLanguageModeling(pad_token_id=pad_id)
        self.num_items = sum(sum(m for m in d.mask[1:]) for d in demos)

    def update(self, parts: list[list[int]]) -> UpdateResult:
        trainer = self.trainer
        with PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            self.model.train()
            loss_sum = torch.zeros((), device=self.device)
            for k, part in enumerate(parts):
                inputs = {key: value.to(self.device) for key, value in
                          self.collator.torch_call([self.rows[i] for i in part]).items()}
                trainer.accelerator.gradient_state._set_sync_gradients(k == len(parts) - 1)
                with trainer.compute_loss_context_manager():
                    loss = trainer.compute_loss(self.model, inputs,
                                                num_items_in_batch=torch.tensor(self.num_items, device=self.device))
                trainer.accelerator.backward(loss)
                loss_sum += loss.detach()
            grad_norm = float(trainer.accelerator.clip_grad_norm_(self.model.parameters(), trainer.args.max_grad_norm))
            self.optimizer.step()
            self.model.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return UpdateResult(seconds=seconds, loss=float(loss_sum), grad_norm=grad_norm, peak_mb=memory.peak_mb,
                            cpu_seconds=cpu)

    def describe(self) -> dict[str, Any]:
        return {"precision": f"accelerate mixed_precision={self.trainer.accelerator.mixed_precision}",
                "loss_type": self.trainer.args.loss_type}


def run_sft(args: argparse.Namespace, path: str, device: torch.device, pad_id: int, vocab: int) -> dict[str, Any]:
    """Warm-up pair, then `repeats` timed pairs: gymbox's step, then TRL's over the same micro-batches."""
    demos = synthetic_demos(args.demos, args.prompt_tokens, args.turns, (args.min_completion, args.max_completion),
                            (args.min_observation, args.max_observation), vocab, args.seed)
    tokens = sum(len(d.token_ids) for d in demos)
    loss_tokens = sum(sum(d.mask) for d in demos)
    print(f"model {path} on {device} ({args.precision}); {len(demos)} demonstrations of {args.turns} turns, {tokens} "
          f"tokens ({loss_tokens} loss tokens), micro-batch {args.micro_batch_size}", flush=True)
    gymbox = GymboxSFT(path, device, args, pad_id, demos)
    trl = TrlSFT(path, device, args, pad_id, demos)
    parts = gymbox.micro_batches()
    warm = {"gymbox": gymbox.update(), "trl": trl.update(parts)}
    for name, result in warm.items():
        print(f"warm-up {name}: {result.seconds:.2f} s, loss {result.loss:.6f}, grad norm {result.grad_norm:.6f}",
              flush=True)
    timed: dict[str, list[UpdateResult]] = {"gymbox": [], "trl": []}
    for repeat in range(args.repeats):
        g, t = gymbox.update(), trl.update(parts)
        timed["gymbox"].append(g)
        timed["trl"].append(t)
        print(f"round {repeat + 1}: gymbox {tokens / g.seconds:.1f} tok/s ({g.seconds:.2f} s), trl "
              f"{tokens / t.seconds:.1f} tok/s ({t.seconds:.2f} s)", flush=True)
    ratio = statistics.median(t.seconds / g.seconds for g, t in zip(timed["gymbox"], timed["trl"], strict=True))
    return {
        "bench": "learner", "mode": "sft", "model": os.path.basename(path.rstrip("/")), "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cpus",
        "precision": args.precision,
        "batch": {"demonstrations": len(demos), "turns": args.turns, "micro_batch_size": args.micro_batch_size,
                  "tokens": tokens, "loss_tokens": loss_tokens, "seed": args.seed},
        "repeats": args.repeats,
        "gymbox_tokens_per_s": round(statistics.median(tokens / r.seconds for r in timed["gymbox"]), 2),
        "trl_tokens_per_s": round(statistics.median(tokens / r.seconds for r in timed["trl"]), 2),
        "ratio": round(ratio, 3), "goal": 1.0, "goal_met": ratio >= 1.0,
        "gymbox_loss": warm["gymbox"].loss, "trl_loss": warm["trl"].loss,
        "gymbox_grad_norm": warm["gymbox"].grad_norm, "trl_grad_norm": warm["trl"].grad_norm,
        "gymbox_peak_mem_mb": round(statistics.median(r.peak_mb for r in timed["gymbox"]), 1),
        "trl_peak_mem_mb": round(statistics.median(r.peak_mb for r in timed["trl"]), 1),
        "memory_measure": "cuda peak allocated" if device.type == "cuda" else "resident size",
        "gymbox_seconds": [round(r.seconds, 3) for r in timed["gymbox"]],
        "trl_seconds": [round(r.seconds, 3) for r in timed["trl"]],
        "settings": {"gymbox": gymbox.describe(), "trl": trl.describe(), "lr": args.sft_lr, "max_grad_norm": 1.0},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "trl_version": importlib.metadata.version("trl"), "torch_version": torch.__version__,
    }


def print_sft_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    b = result["batch"]
    table = Table(title=f"one SFT step: {result['model']} on {result['device']} ({result['precision']}), "
                        f"{b['demonstrations']} demonstrations, {b['tokens']} tokens ({b['loss_tokens']} in the "
                        f"loss), micro-batch {b['micro_batch_size']}")
    for column in ("", "gymbox sft", "TRL SFTTrainer", "gymbox / TRL"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("tokens/s (median)", f"{result['gymbox_tokens_per_s']:.1f}", f"{result['trl_tokens_per_s']:.1f}",
                  f"{result['ratio']:.3f}x (goal >= 1.0)")
    table.add_row("seconds per step", " ".join(f"{s:.2f}" for s in result["gymbox_seconds"]),
                  " ".join(f"{s:.2f}" for s in result["trl_seconds"]), "")
    table.add_row(f"peak memory growth, MB ({result['memory_measure']})", f"{result['gymbox_peak_mem_mb']:.0f}",
                  f"{result['trl_peak_mem_mb']:.0f}", "")
    table.add_row("first-batch loss", f"{result['gymbox_loss']:.6f}", f"{result['trl_loss']:.6f}",
                  f"diff {abs(result['gymbox_loss'] - result['trl_loss']):.2e}")
    table.add_row("first-batch grad norm (pre-clip)", f"{result['gymbox_grad_norm']:.5f}",
                  f"{result['trl_grad_norm']:.5f}", "")
    Console(width=160).print(table)
