"""Test helper: a copy of a model whose output is known exactly, to see which weights an engine serves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Flat:
    path: Path
    vocab: int


def flat_weights(model_path: str, folder: Path) -> Flat:
    """The model with its final norm zeroed: every logit is 0, so every token has log-prob -ln(vocab size)."""
    import torch

    from gymbox.agent.models import load_causal_lm

    model = load_causal_lm(model_path, torch.float32)
    with torch.no_grad():
        model.get_decoder().norm.weight.zero_()
    model.save_pretrained(folder / "flat", safe_serialization=True)
    return Flat(path=folder / "flat", vocab=model.config.vocab_size)
