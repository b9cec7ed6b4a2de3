"""The TRL side of bench/learner.py: `GRPOTrainer`'s loss step on the same batch and micro-batches as gymbox's."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from _learner_common import PeakMemory, Rollout, UpdateResult, load_model

# gymbox aggregation -> the TRL loss type with the same batch-wide denominator, so the losses agree exactly: the
# batch's loss tokens (dapo; bnpo would divide per micro-batch), its sequences each averaged over its own tokens (grpo),
# sequences x max_completion_length (dr_grpo; TrlSide sets that to the batch's longest completion, gymbox's constant).
TRL_LOSS_TYPES = {"token_mean": "dapo", "seq_mean": "grpo", "dr_grpo": "dr_grpo"}


def trl_inputs(rows: Sequence[Rollout], pad_id: int, num_items: int, device: torch.device) -> dict[str, Any]:
    """One micro-batch as `GRPOTrainer._compute_loss` reads it after generation (prompts left-padded, completions
    right-padded; the prompts here all have the same length, so there is no prompt padding, which would shift TRL's
    positions). No `old_per_token_logps`: TRL leaves them out itself with one optimizer step per generation batch and
    uses the detached current log-probs, as gymbox's learner does."""
    p = max(len(r.prompt_ids) for r in rows)
    c = max(len(r.completion_ids) for r in rows)
    prompt_ids = [[pad_id] * (p - len(r.prompt_ids)) + r.prompt_ids for r in rows]
    prompt_mask = [[0] * (p - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows]
    completion_ids = [r.completion_ids + [pad_id] * (c - len(r.completion_ids)) for r in rows]
    completion_mask = [[1] * len(r.completion_ids) + [0] * (c - len(r.completion_ids)) for r in rows]
    return {"prompt_ids": torch.tensor(prompt_ids, device=device),
            "prompt_mask": torch.tensor(prompt_mask, device=device),
            "completion_ids": torch.tensor(completion_ids, device=device),
            "completion_mask": torch.tensor(completion_mask, device=device),
            "advantages": torch.tensor([r.advantage for r in rows], dtype=torch.float32, device=device),
            "num_items_in_batch": torch.tensor(num_items, device=device)}


class TrlSide:
    """TRL's `GRPOTrainer` loss step, run as `Trainer`'s inner loop runs it: per micro-batch `compute_loss` in the
    trainer's context and `accelerator.backward`, then `accelerator.clip_grad_norm_`, `optimizer.step`, `zero_grad`.
    (`training_step` itself is not called: TRL's `_prepare_inputs` inside it would generate completions.)"""

    def __init__(self, path: str, device: torch.device, args: argparse.Namespace, pad_id: int,
                 batch: Sequence[Rollout]) -> None:
        from datasets import Dataset
        from transformers import AutoTokenizer
        from trl import GRPOConfig, GRPOTrainer

        sequences = len(batch)
        self.accumulation = sequences // args.micro_batch_size
        self.output_dir = tempfile.TemporaryDirectory(prefix="bench-learner-trl-")
        config = GRPOConfig(
            output_dir=self.output_dir.name, report_to="none", save_strategy="no", logging_strategy="no",
            use_cpu=device.type == "cpu", bf16=args.precision == "bf16", fp16=False,
            per_device_train_batch_size=args.micro_batch_size, gradient_accumulation_steps=self.accumulation,
            num_generations=args.group_size, num_iterations=1,
            max_completion_length=max(len(r.completion_ids) for r in batch),
            loss_type=TRL_LOSS_TYPES[args.aggregation], epsilon=args.epsilon, epsilon_high=args.epsilon, beta=0.0,
            learning_rate=args.lr, lr_scheduler_type="constant", weight_decay=0.0, adam_beta1=0.9,
            adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, gradient_checkpointing=False, use_vllm=False,
            seed=args.seed, dataloader_num_workers=0, log_completions=False)
        tokenizer = AutoTokenizer.from_pretrained(path)
        # Construction needs a reward function and a dataset; the loss step uses neither.
        dataset = Dataset.from_dict({"prompt": ["unused"] * sequences})
        self.trainer = GRPOTrainer(model=load_model(path, device), reward_funcs=zero_reward, args=config,
                                   train_dataset=dataset, processing_class=tokenizer)
        self.trainer.current_gradient_accumulation_steps = self.accumulation  # set by Trainer's loop otherwise
        self.optimizer = self.trainer.create_optimizer()
        self.model = self.trainer.model
        self.batch, self.pad_id, self.device = list(batch), pad_id, device
        self.micro = args.micro_batch_size
        self.num_items = sum(len(r.completion_ids) for r in batch)

    def update(self, order: list[int]) -> UpdateResult:
        """From the batch's lists to the optimizer step done, micro-batches taken in `order`."""
        trainer = self.trainer
        with PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            self.model.train()
            loss_sum = torch.zeros((), device=self.device)
            for start in range(0, len(order), self.micro):
                rows = [self.batch[i] for i in order[start:start + self.micro]]
                inputs = trl_inputs(rows, self.pad_id, self.num_items, self.device)
                # as Trainer's loop marks the accumulation window's last micro-batch (TRL reads it for some metrics)
                trainer.accelerator.gradient_state._set_sync_gradients(start + self.micro >= len(order))
                with trainer.compute_loss_context_manager():
                    loss = trainer.compute_loss(self.model, inputs)
                trainer.accelerator.backward(loss)
                loss_sum += loss.detach()
            grad_norm = float(trainer.accelerator.clip_grad_norm_(self.model.parameters(), trainer.args.max_grad_norm))
            self.optimizer.step()
            self.model.zero_grad(set_to_none=True)
            loss_value = float(loss_sum)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return UpdateResult(seconds=seconds, loss=loss_value, grad_norm=grad_norm, peak_mb=memory.peak_mb,
                            cpu_seconds=cpu)

    def describe(self) -> dict[str, Any]:
        accelerator = self.trainer.accelerator
        return {"precision": f"accelerate mixed_precision={accelerator.mixed_precision}",
                "optimizer": f"{type(self.optimizer).__name__}(fused={self.optimizer.defaults.get('fused')}, "
                             f"foreach={self.optimizer.defaults.get('foreach')})",
                "loss_type": self.trainer.loss_type, "gradient_accumulation_steps": self.accumulation}


def zero_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A reward function for `GRPOTrainer`'s constructor; never called by the loss step."""
    return [0.0] * len(completions)
