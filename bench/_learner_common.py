"""What both sides of bench/learner.py share: the batch's rows, an update's measurements, peak memory, the model."""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass

import torch
from _memory import PeakRss, rss_mb


@dataclass(frozen=True)
class Rollout:
    """One completion of a group's shared prompt, with its reward and group-normalized advantage."""

    group: int
    prompt_ids: list[int]
    completion_ids: list[int]
    reward: float
    advantage: float

    @property
    def tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass(frozen=True)
class UpdateResult:
    """One update of either side: wall time, the batch loss, the pre-clip gradient norm, peak memory growth, and the
    CPU time this process got meanwhile (all threads), which shows when other processes took the cores."""

    seconds: float
    loss: float
    grad_norm: float
    peak_mb: float
    cpu_seconds: float

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0


def trim_heap() -> None:
    """Return freed heap pages to the OS, so that the resident size before an update is the memory in use."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory growth (MB) during the block: CUDA peak allocated bytes, else resident size sampled in a thread."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb, self._before = device, 0.0, 0.0
        self._rss = PeakRss()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            trim_heap()
            self._before = rss_mb()
            self._rss = PeakRss().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20 - self._before
        else:
            self._rss.__exit__()
            self.peak_mb = self._rss.peak - self._before


def load_model(path: str, device: torch.device) -> torch.nn.Module:
    """The model as `Learner.from_pretrained` loads it (float32 master weights on `device`), for both sides.

    gymbox's prepared folder keeps a `quantization_config` naming the GGUF it was converted from, while its
    safetensors hold plain weights; `Trainer` refuses a model that reports itself quantized, so the record is dropped
    (the weights and modules are identical with or without it)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32).to(device)
