"""A token policy on transformers' `generate`, for machines where vLLM cannot be installed (`--policy hf:MODEL`).

The same contract as the vLLM policy: token ids in, token ids out with the log-prob each token was sampled with
(after temperature, top-k and top-p, as vLLM's processed log-probs), stop strings, finish reasons, weight reloads.
Concurrent calls with the same sampling settings are batched (left-padded) into one `generate`; with no paged KV
cache and no continuous batching it is several times slower than vLLM, so it is for where vLLM is missing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gymbox.agent.models import load_causal_lm, model_path
from gymbox.agent.policy import Completion, Policy, PolicyError, Prompt, Sampling


@dataclass
class _Request:
    ids: list[int]
    sampling: Sampling
    future: asyncio.Future[Completion] = field(repr=False)


class HFPolicy(Policy):
    """A local model (folder, prepared name, `default`, `base`) generating with transformers on `device`
    (default: CUDA if present). `max_batch` caps how many waiting requests one `generate` takes."""

    def __init__(self, model: str | None = None, *, max_model_len: int = 4096, max_batch: int = 16,
                 dtype: str = "float32", device: str | None = None, seed: int = 0, weights_version: str = "0") -> None:
        from transformers import AutoTokenizer

        self.model_path = model_path(model or "default")
        # Marked as such in every trajectory's provenance: the same weights on vLLM sample differently.
        self.name = "hf:" + (Path(self.model_path).name if Path(self.model_path).is_dir() else self.model_path)
        self.max_model_len, self.max_batch, self.seed = max_model_len, max_batch, seed
        self.weights_version = weights_version
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = load_causal_lm(self.model_path, self.dtype).to(self.device).eval()
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        self._pending: list[_Request] = []
        self._worker: asyncio.Task[None] | None = None
        self._model_lock = threading.Lock()  # a weight reload never runs during a generation
        self._calls = 0
        self._closed = False

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        ids = self.token_prompt(prompt)
        if self._closed:
            raise PolicyError(f"the transformers policy for {self.name} is closed; create a new one")
        started = time.perf_counter()
        request = _Request(ids, sampling, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        completion = await request.future
        completion.seconds = time.perf_counter() - started
        return completion

    async def _drain(self) -> None:
        """Serve waiting requests, a batch of equal sampling settings at a time, until none wait."""
        await asyncio.sleep(0)  # let the calls made in the same tick join the first batch
        while self._pending:
            key = self._pending[0].sampling.model_copy(update={"seed": None})
            batch = [r for r in self._pending if r.sampling.model_copy(update={"seed": None}) == key]
            batch = batch[: self.max_batch]
            self._pending = [r for r in self._pending if r not in batch]
            live = [r for r in batch if not r.future.cancelled()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._generate, [r.ids for r in live], live[0].sampling)
            except Exception as exc:  # the model failed the batch: each caller gets the reason
                error = PolicyError(f"transformers generate failed ({type(exc).__name__}: {exc})")
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(error)
                continue
            for r, completion in zip(live, results, strict=True):
                if not r.future.done():
                    r.future.set_result(completion)

    def _generate(self, rows: list[list[int]], sampling: Sampling) -> list[Completion]:
        """One left-padded `generate` over `rows`; each row's tokens, log-probs, text and finish reason."""
        rooms = [self.max_model_len - len(ids) for ids in rows]
        new = min(sampling.max_tokens, max(rooms))
        width = max(len(ids) for ids in rows)
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows], device=self.device)
        sample = sampling.temperature > 0
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": new, "pad_token_id": self.pad_id,
                                   "output_scores": True, "return_dict_in_generate": True}
        if sample:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p,
                           top_k=sampling.top_k if sampling.top_k > 0 else None)
        else:  # no warpers: the model's generation_config must not sneak its own in
            options.update(temperature=None, top_p=None, top_k=None)
        if sampling.ignore_eos:
            options.update(min_new_tokens=new)
        if sampling.stop:
            options.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        with self._model_lock, torch.no_grad():
            # One global generator: seeded per batch (the first request's seed, else the policy's and a count).
            self._calls += 1
            torch.manual_seed(sampling.seed if sampling.seed is not None else self.seed * 1_000_003 + self._calls)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **options)
        generated = out.sequences[:, width:]
        # scores are the processed logits each token was drawn from (after temperature, top-k, top-p).
        logprobs = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1)
        picked = logprobs.gather(-1, generated.unsqueeze(-1)).squeeze(-1)
        return [self._completion(generated[i].tolist(), picked[i].tolist(), rooms[i], sampling, len(rows[i]))
                for i in range(len(rows))]

    def _completion(self, tokens: list[int], logprobs: list[float], room: int, sampling: Sampling,
                    prompt_tokens: int) -> Completion:
        """Cut a padded row where it ended: its end-of-sequence token (kept, as vLLM keeps it), a stop string
        (the text ends before it), its own room in the context, or the token budget."""
        eos = self.tokenizer.eos_token_id
        end, reason = min(len(tokens), room), "length"
        if not sampling.ignore_eos and eos in tokens[:end]:
            end, reason = tokens.index(eos) + 1, "stop"
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        for k in range(1, end + 1) if sampling.stop else ():
            partial = self.tokenizer.decode(tokens[:k], skip_special_tokens=True)
            hits = [partial.index(s) for s in sampling.stop if s in partial]
            if hits:
                end, reason, text = k, "stop", partial[: min(hits)]
                break
        return Completion(text=text, token_ids=tokens[:end], logprobs=logprobs[:end], finish_reason=reason,
                          prompt_tokens=prompt_tokens)

    async def load_weights(self, path: str, version: str) -> None:
        """Load the weights in folder `path` into the model in place, between generations."""

        def load() -> None:
            from safetensors.torch import load_file

            weights: dict[str, torch.Tensor] = {}
            for shard in sorted(Path(path).glob("*.safetensors")):
                weights.update(load_file(shard, device=str(self.device)))
            own = self.model.state_dict().keys()
            missing = [k for k in own if k not in weights and "lm_head" not in k]  # a tied head is saved once
            unexpected = [k for k in weights if k not in own]
            if not weights or missing or unexpected:  # checked first, so a bad folder changes nothing
                raise PolicyError(f"{path} does not hold {self.name}'s weights: missing {missing[:3]}, unexpected "
                                  f"{unexpected[:3]}; the model keeps version {self.weights_version}")
            with self._model_lock:
                self.model.load_state_dict(weights, strict=False)

        await asyncio.to_thread(load)
        self.weights_version = version

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": "transformers", "model": self.model_path,
                "dtype": str(self.dtype).removeprefix("torch."),
                "dtype_reason": f"transformers generate on {self.device}, slower than vLLM", "device": str(self.device),
                "max_model_len": self.max_model_len}

    async def close(self) -> None:
        self._closed = True
        for r in self._pending:
            if not r.future.done():
                r.future.set_exception(PolicyError(f"the transformers policy for {self.name} was closed"))
        self._pending = []
