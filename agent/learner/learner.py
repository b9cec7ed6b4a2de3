"""The GRPO learner: epochs and minibatches over a batch of samples, gradient accumulation, clipping, AdamW."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gymbox.agent.learner import forward
from gymbox.agent.learner.batch import Collated, Sample, collate
from gymbox.agent.learner.config import LearnerConfig, autocast_dtype
from gymbox.agent.learner.lora import LoraSettings, apply_lora
from gymbox.agent.learner.loss import Normalizer, grpo_terms, k3_kl, truncated_is_weights
from gymbox.agent.models import load_causal_lm


@dataclass(frozen=True)
class UpdateStats:
    """What one batch's update did; `kl` is k3 to the reference when there is one, else to the old policy.

    With the rollout's log-probs (`old_logprobs` resolved to `rollout`), the sampler/learner mismatch over the
    batch's policy tokens: `mismatch_kl` is k3's estimate of KL(pi_rollout || pi_old), `is_ratio_mean` and
    `is_ratio_max` are of pi_old / pi_rollout, `is_truncated_fraction` is the share of tokens whose weight the cap
    cut. All four are None when the rollout's log-probs were not read.
    """

    loss: float
    clip_fraction: float
    kl: float
    grad_norm: float
    sequences: int
    tokens: int  # every token through the model (prompt, observations, policy)
    policy_tokens: int
    optimizer_steps: int
    seconds: float
    mismatch_kl: float | None = None
    is_ratio_mean: float | None = None
    is_ratio_max: float | None = None
    is_truncated_fraction: float | None = None
    entropy: float | None = None  # mean entropy (nats) of the policy's next-token distribution at policy tokens

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | None]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


class Learner:
    """Owns the trained model, its optimizer and (with `kl_coef` > 0) a frozen reference copy."""

    def __init__(self, model: nn.Module, config: LearnerConfig | None = None, *, pad_id: int = 0) -> None:
        self.config = config or LearnerConfig()
        self.model = model
        self.device = next(model.parameters()).device
        self.pad_id = pad_id
        self.autocast = autocast_dtype(self.config, self.device)
        self.step = 0  # optimizer steps taken
        self._rollout = False  # this batch reads the rollout's log-probs (set by `update` for its steps)
        self.initial: str | None = None  # where the run's initial model (the KL reference) was loaded from
        self.generator = torch.Generator().manual_seed(self.config.seed)  # minibatch shuffling; checkpointed
        if self.config.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable()
        self.reference = self._frozen_copy() if self.config.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.config.lr,
                                           betas=self.config.betas, weight_decay=self.config.weight_decay)

    @classmethod
    def from_pretrained(cls, path: str, config: LearnerConfig | None = None, *,
                        device: str | torch.device | None = None, lora: LoraSettings | None = None,
                        seed: int = 0) -> Learner:
        """Load a Hugging Face causal LM in float32 (the master weights) on `device` (default: CUDA if present);
        with `lora`, fresh adapters (initialized from `seed`) on its frozen weights are what trains."""
        from transformers import AutoTokenizer

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = load_causal_lm(path, torch.float32)
        initial = str(Path(path).resolve()) if Path(path).exists() else path  # a hub name stays as is
        if lora is not None:
            torch.manual_seed(seed)  # the adapters' random initialization: the same run twice is the same run
            model = apply_lora(model, lora, base_path=initial)
        tokenizer = AutoTokenizer.from_pretrained(path)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        learner = cls(model.to(device), config, pad_id=int(pad or 0))
        learner.initial = initial
        return learner

    def _frozen_copy(self) -> nn.Module:
        reference = copy.deepcopy(self.model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        return reference

    # ---- the update ----

    def update(self, samples: Sequence[Sample]) -> UpdateStats:
        """One batch: `epochs` passes, each split into `minibatches` optimizer steps."""
        check_batch(samples)
        cfg = self.config
        self._rollout = reads_rollout_logprobs(cfg, samples)
        started = time.perf_counter()
        self.model.train()
        old = self._old_logprobs(samples)
        totals = _Totals(self._rollout)
        for _ in range(cfg.epochs):
            order = torch.randperm(len(samples), generator=self.generator).tolist()
            for part in _split(order, cfg.minibatches):
                if cfg.share_prefix:  # a group's rollouts side by side, so micro-batches share their prompt
                    part = sorted(part, key=lambda i: samples[i].token_ids)
                totals.add_step(self._step([samples[i] for i in part], [old[i] for i in part] if old else None))
        self.model.eval()
        return totals.stats(len(samples), sum(len(s.token_ids) for s in samples) * cfg.epochs,
                            sum(s.policy_tokens for s in samples), time.perf_counter() - started)

    def _step(self, samples: list[Sample], old: list[Tensor] | None) -> dict[str, float]:
        """One optimizer step over `samples`, accumulated over micro-batches."""
        cfg = self.config
        norm = Normalizer.of(cfg.aggregation, [torch.tensor(s.mask[1:]) for s in samples])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = clipped = kl_sum = entropy_sum = 0.0
        mismatch = _Mismatch()
        for start in range(0, len(samples), cfg.micro_batch_size):
            part = samples[start:start + cfg.micro_batch_size]
            batch = collate(part, self.pad_id, self.device)
            entropy = torch.zeros(batch.targets.shape, dtype=torch.float32, device=self.device)
            logp = self._logprobs(self.model, batch, entropy=entropy)
            old_logp = _pad_rows(old[start:start + len(part)], logp.shape) if old is not None else logp.detach()
            mask = batch.mask.bool()
            weights = None
            if self._rollout:
                weights = truncated_is_weights(old_logp, batch.logprobs, cfg.tis_cap)
                mismatch.add(old_logp[mask], batch.logprobs[mask], cfg.tis_cap)
            ref = None
            if self.reference is not None:
                with torch.no_grad():
                    ref = self._logprobs(self.reference, batch)
            terms = grpo_terms(logp, old_logp, batch.advantages, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                               ref_logp=ref, kl_coef=cfg.kl_coef, is_weights=weights)
            loss = norm.reduce(terms.loss, batch.mask)
            loss.backward()
            loss_sum += float(loss.detach())
            clipped += float(terms.clipped[mask].sum())
            drift = terms.kl if terms.kl is not None else k3_kl(logp.detach(), old_logp)
            kl_sum += float(drift.detach()[mask].sum())
            entropy_sum += float(entropy[mask].sum())
        grad_norm = self.apply_gradients()
        return {"loss": loss_sum, "clipped": clipped, "kl": kl_sum, "entropy": entropy_sum, "tokens": norm.tokens,
                "grad_norm": grad_norm, **mismatch.sums()}

    def apply_gradients(self) -> float:
        """Clip the accumulated gradients, take one optimizer step; the pre-clip gradient norm. A non-finite norm
        skips the step (the weights stay as they are) and raises. Shared by every loss that drives this learner."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.config.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"the gradient norm is {grad_norm} at step {self.step}: the update was skipped "
                                     "and the weights are unchanged; lower the learning rate or use precision: fp32")
        self.optimizer.step()
        self.step += 1
        return grad_norm

    def _old_logprobs(self, samples: Sequence[Sample]) -> list[Tensor] | None:
        """This model's log-probs before the batch's first step, when they cannot be read off the first forward
        pass: several optimizer steps per batch (computed here, before any step). None otherwise."""
        if self.config.updates_per_batch == 1:
            return None
        rows: list[Tensor] = []
        with torch.no_grad():
            for start in range(0, len(samples), self.config.micro_batch_size):
                part = samples[start:start + self.config.micro_batch_size]
                logp = self._logprobs(self.model, collate(part, self.pad_id, self.device))
                rows += [logp[i, :len(s.token_ids) - 1] for i, s in enumerate(part)]
        return rows

    def _logprobs(self, model: nn.Module, batch: Collated, entropy: Tensor | None = None) -> Tensor:
        return forward.logprobs(model, batch, self._autocast(), share=self.config.share_prefix, entropy=entropy)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    # ---- state ----

    def state(self) -> dict[str, Any]:
        """Everything but the weights that a resumed run needs to continue identically."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "config": self.config.model_dump()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


def check_batch(samples: Sequence[Sample]) -> None:
    """Refuse what would waste compute or poison the weights: no samples, no policy tokens, non-finite values."""
    if not samples:
        raise ValueError("empty batch: no samples to learn from (were all rollouts masked?)")
    if not any(s.policy_tokens for s in samples):
        raise ValueError(f"the batch's {len(samples)} samples have no policy tokens: nothing to learn from")
    for s in samples:
        if not all(math.isfinite(a) for a in s.advantages) or \
                not all(math.isfinite(x) for x in s.logprobs if x is not None):
            raise ValueError(f"sample {s.source or '?'} has a non-finite advantage or log-prob: mask the rollout "
                             "or fix its reward")


def reads_rollout_logprobs(config: LearnerConfig, samples: Sequence[Sample]) -> bool:
    """Whether this batch's behaviour log-probs are the rollout's (`old_logprobs` resolved); `rollout` on a sample
    that lacks them is refused."""
    if config.old_logprobs == "recompute":
        return False
    lacking = [s.source or "?" for s in samples if not s.has_rollout_logprobs]
    if lacking and config.old_logprobs == "rollout":
        raise ValueError(f"old_logprobs: rollout needs the sampler's log-prob of every policy token, but "
                         f"{len(lacking)} sample(s) lack some ({', '.join(lacking[:3])}): sample with a policy that "
                         "records them (vLLM does), or set old_logprobs: recompute (or auto)")
    return not lacking


class _Mismatch:
    """Running sums of the sampler/learner mismatch over one step's policy tokens."""

    def __init__(self) -> None:
        self.kl = self.ratio = self.truncated = 0.0
        self.ratio_max = 0.0

    def add(self, old_logp: Tensor, rollout_logp: Tensor, cap: float | None) -> None:
        """Flat tensors of the policy tokens' log-probs under the learner (old) and the sampler."""
        ratio = torch.exp(old_logp - rollout_logp)
        self.kl += float(k3_kl(rollout_logp, old_logp).sum())  # the tokens were drawn from the sampler
        self.ratio += float(ratio.sum())
        self.ratio_max = max(self.ratio_max, float(ratio.max())) if ratio.numel() else self.ratio_max
        self.truncated += float((ratio > cap).sum()) if cap is not None else 0.0

    def sums(self) -> dict[str, float]:
        return {"mismatch_kl": self.kl, "is_ratio": self.ratio, "is_ratio_max": self.ratio_max,
                "is_truncated": self.truncated}


class _Totals:
    def __init__(self, rollout: bool = False) -> None:
        self.steps: list[dict[str, float]] = []
        self.rollout = rollout

    def add_step(self, step: dict[str, float]) -> None:
        self.steps.append(step)

    def stats(self, sequences: int, tokens: int, policy_tokens: int, seconds: float) -> UpdateStats:
        seen = sum(s["tokens"] for s in self.steps) or 1
        mismatch = {}
        if self.rollout:  # every epoch sees each token once: the sums over steps divide by the tokens seen
            mismatch = {"mismatch_kl": sum(s["mismatch_kl"] for s in self.steps) / seen,
                        "is_ratio_mean": sum(s["is_ratio"] for s in self.steps) / seen,
                        "is_ratio_max": max(s["is_ratio_max"] for s in self.steps),
                        "is_truncated_fraction": sum(s["is_truncated"] for s in self.steps) / seen}
        return UpdateStats(loss=sum(s["loss"] for s in self.steps) / len(self.steps),
                           clip_fraction=sum(s["clipped"] for s in self.steps) / seen,
                           kl=sum(s["kl"] for s in self.steps) / seen,
                           entropy=sum(s["entropy"] for s in self.steps) / seen,
                           grad_norm=max(s["grad_norm"] for s in self.steps), sequences=sequences, tokens=tokens,
                           policy_tokens=policy_tokens, optimizer_steps=len(self.steps), seconds=seconds, **mismatch)


def _split(order: list[int], parts: int) -> Iterator[list[int]]:
    """`parts` nearly equal, non-empty slices of `order` (fewer when there are fewer items)."""
    parts = min(parts, len(order))
    size, extra = divmod(len(order), parts)
    start = 0
    for i in range(parts):
        end = start + size + (i < extra)
        yield order[start:end]
        start = end


def _pad_rows(rows: list[Tensor], shape: torch.Size) -> Tensor:
    out = torch.zeros(shape, dtype=torch.float32, device=rows[0].device)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
