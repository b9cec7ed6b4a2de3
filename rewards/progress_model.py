"""SPA-RL's learned progress estimator: a causal LM with a scalar head on its logits, read at each turn's end token."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gymbox.environments.records import Trajectory

META = "progress.json"  # marks a folder as a saved progress model; the LM's own files sit beside it
HEAD = "progress_head.safetensors"
FORMAT = "gymbox-progress-estimator"
VERSION = 1


def turn_ends(trajectory: Trajectory) -> list[int | None]:
    """For each turn, the position in `trajectory.token_ids` of its last policy token (loss mask 1), the turn's end
    token; None for a turn with no policy tokens."""
    ends: list[int | None] = []
    offset = len(trajectory.prompt_ids)
    for turn in trajectory.turns:
        last = next((i for i in range(len(turn.loss_mask) - 1, -1, -1) if turn.loss_mask[i]), None)
        ends.append(None if last is None else offset + last)
        offset += len(turn.token_ids)
    return ends


class ProgressModel(nn.Module):
    """c = w · logits + b: a Linear(vocab -> 1) on the LM's output logits (the reference setup), one value per
    position asked for."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm
        self.vocab_size = int(lm.get_output_embeddings().out_features)
        self.head = nn.Linear(self.vocab_size, 1)
        # Zero-initialised: an untrained estimator says "no progress" (c_t = 0) rather than noise, and the first
        # gradient still reaches the head (d c / d w = logits).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_base(cls, model_dir: str | Path) -> ProgressModel:
        """A fresh estimator on a Hugging Face causal LM folder (or hub name), in float32: Adam at SPA's lr 3e-6 is
        below bf16's resolution for most weights, so lower precision would not train."""
        from gymbox.agent.models import load_causal_lm

        return cls(load_causal_lm(str(model_dir), torch.float32))

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def max_length(self) -> int:
        return int(getattr(self.lm.config, "max_position_embeddings", 0) or 1 << 30)

    def forward(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """Values [K] at `positions` [K] of one sequence `input_ids` [1, T]. Only those K rows of logits are computed:
        the vocabulary is large, and the other positions are never read."""
        logits = self.lm(input_ids=input_ids, logits_to_keep=positions, use_cache=False).logits  # [1, K, V]
        return self.head(logits.float())[0, :, 0]

    def turn_values(self, trajectory: Trajectory) -> Tensor:
        """c_t per turn [n_turns], differentiable: the head read at each turn's end token, 0 for a turn without
        policy tokens (and for every turn of a trajectory without any, which is not run through the LM)."""
        ends = turn_ends(trajectory)
        values = torch.zeros(len(ends), device=self.device)
        kept = [t for t, end in enumerate(ends) if end is not None]
        if not kept:
            return values
        ids = trajectory.token_ids
        if max(ids) >= self.vocab_size or min(ids) < 0:
            raise ValueError(f"trajectory {trajectory.id} holds token ids outside the model's vocabulary of "
                             f"{self.vocab_size}: it was tokenized for another model")
        input_ids = torch.tensor([ids], device=self.device)
        positions = torch.tensor([ends[t] for t in kept], device=self.device)
        index = torch.tensor(kept, device=self.device)
        return values.index_copy(0, index, self.forward(input_ids, positions))

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the LM (save_pretrained), the head and `progress.json` (with `meta`) to the folder `path`."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(path, safe_serialization=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, path / HEAD)
        info = {"format": FORMAT, "version": VERSION, "vocab_size": self.vocab_size, **(meta or {})}
        # Written last: a folder with progress.json is complete.
        (path / META).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> ProgressModel:
        """A saved estimator; FileNotFoundError when `path` is not a complete progress model folder."""
        from safetensors.torch import load_file

        from gymbox.agent.models import load_causal_lm

        path = Path(path)
        info = read_meta(path)
        if info.get("format") != FORMAT or info.get("version") != VERSION:
            raise ValueError(f"{path / META}: not a {FORMAT} version {VERSION} folder")
        model = cls(load_causal_lm(str(path), torch.float32))
        model.head.load_state_dict(load_file(path / HEAD))
        return model.to(device or default_device()).eval()


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `progress.json` of a saved progress model folder; FileNotFoundError saying what is expected."""
    meta = Path(path) / META
    if not meta.is_file():
        raise FileNotFoundError(f"no progress model at {path}: expected a folder written by `gymbox progress train` "
                                f"(holding {META}, {HEAD} and the LM's files)")
    return json.loads(meta.read_text(encoding="utf-8"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True, eq=False)
class LearnedProgress:
    """The learned `ProgressEstimator`: c_t per turn from a trained `ProgressModel`."""

    model: ProgressModel

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> LearnedProgress:
        return cls(ProgressModel.load(path, device))

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        return self.model.save(path, meta)

    def estimate(self, trajectory: Trajectory) -> list[float] | None:
        """One c_t per turn. Raises ValueError for a trajectory longer than the model's context (a reward spec then
        masks the rollout with that error), rather than judging it on a cut-off sequence."""
        length = len(trajectory.token_ids)
        if length > self.model.max_length:
            raise ValueError(f"trajectory {trajectory.id} has {length} tokens, more than the progress model's "
                             f"{self.model.max_length}")
        self.model.eval()
        with torch.inference_mode():
            return self.model.turn_values(trajectory).tolist()


@functools.lru_cache(maxsize=4)
def _cached(path: str) -> LearnedProgress:
    return LearnedProgress.load(path)


def cached(path: str | Path) -> LearnedProgress:
    """The estimator saved at `path`, loaded once per process (a model reused by every scored trajectory)."""
    return _cached(str(Path(path).resolve()))
