"""LoRA (Hu et al. 2021, arXiv:2106.09685) through `peft`: low-rank adapters on chosen linear layers, their weights
alone trained and saved, and merged into the base model for serving (W' = W + (alpha / rank) B A)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
# Llama-family attention and MLP projections: every linear layer of a block (the QLoRA paper's finding that adapting
# all of them, not only q/v, matters most at small ranks).
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraSettings(BaseModel):
    """The adapters: rank r, scale alpha (the update is scaled by alpha / r), dropout on their input, and the names
    of the linear modules that get one."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1)


def apply_lora(model: nn.Module, settings: LoraSettings, base_path: str | None = None) -> nn.Module:
    """`model` wrapped with fresh adapters (B = 0, so its outputs are unchanged); only the adapters require grad.
    `base_path` is recorded in the adapter's config, so that a merge can find its base model."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in settings.target_modules if t not in present]
    if missing:
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"lora.target_modules names modules this model does not have: {', '.join(missing)}; its "
                         f"linear layers are {', '.join(linear)}")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), task_type="CAUSAL_LM", bias="none")
    wrapped = get_peft_model(model, config)
    if base_path is not None:
        wrapped.peft_config["default"].base_model_name_or_path = base_path
    return wrapped


def is_lora(model: nn.Module) -> bool:
    """The model is a `peft` model (its checkpoints hold the adapters only)."""
    try:
        from peft import PeftModel
    except ImportError:  # peft is optional: without it no model can be one
        return False
    return isinstance(model, PeftModel)


def load_adapter_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Put saved adapter weights (as `save_pretrained` writes them) into a LoRA model; refuses a mismatch."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(f"the adapter does not match the model: missing {missing[:5]}, unexpected "
                         f"{list(result.unexpected_keys)[:5]}; were rank or target_modules changed since it was saved?")


def is_adapter(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def base_of(adapter: str | os.PathLike[str]) -> str:
    """The base model an adapter folder was trained on, as its config records it."""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter}/{ADAPTER_CONFIG} does not say which base model it adapts: pass the base model")
    return str(base)


def merged(model: nn.Module) -> nn.Module:
    """The base model with the adapters folded into its weights (a plain transformers model, no peft left)."""
    return model.merge_and_unload()  # type: ignore[operator]


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of base + adapters as a plain model's state dict (W + (alpha / r) B A for each adapted layer),
    computed beside the model: the frozen weights are never touched, so no rounding creeps into them over steps."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()  # type: ignore[operator]
    deltas = {f"{name}.weight": module.get_delta_weight(module.active_adapters[0])
              for name, module in base.named_modules() if isinstance(module, LoraLayer)}
    state: dict[str, torch.Tensor] = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = (value + deltas[key].to(value.dtype)).detach() if key in deltas else value.detach()
    return state


def save_servable(model: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Write `model` as a folder vLLM and transformers load: the base with the adapters merged in for a LoRA model
    (its own weights are unchanged), the model itself otherwise."""
    if is_lora(model):
        model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(model),  # type: ignore[operator]
                                               safe_serialization=True)
    else:
        model.save_pretrained(folder, safe_serialization=True)  # type: ignore[operator]


def merge_adapter(adapter: str | os.PathLike[str], out: str | os.PathLike[str], *, base: str | None = None,
                  dtype: torch.dtype | None = None) -> Path:
    """Write base + adapter as one model folder (safetensors in `dtype`, default the base model's own; the tokenizer
    beside), loadable by vLLM and transformers alike. The merge runs in float32; only the result is cast."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoTokenizer

    from gymbox.agent.models import load_causal_lm, resolve_model

    base = resolve_model(base or base_of(adapter))  # a prepared model's name (a shipped adapter's base) as its folder
    if dtype is None:
        saved = getattr(AutoConfig.from_pretrained(base), "dtype", None)
        dtype = saved if isinstance(saved, torch.dtype) else getattr(torch, str(saved or "float32"), torch.float32)
    model: Any = PeftModel.from_pretrained(load_causal_lm(base, torch.float32), str(adapter))
    plain = merged(model).to(dtype)
    out = Path(out)
    plain.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out
