"""Where a run's numbers go: its JSON-lines files always, TensorBoard by default, Weights & Biases and MLflow when
asked for (`tracking:` in a train or sft config)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

Backend = Literal["tensorboard", "wandb", "mlflow"]
BACKENDS: tuple[Backend, ...] = ("tensorboard", "wandb", "mlflow")
DEFAULT_TRACKING: list[Backend] = ["tensorboard"]
TENSORBOARD_DIR = "tensorboard"  # under the run's folder: `tensorboard --logdir runs/`
MLFLOW_DB = "mlflow.db"  # under the run's folder, when MLFLOW_TRACKING_URI does not name a tracking server
# The package each backend imports, and what to install for it.
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
             "mlflow": ("mlflow", "mlflow-skinny sqlalchemy alembic")}


class TrackingError(ValueError):
    """A tracking backend the config asks for cannot be used."""


def check_installed(backends: Sequence[str]) -> None:
    """Raise `TrackingError` naming what to install for any backend whose package is missing."""
    for name in backends:
        module, package = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise TrackingError(f"tracking: {name} is asked for but {module!r} is not installed; "
                                f"`pip install {package}`, or remove {name} from `tracking`")


class _Sink(Protocol):
    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class Tracker:
    """Appends each record to a JSON-lines file of the run and sends its numbers to the configured backends."""

    def __init__(self, out: Path, backends: Sequence[str], *, config: dict[str, Any], resume_step: int = 0) -> None:
        check_installed(backends)
        self.out = out
        self._sinks: list[_Sink] = [_open(name, out, config, resume_step) for name in backends]

    def log(self, record: dict[str, Any], *, step: int, file: str = "metrics.jsonl", prefix: str = "") -> None:
        """Write `record` whole to `file`; its numbers (not `step`) go to the backends as `prefix` + key."""
        with (self.out / file).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_plain) + "\n")
        scalars = {f"{prefix}{k}": float(v) for k, v in record.items()
                   if k != "step" and isinstance(_plain(v), int | float) and not isinstance(v, bool)}
        if scalars:
            for sink in self._sinks:
                sink.log(scalars, step)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_tensorboard(out: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve a run wrote to TensorBoard, as (step, value) pairs, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / TENSORBOARD_DIR))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _plain(value: Any) -> Any:
    """A torch scalar as its number; other non-JSON values as text."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "numel", lambda: 0)() == 1:
        return item()
    return value if isinstance(value, str | int | float | bool | type(None) | list | dict) else str(value)


def _open(name: str, out: Path, config: dict[str, Any], resume_step: int) -> _Sink:
    if name == "tensorboard":
        return _TensorBoard(out / TENSORBOARD_DIR, resume_step)
    if name == "wandb":
        return _WandB(out, config)
    if name == "mlflow":
        return _MLflow(out, config)
    raise TrackingError(f"unknown tracking backend {name!r}; choose from {', '.join(BACKENDS)}")


class _TensorBoard:
    def __init__(self, folder: Path, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run drops what an interrupted one wrote after its checkpoint, so curves do not fold back.
        self.writer = SummaryWriter(str(folder), purge_step=resume_step + 1 if resume_step else None)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a run watched live, or killed, shows every finished step

    def close(self) -> None:
        self.writer.close()


def _run_id(out: Path, backend: str) -> str:
    """The backend's run id for this folder, kept in it so a resumed run goes on in the same backend run."""
    path = out / f".{backend}-run-id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:16])
    return path.read_text().strip()


class _WandB:
    """Project from WANDB_PROJECT (default `gymbox`); WANDB_MODE=offline keeps the run on disk under the run."""

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "gymbox"), name=out.name, dir=str(out),
                              id=_run_id(out, "wandb"), resume="allow", config=config)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    """Tracking URI from MLFLOW_TRACKING_URI, else an SQLite store in the run's folder (`mlflow ui
    --backend-store-uri sqlite:///OUT/mlflow.db`); experiment from MLFLOW_EXPERIMENT_NAME (default `gymbox`)."""

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / MLFLOW_DB).resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "gymbox")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        saved = out / ".mlflow-run-id"
        if saved.exists():
            self.run_id = saved.read_text().strip()
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=out.name).info.run_id
            saved.write_text(self.run_id)
            for key, value in _flat(config).items():
                self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in scalars.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (`learner.lr`), the form experiment trackers list parameters in."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
