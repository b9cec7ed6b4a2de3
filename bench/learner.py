"""Tokens/s of one learner update on the same model and batch: gymbox's `Learner` against TRL's `GRPOTrainer`
(`--mode grpo`), or `gymbox sft`'s step against TRL's `SFTTrainer` (`--mode sft`, in _learner_sft.py)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import random
import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from _learner_common import PeakMemory, Rollout, UpdateResult, load_model
from _learner_sft import print_sft_table, run_sft
from _learner_trl import TRL_LOSS_TYPES, TrlSide

# TRL warns at import about the installed vLLM version; the benchmark never uses vLLM.
warnings.filterwarnings("ignore", message=r".*TRL currently supports vLLM.*")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GOAL_RATIO = 1.0


def synthetic_batch(groups: int, group_size: int, prompt_tokens: int, completion_range: tuple[int, int],
                    vocab_size: int, seed: int) -> list[Rollout]:
    """`groups` x `group_size` rollouts from one seed: random ids (content does not change the cost), a shared prompt
    per group, completion lengths uniform in `completion_range`, rewards uniform in [0, 1], GRPO advantages."""
    from gymbox.rewards.advantages import grpo

    rng = random.Random(seed)
    low_id = 100  # above SmolLM2's special tokens
    prompts = [[rng.randrange(low_id, vocab_size) for _ in range(prompt_tokens)] for _ in range(groups)]
    completions = [[rng.randrange(low_id, vocab_size) for _ in range(rng.randint(*completion_range))]
                   for _ in range(groups * group_size)]
    rewards = [rng.random() for _ in range(groups * group_size)]
    group_ids = [i // group_size for i in range(groups * group_size)]
    advantages = grpo(torch.tensor(rewards, dtype=torch.float64), torch.tensor(group_ids)).values.tolist()
    return [Rollout(group=g, prompt_ids=prompts[g], completion_ids=c, reward=r, advantage=float(a))
            for g, c, r, a in zip(group_ids, completions, rewards, advantages, strict=True)]


def gymbox_samples(batch: Sequence[Rollout]) -> list[Any]:
    """The batch as gymbox `Sample`s: prompt then completion, the mask and the advantage on the completion only."""
    from gymbox.agent.learner.batch import Sample

    samples = []
    for i, r in enumerate(batch):
        p, c = len(r.prompt_ids), len(r.completion_ids)
        samples.append(Sample(token_ids=r.prompt_ids + r.completion_ids, mask=[0] * p + [1] * c,
                              advantages=[0.0] * p + [r.advantage] * c, logprobs=[0.0] * (p + c), source=f"s{i}"))
        # rollout log-probs stay 0: with `old_logprobs: recompute` (set below) the learner never reads them
    return samples


# ---- gymbox's side (TRL's is in _learner_trl.py) ----

class GymboxSide:
    """gymbox's `Learner`, one `update(samples)` per timed update; `last_order` is the order of the sequences in its
    micro-batches during the last update, for TRL to get the same micro-batches."""

    def __init__(self, path: str, device: torch.device, args: argparse.Namespace, pad_id: int,
                 batch: Sequence[Rollout]) -> None:
        from gymbox.agent.learner.config import LearnerConfig
        from gymbox.agent.learner.learner import Learner

        extra = {} if args.share_prefix is None else {"share_prefix": args.share_prefix}
        self.config = LearnerConfig(lr=args.lr, max_grad_norm=1.0, micro_batch_size=args.micro_batch_size,
                                    clip_low=args.epsilon, clip_high=args.epsilon, kl_coef=0.0,
                                    aggregation=args.aggregation, precision=args.precision, seed=args.seed,
                                    old_logprobs="recompute", **extra)  # TRL's step: no importance correction
        self.learner = Learner(load_model(path, device), self.config, pad_id=pad_id)
        self.samples = gymbox_samples(batch)
        self.device = device
        self.last_order = list(range(len(batch)))
        self._seen: list[int] = []
        self._record_order()

    def _record_order(self) -> None:
        """Note which samples each optimizer step gets, in order. The learner picks its micro-batches (shuffled, then
        grouped by prompt with `share_prefix`); reading them off its `_step` keeps TRL's micro-batches identical
        whatever that rule is. Without `_step`, TRL gets the batch in its own order."""
        step = getattr(self.learner, "_step", None)
        if step is None:
            return
        index = {id(s): i for i, s in enumerate(self.samples)}

        def recording_step(samples: list[Any], old: Any) -> Any:
            self._seen.extend(index[id(s)] for s in samples)
            return step(samples, old)

        self.learner._step = recording_step  # type: ignore[method-assign]

    def update(self) -> UpdateResult:
        """`Learner.update` over the whole batch."""
        self._seen.clear()
        with PeakMemory(self.device) as memory:
            started, cpu = time.perf_counter(), time.process_time()
            stats = self.learner.update(self.samples)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if sorted(self._seen) == list(range(len(self.samples))):  # one step over the batch, as configured here
            self.last_order = list(self._seen)
        return UpdateResult(seconds=seconds, loss=stats.loss, grad_norm=stats.grad_norm, peak_mb=memory.peak_mb,
                            cpu_seconds=cpu)

    def describe(self) -> dict[str, Any]:
        optimizer = self.learner.optimizer
        return {"precision": str(self.learner.autocast or "float32"),
                "optimizer": f"{type(optimizer).__name__}(fused={optimizer.defaults.get('fused')}, "
                             f"foreach={optimizer.defaults.get('foreach')})",
                "share_prefix": getattr(self.config, "share_prefix", None)}


# ---- the run ----

def pick_device(name: str | None) -> torch.device:
    """`--device`, else CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` as gymbox resolves it: bf16 where the device has native bf16, else fp32."""
    from gymbox.agent.learner.config import bf16_supported

    if requested != "auto":
        return requested
    return "bf16" if bf16_supported(device) else "fp32"


def quiet_libraries() -> None:
    """Errors only from transformers, accelerate, TRL and datasets: their notices would bury the figures."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for name in ("accelerate", "trl", "datasets", "torch._dynamo"):
        logging.getLogger(name).setLevel(logging.ERROR)


def busy(result: UpdateResult, device: torch.device) -> str:
    """On the CPU, the cores this process kept busy: below the thread count when other processes took cores."""
    return f" on {result.cores:.2f} cores" if device.type == "cpu" else ""


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from gymbox.agent.models import default_model_path

    device = pick_device(args.device)
    args.precision = resolve_precision(args.precision, device)
    if args.mode == "sft":
        if args.demos % args.micro_batch_size:
            raise SystemExit(f"--micro-batch-size {args.micro_batch_size} must divide --demos {args.demos}: TRL "
                             "takes per_device_train_batch_size x gradient_accumulation_steps sequences per step")
        path = str(args.model or default_model_path())
        quiet_libraries()
        tokenizer = AutoTokenizer.from_pretrained(path)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return run_sft(args, path, device, pad_id, len(tokenizer))
    sequences = args.groups * args.group_size
    if sequences % args.micro_batch_size:
        raise SystemExit(f"--micro-batch-size {args.micro_batch_size} must divide the batch of {sequences} sequences:"
                         " TRL takes per_device_train_batch_size x gradient_accumulation_steps sequences per step")
    path = str(args.model or default_model_path())
    load_before = os.getloadavg()
    quiet_libraries()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = synthetic_batch(args.groups, args.group_size, args.prompt_tokens,
                            (args.min_completion, args.max_completion), len(tokenizer), args.seed)
    tokens = sum(r.tokens for r in batch)
    print(f"model {path} on {device} ({args.precision}); batch {args.groups} groups x {args.group_size} = {sequences}"
          f" sequences, {tokens} tokens, micro-batch {args.micro_batch_size}", flush=True)

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # Trainer places the model on the current device
    gymbox = GymboxSide(path, device, args, pad_id, batch)
    trl = TrlSide(path, device, args, pad_id, batch)

    def pair() -> tuple[UpdateResult, UpdateResult]:
        """gymbox's update, then TRL's over the micro-batches gymbox just used."""
        g = gymbox.update()
        return g, trl.update(gymbox.last_order)

    warm = dict(zip(("gymbox", "trl"), pair(), strict=True))
    for name, result in warm.items():
        print(f"warm-up {name}: {result.seconds:.2f} s, loss {result.loss:.6f}, grad norm {result.grad_norm:.6f}",
              flush=True)
    timed: dict[str, list[UpdateResult]] = {"gymbox": [], "trl": []}
    for repeat in range(args.repeats):
        g, t = pair()
        timed["gymbox"].append(g)
        timed["trl"].append(t)
        print(f"round {repeat + 1}: gymbox {tokens / g.seconds:.1f} tok/s ({g.seconds:.2f} s{busy(g, device)}), "
              f"trl {tokens / t.seconds:.1f} tok/s ({t.seconds:.2f} s{busy(t, device)})", flush=True)

    def rate(name: str) -> float:
        return statistics.median(tokens / r.seconds for r in timed[name])

    # Paired ratios cancel drift of the machine's speed between rounds better than a ratio of medians.
    ratio = statistics.median(t.seconds / g.seconds for g, t in zip(timed["gymbox"], timed["trl"], strict=True))
    prompt_tokens = sum(len(r.prompt_ids) for r in batch)
    return {
        "bench": "learner", "model": os.path.basename(path.rstrip("/")), "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cpus",
        "precision": args.precision, "aggregation": args.aggregation, "trl_loss_type": TRL_LOSS_TYPES[args.aggregation],
        "batch": {"groups": args.groups, "group_size": args.group_size, "sequences": sequences,
                  "micro_batch_size": args.micro_batch_size, "prompt_tokens": prompt_tokens,
                  "completion_tokens": tokens - prompt_tokens, "tokens": tokens, "seed": args.seed},
        "repeats": args.repeats,
        "gymbox_tokens_per_s": round(rate("gymbox"), 2), "trl_tokens_per_s": round(rate("trl"), 2),
        "ratio": round(ratio, 3), "goal": GOAL_RATIO, "goal_met": ratio >= GOAL_RATIO,
        "gymbox_loss": warm["gymbox"].loss, "trl_loss": warm["trl"].loss,
        "gymbox_grad_norm": warm["gymbox"].grad_norm, "trl_grad_norm": warm["trl"].grad_norm,
        "gymbox_peak_mem_mb": round(statistics.median(r.peak_mb for r in timed["gymbox"]), 1),
        "trl_peak_mem_mb": round(statistics.median(r.peak_mb for r in timed["trl"]), 1),
        "memory_measure": "cuda peak allocated" if device.type == "cuda" else "resident size",
        "gymbox_seconds": [round(r.seconds, 3) for r in timed["gymbox"]],
        "trl_seconds": [round(r.seconds, 3) for r in timed["trl"]],
        "gymbox_cpu_cores": [round(r.cores, 2) for r in timed["gymbox"]],
        "trl_cpu_cores": [round(r.cores, 2) for r in timed["trl"]],
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"gymbox": gymbox.describe(), "trl": trl.describe(), "lr": args.lr, "epsilon": args.epsilon,
                     "beta": 0.0, "max_grad_norm": 1.0},
        "trl_version": importlib.metadata.version("trl"), "torch_version": torch.__version__,
        "transformers_version": importlib.metadata.version("transformers"),
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    b = result["batch"]
    table = Table(title=f"one GRPO update: {result['model']} on {result['device']} ({result['precision']}), "
                        f"{b['groups']}x{b['group_size']} sequences, {b['tokens']} tokens, micro-batch "
                        f"{b['micro_batch_size']}")
    for column in ("", "gymbox", "TRL GRPOTrainer", "gymbox / TRL"):
        table.add_column(column, justify="left" if not column else "right")
    g, t = result["gymbox_tokens_per_s"], result["trl_tokens_per_s"]
    table.add_row("tokens/s (median)", f"{g:.1f}", f"{t:.1f}", f"{result['ratio']:.3f}x (goal >= 1.0)")
    table.add_row("seconds per update", " ".join(f"{s:.2f}" for s in result["gymbox_seconds"]),
                  " ".join(f"{s:.2f}" for s in result["trl_seconds"]), "")
    table.add_row(f"peak memory growth, MB ({result['memory_measure']})", f"{result['gymbox_peak_mem_mb']:.0f}",
                  f"{result['trl_peak_mem_mb']:.0f}", "")
    table.add_row("first update loss", f"{result['gymbox_loss']:.6f}", f"{result['trl_loss']:.6f}",
                  f"diff {abs(result['gymbox_loss'] - result['trl_loss']):.2e}")
    table.add_row("first update grad norm (pre-clip)", f"{result['gymbox_grad_norm']:.5f}",
                  f"{result['trl_grad_norm']:.5f}",
                  f"{result['gymbox_grad_norm'] / result['trl_grad_norm']:.4f}x" if result["trl_grad_norm"] else "")
    s = result["settings"]
    table.add_row("optimizer", s["gymbox"]["optimizer"], s["trl"]["optimizer"], "")
    table.add_row("loss aggregation", result["aggregation"], result["trl_loss_type"], "")
    table.add_row("group prompt run once per micro-batch", str(s["gymbox"]["share_prefix"]), "False", "")
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("grpo", "sft"), default="grpo")
    parser.add_argument("--model", help="a local model folder (default: gymbox's default model)")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 where the device has native bf16 (as gymbox decides), else fp32")
    parser.add_argument("--aggregation", choices=tuple(TRL_LOSS_TYPES), default="token_mean")
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--min-completion", type=int, default=50)
    parser.add_argument("--max-completion", type=int, default=120)
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=None,
                        help="gymbox's learner runs a micro-batch's common prompt once (default: its default)")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--epsilon", type=float, default=0.2, help="clip range, both sides")
    parser.add_argument("--seed", type=int, default=0)
    sft = parser.add_argument_group("sft mode (--prompt-tokens is the shared system prompt, --min/--max-completion "
                                    "a reply's length)")
    sft.add_argument("--demos", type=int, default=8, help="demonstrations in the step")
    sft.add_argument("--turns", type=int, default=3, help="expert replies per demonstration")
    sft.add_argument("--min-observation", type=int, default=20)
    sft.add_argument("--max-observation", type=int, default=80)
    sft.add_argument("--sft-lr", type=float, default=1e-5)
    result = run(parser.parse_args())
    (print_sft_table if result.get("mode") == "sft" else print_table)(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
