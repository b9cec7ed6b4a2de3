"""Checkpoints: weights, optimizer, step and every random state, written atomically so a crash loses nothing saved."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gymbox.agent.learner import lora
from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.learner import Learner
from gymbox.agent.learner.lora import LoraSettings

LATEST = "latest"  # a file holding the newest complete checkpoint's folder name


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(learner: Learner, root: str | os.PathLike[str], *, extra: dict[str, Any] | None = None,
         tokenizer: Any = None, keep: int = 2) -> Path:
    """Write `root/step-NNNNNN` (model in safetensors, trainer state, `extra` loop state) and point `latest` at it.

    The folder is written under a temporary name and renamed when complete, so a crash mid-write leaves the previous
    checkpoint as the latest. Older checkpoints beyond `keep` are removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{learner.step:06d}"
    tmp = root / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    learner.model.save_pretrained(tmp / "model", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "model")
    torch.save({"learner": learner.state(), "rng": rng_state(), "extra": extra or {}}, tmp / "trainer.pt")
    meta = {"step": learner.step, "extra": extra or {}, "initial": learner.initial}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text(encoding="utf-8").strip()
    if not (path / "trainer.pt").exists():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is incomplete or was removed: point it at a "
                                f"complete step-* folder or delete it to start over")
    return path


def restore(learner: Learner, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load weights, optimizer, step and random states saved by `save`; returns the loop's `extra` state."""
    from safetensors.torch import load_file

    path = Path(path)
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted((path / "model").glob("*.safetensors")):
        weights.update(load_file(shard, device=str(learner.device)))
    if lora.is_lora(learner.model):  # a LoRA run's checkpoint holds its adapters, not the frozen base
        lora.load_adapter_weights(learner.model, weights)
    else:
        missing, unexpected = learner.model.load_state_dict(weights, strict=False)
        # Tied weights (the output head sharing the embedding) are saved once: a missing tied key is expected.
        tied = set(getattr(learner.model, "_tied_weights_keys", None) or [])
        missing = [k for k in missing if k not in tied and "lm_head" not in k]
        if missing or unexpected:
            raise ValueError(f"{path}: checkpoint does not match the model: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}")
    state = torch.load(path / "trainer.pt", map_location=learner.device, weights_only=False)
    learner.load_state(state["learner"])
    set_rng_state(state["rng"])
    return state["extra"]


def resume(path: str | os.PathLike[str], initial: str, config: LearnerConfig | None = None, *,
           device: str | torch.device | None = None,
           lora: LoraSettings | None = None) -> tuple[Learner, dict[str, Any]]:
    """The learner of a run continued from its checkpoint `path`, and the loop's `extra` state.

    With a KL penalty (`kl_coef` > 0) the reference stays the run's initial model, not the checkpoint: the learner
    is built from where the checkpoint says the run started (`initial` for a checkpoint that does not say) and the
    checkpoint's weights are then loaded into the trained copy only. A LoRA run (`lora`) is rebuilt the same way,
    its checkpoint holding only the adapters.
    """
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    start = meta.get("initial") or initial
    if (config is not None and config.kl_coef > 0) or lora is not None:
        if Path(start).is_absolute() and not Path(start).exists():
            needs = "adapters" if lora is not None else "KL reference"
            raise FileNotFoundError(f"{path}: this run started from {start}, which is gone and which its {needs} "
                                    "needs: put it back, start over (--fresh), or (without LoRA) set kl_coef: 0")
        learner = Learner.from_pretrained(start, config, device=device, lora=lora)
    else:  # no reference: the checkpoint's own folder has every weight the learner needs
        learner = Learner.from_pretrained(str(path / "model"), config, device=device)
    learner.initial = start
    return learner, restore(learner, path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
