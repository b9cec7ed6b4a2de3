"""Run metrics reach every tracking backend: TensorBoard's event files, an offline W&B run and an MLflow SQLite store,
each read back from what the backend stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gymbox.harness import tracking
from gymbox.harness.sft_config import SFTConfig
from gymbox.harness.tracking import TENSORBOARD_DIR, Tracker, TrackingError, read_tensorboard

RECORDS = [{"step": 1, "loss": 0.5, "reward_mean": 0.25, "skipped": "why"},
           {"step": 2, "loss": 0.25, "reward_mean": 0.75, "ok": True}]


def _write(out: Path, backends: list[str], records: list[dict] = RECORDS, resume_step: int = 0) -> None:
    with Tracker(out, backends, config={"learner": {"lr": 1e-5}, "steps": 2}, resume_step=resume_step) as t:
        for r in records:
            t.log(r, step=r["step"])
        t.log({"step": 2, "success": 0.5}, step=2, file="eval.jsonl", prefix="eval/")


def test_jsonl_keeps_every_record_whole_and_tensorboard_gets_the_numbers(tmp_path: Path) -> None:
    _write(tmp_path, ["tensorboard"])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == RECORDS
    assert json.loads((tmp_path / "eval.jsonl").read_text()) == {"step": 2, "success": 0.5}
    scalars = read_tensorboard(tmp_path)
    # Text and flags stay in the JSON lines; `step` is the axis, not a curve.
    assert sorted(scalars) == ["eval/success", "loss", "reward_mean"]
    assert scalars["loss"] == [(1, 0.5), (2, 0.25)]
    assert scalars["eval/success"] == [(2, 0.5)]


def test_a_resumed_run_replaces_the_steps_after_its_checkpoint(tmp_path: Path) -> None:
    _write(tmp_path, ["tensorboard"])  # reached step 2; its checkpoint was at step 1
    _write(tmp_path, ["tensorboard"], [{"step": 2, "loss": 0.125}], resume_step=1)
    assert read_tensorboard(tmp_path)["loss"] == [(1, 0.5), (2, 0.125)]


def test_no_backend_writes_only_the_json_lines(tmp_path: Path) -> None:
    _write(tmp_path, [])
    assert (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def _wandb_item(key: str, value_json: str, key_field: int = 2) -> bytes:
    """A key and its JSON value as W&B's run file stores them: protobuf field `value_json` (16) after the key's
    field (2 in a history row, 1 in the config)."""
    k, v = key.encode(), value_json.encode()
    return bytes([key_field << 3 | 2, len(k)]) + k + b"\x82\x01" + bytes([len(v)]) + v


def test_wandb_offline_run_gets_the_metrics_and_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _write(tmp_path, ["wandb"])
    run_id = (tmp_path / ".wandb-run-id").read_text()
    (data,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    stored = data.read_bytes()
    for key, value in [("loss", "0.5"), ("loss", "0.25"), ("reward_mean", "0.75"), ("eval/success", "0.5")]:
        assert _wandb_item(key, value) in stored, (key, value)
    assert _wandb_item("learner", '{"lr":0.00001}', key_field=1) in stored
    assert b"skipped" not in stored


def test_mlflow_store_gets_each_step_and_a_resumed_run_goes_on_in_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _write(tmp_path, ["mlflow"])
    _write(tmp_path, ["mlflow"], [{"step": 3, "loss": 0.125}], resume_step=2)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / tracking.MLFLOW_DB}")
    run_id = (tmp_path / ".mlflow-run-id").read_text()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 0.5), (2, 0.25),
                                                                                      (3, 0.125)]
    assert client.get_run(run_id).data.params["learner.lr"] == "1e-05"


def test_a_backend_that_is_not_installed_is_refused_with_what_to_install(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrackingError, match=r"pip install mlflow-skinny sqlalchemy alembic"):
        Tracker(tmp_path, ["mlflow"], config={})
    with pytest.raises(ValidationError, match=r"wandb is asked for but 'wandb' is not installed"):
        SFTConfig(stores=[tmp_path], tracking=["wandb"])


def test_an_unknown_backend_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tracking"):
        SFTConfig(stores=[tmp_path], tracking=["comet"])
