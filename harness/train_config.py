"""`gymbox train` configuration: one YAML file for rollouts, rewards, advantages, the learner and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.lora import LoraSettings
from gymbox.agent.policy import Sampling
from gymbox.harness.episode import EpisodeConfig
from gymbox.harness.ray_runner import runtime_options
from gymbox.harness.tracking import DEFAULT_TRACKING, Backend, check_installed
from gymbox.rewards.advantages import ESTIMATORS


class TrainConfigError(ValueError):
    """The configuration file is unreadable or invalid; raised before any model or engine is loaded."""


class EvalSettings(BaseModel):
    """Held-out evaluation before training and after it (and every `every` steps when set)."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field(description="SUITE:split of held-out tasks")
    limit: int | None = Field(default=None, gt=0, description="the first N tasks")
    samples: int = Field(default=1, ge=1, description="samples per task; 1 is greedy")
    every: int | None = Field(default=None, gt=0, description="also evaluate every N steps")


class OfflineSource(BaseModel):
    """Offline training: batches come from a trajectory store, rescored by the run's reward spec, instead of fresh
    rollouts (harness/train_offline.py says what the importance ratio and the clip mean then)."""

    model_config = ConfigDict(extra="forbid")

    store: Path = Field(description="trajectory store: a folder of seg-*.jsonl files, or one JSON-lines file")
    epochs: float | None = Field(default=None, gt=0, description="passes over the store's groups; sets `steps` "
                                 "(leave `steps` out then)")
    min_group: int = Field(default=2, ge=2, description="groups with fewer usable rollouts are left out: a group "
                           "of one has no baseline")
    allow_test: bool = Field(default=False, description="train on trajectories of test-split tasks (never by "
                             "default)")


class TrainConfig(BaseModel):
    """The training loop: rollouts -> rewards -> advantages -> update -> weight sync, `steps` times; with `source`,
    batches from a trajectory store instead of rollouts."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="default", description="model folder or prepared model's name; `default`: "
                       "the default policy's (SmolLM2-135M-Instruct warm-started on echo); `base`: SmolLM2 itself")
    suite: str | None = Field(default=None, description="SUITE:split of training tasks, cycled through in a seeded "
                              "order (online training)")
    source: OfflineSource | None = Field(default=None, description="offline training from a trajectory store")
    out: Path = Path("runs/train")
    steps: int = Field(default=10, ge=1)
    tasks_per_step: int = Field(default=4, ge=1)
    group_size: int = Field(default=4, ge=2, description="rollouts per task (G); GRPO needs G >= 2")
    episode: EpisodeConfig = Field(default_factory=lambda: EpisodeConfig(sampling=Sampling(max_tokens=128)),
                                   description="how rollouts are played and scored (parser, sampling, limits, "
                                               "reward spec)")
    advantage: str = Field(default="grpo", description=f"one of {', '.join(ESTIMATORS)}")
    turn_level: bool = Field(default=False, description="per-turn advantages from the spec's per-turn rewards; "
                                                        "without any, the reward at the last turn")
    gamma: float = Field(default=1.0, ge=0, le=1)
    skip_zero_advantage: bool = Field(default=True, description="leave out samples whose advantage is 0 everywhere")
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    lora: LoraSettings | None = Field(default=None, description="train LoRA adapters on frozen weights; the policy "
                                      "serves base + adapters merged, checkpoints hold the adapters")
    eval: EvalSettings | None = None
    checkpoint_every: int = Field(default=5, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    runtime: Literal["local", "process", "docker"] = "local"
    workers: int = Field(default=1, ge=1, description="environment workers per environment")
    containers: int | None = Field(default=None, ge=1, description="docker runtime: containers at once per worker "
                                                                    "(default: what the machine can run)")
    max_model_len: int = Field(default=2048, gt=0)
    engine: Literal["vllm", "transformers"] = Field(default="vllm", description="what plays the rollouts: vLLM, "
                                                    "or transformers' generate where vLLM cannot be installed")
    user_policy: str | None = Field(default=None, description="τ²-bench tasks: the simulated user (`default`, "
                                    "`base` or a model: served by the run; openai:URL#MODEL; gold)")
    seed: int = 0
    ray_address: str | None = None
    tracking: list[Backend] = Field(default_factory=lambda: list(DEFAULT_TRACKING), description="where metrics go "
                                    "besides metrics.jsonl: tensorboard (under out/), wandb, mlflow")

    @model_validator(mode="after")
    def _known(self) -> TrainConfig:
        runtime_options(self.runtime, self.containers)
        check_installed(self.tracking)
        self._online_or_offline()
        if self.advantage not in ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {self.advantage!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.turn_level and self.advantage not in ("grpo", "dr_grpo"):
            raise ValueError("turn_level advantages normalize returns GRPO-style (scaled: grpo, centred: dr_grpo); "
                             f"{self.advantage!r} has no turn-level form")
        if self.lora is not None and self.learner.gradient_checkpointing:
            raise ValueError("lora with gradient_checkpointing is not supported yet: drop one of them")
        if self.advantage in ("gdpo", "dvao") and self.episode.reward is None:
            raise ValueError(f"{self.advantage} combines several rewards: give a reward spec with its components")
        return self

    def _online_or_offline(self) -> None:
        if self.source is None:
            if self.suite is None:
                raise ValueError("give `suite` (training tasks, played by the policy) or `source: {store: PATH}` "
                                 "(offline training from a trajectory store)")
            return
        if self.suite is not None:
            raise ValueError("`suite` and `source` are both set: offline training takes its tasks from the store; "
                             "remove `suite` (held-out tasks go in `eval.suite`)")
        if "group_size" in self.model_fields_set:
            raise ValueError("`group_size` is the number of rollouts a policy plays per task; offline, each group "
                             "is used as the store holds it: remove `group_size` (`source.min_group` leaves out "
                             "small groups)")
        if self.source.epochs is not None and "steps" in self.model_fields_set:
            raise ValueError("`steps` and `source.epochs` are both set: give one (epochs sets the steps from the "
                             "store's size and `tasks_per_step`)")

    @classmethod
    def load(cls, path: str | Path, **overrides: object) -> TrainConfig:
        """Read, resolve relative paths against the file's folder, and check; `TrainConfigError` says what is
        wrong. A reward spec is loaded and checked here too, so a bad one fails before any model loads."""
        path = Path(path)
        data = read_mapping(path, "training", TrainConfigError)
        data.update({k: v for k, v in overrides.items() if v is not None})
        episode = data.get("episode")
        reward = episode.get("reward") if isinstance(episode, dict) else None
        if reward is not None and not Path(reward).is_absolute() and (path.parent / reward).exists():
            episode["reward"] = str(path.parent / reward)  # next to the config; else as given (the working folder)
        source = data.get("source")
        store = source.get("store") if isinstance(source, dict) else None
        if isinstance(store, str) and not Path(store).is_absolute() and (path.parent / store).exists():
            source["store"] = str(path.parent / store)  # next to the config; else as given (the working folder)
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise TrainConfigError(f"{path}: invalid training config: {exc}") from exc
        if config.source is not None and not config.source.store.exists():
            raise TrainConfigError(f"{path}: source.store: no trajectory store at {config.source.store} (a folder of "
                                   "seg-*.jsonl files, or one JSON-lines file; `gymbox collect` or a run's "
                                   "trajectories/ make one)")
        if config.episode.reward is not None:
            from gymbox.rewards.score import load_spec

            try:
                spec = load_spec(config.episode.reward)
            except ValueError as exc:
                raise TrainConfigError(f"{path}: reward spec: {exc}") from exc
            if config.advantage in ("gdpo", "dvao") and spec.decomposable:
                raise TrainConfigError(f"{path}: {config.advantage} combines the reward spec's components, but "
                                       f"{spec.decomposable}: use ungated_penalties: false, or advantage: grpo")
            if config.advantage == "dvao" and any(w < 0 for w in spec.weights):
                raise TrainConfigError(f"{path}: dvao weighs each component by its share of the spread, so the "
                                       f"spec's weights must be >= 0, got {spec.weights}; use gdpo for a negative "
                                       "weight")
        return config


def read_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The YAML mapping in a `what` config file (training, sft); `error` when it is unreadable or not a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read the {what} config: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} config is a mapping, got {type(data).__name__}")
    return data
