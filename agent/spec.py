"""Policy specifications: a picklable description (`PolicySpec`) that builds a policy where it will run.

A policy holding an engine cannot be shipped to another process; its spec can. `PolicySpec.parse` reads what a
user types after `--policy`:

- `default`: SmolLM2-135M-Instruct warm-started on echo demonstrations (the shipped LoRA adapter merged in) on vLLM,
  prepared locally, no hub; `base`: SmolLM2-135M-Instruct itself;
- a model folder, a prepared model's name or a hub name: that model on vLLM (`vllm:` prefix optional);
- `hf:MODEL` (`hf:default`, `hf:base`, a folder...): that model on transformers' `generate`, where vLLM is missing;
- `openai:URL` (optionally `openai:URL#MODEL`): an OpenAI-compatible endpoint, chat mode; `openai+tokens:URL`
  for a vLLM server in token-accurate mode;
- `scripted:MODULE:FUNCTION`: a `ScriptedPolicy` whose script is that function (tests, smoke runs);
- `expert`: every environment's expert (`agent/experts`), its replies in the default model's tokens (`expert:MODEL`
  for another model's tokenizer, `expert:chat` for text only).
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gymbox.agent.policy import Policy

PolicyKind = Literal["vllm", "hf", "openai", "scripted", "expert"]


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: PolicyKind
    model: str | None = Field(default=None, description="vLLM, hf: model folder or name; openai: the served model")
    url: str | None = Field(default=None, description="openai: base URL of the endpoint")
    mode: Literal["chat", "tokens"] = "chat"
    script: str | None = Field(default=None, description="scripted: MODULE:FUNCTION")
    tokenizer: str | None = Field(default=None, description="tokenizer folder or name, when not the model's")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the policy class")

    @classmethod
    def parse(cls, text: str, **options: Any) -> PolicySpec:
        """A spec from its command-line form (see the module docstring); `options` go to the policy class."""
        text = text.strip()
        if not text:
            raise ValueError("empty policy; use `default`, a model folder or name, `openai:URL`, `expert` or "
                             "`scripted:MODULE:FUNCTION`")
        prefix, _, rest = text.partition(":")
        if prefix in ("openai", "openai+tokens"):
            url, _, model = rest.partition("#")
            if not url:
                raise ValueError(f"{text!r}: give the endpoint, e.g. openai:http://127.0.0.1:8000/v1")
            return cls(kind="openai", url=url, model=model or None,
                       mode="tokens" if prefix == "openai+tokens" else "chat", options=options)
        if prefix == "expert":
            if rest == "chat":
                return cls(kind="expert", mode="chat", options=options)
            return cls(kind="expert", mode="tokens", tokenizer=rest or None, options=options)
        if prefix == "scripted":
            if ":" not in rest:
                raise ValueError(f"{text!r}: a scripted policy is scripted:MODULE:FUNCTION")
            return cls(kind="scripted", script=rest, options=options)
        if prefix == "hf":
            return cls(kind="hf", model=None if rest in ("", "default") else rest, options=options)
        model = rest if prefix == "vllm" else text
        return cls(kind="vllm", model=None if model == "default" else model, options=options)

    @property
    def label(self) -> str:
        """A short name for tables and logs."""
        if self.kind == "openai":
            return f"openai:{self.url}" + (f"#{self.model}" if self.model else "")
        if self.kind == "scripted":
            return f"scripted:{self.script}"
        if self.kind == "expert":
            return "expert" + (":chat" if self.mode == "chat" else f":{self.tokenizer}" if self.tokenizer else "")
        if self.kind == "hf":
            return f"hf:{self.model or 'default'}"
        return self.model or "default"

    def build(self) -> Policy:
        """The policy itself, built in the calling process (an engine starts here for vLLM); a token policy whose
        chat template cannot be extended turn by turn is refused here, before any episode."""
        policy = self._build()
        if policy.tokenizer is not None:
            from gymbox.agent.chat import check_template

            check_template(policy.tokenizer)
        return policy

    def _build(self) -> Policy:
        if self.kind == "vllm":
            from gymbox.agent.vllm_policy import VLLMPolicy  # imports vLLM: only where an engine runs

            return VLLMPolicy(self.model, **self.options)
        if self.kind == "hf":
            from gymbox.agent.hf_policy import HFPolicy

            return HFPolicy(self.model, **self.options)
        if self.kind == "openai":
            from gymbox.agent.openai_policy import OpenAIPolicy

            return OpenAIPolicy(str(self.url), self.model, mode=self.mode, tokenizer=self.tokenizer, **self.options)
        if self.kind == "expert":
            from gymbox.agent.experts import ExpertPolicy

            return ExpertPolicy(tokenizer=self.load_tokenizer(), name=self.label, **self.options)
        from gymbox.agent.scripted import ScriptedPolicy

        options = dict(self.options)
        if self.tokenizer:
            options["tokenizer"] = load_tokenizer(self.tokenizer)
        return ScriptedPolicy(load_script(str(self.script)), name=self.label, **options)

    def load_tokenizer(self) -> Any:
        """The tokenizer the harness formats conversations with, or None for a chat-level policy."""
        if self.kind in ("vllm", "hf"):
            return load_tokenizer(self.tokenizer or self.model)
        if self.kind == "openai" and self.mode == "tokens":
            return load_tokenizer(self.tokenizer or self.model)
        if self.kind == "scripted" and self.tokenizer:
            return load_tokenizer(self.tokenizer)
        if self.kind == "expert" and self.mode == "tokens":
            return load_tokenizer(self.tokenizer)  # None: the default model's, the model a warm start trains
        return None


def load_tokenizer(name: str | None) -> Any:
    """A Hugging Face tokenizer from a folder, a prepared model's name, or a hub name (None: the default model)."""
    from transformers import AutoTokenizer

    from gymbox.agent.models import default_model_path, model_path

    # None: the base model's, which the default policy's model shares (its merge keeps the base's tokenizer).
    path = str(default_model_path()) if name is None else model_path(name)
    return AutoTokenizer.from_pretrained(path)


def load_script(target: str) -> Any:
    """The function named by MODULE:FUNCTION."""
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load the script {target!r}: {err}") from err
