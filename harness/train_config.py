"""`gymbox train` configuration: one YAML file for rollouts, rewards, advantages, the learner and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.policy import Sampling
from gymbox.harness.episode import EpisodeConfig
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


class TrainConfig(BaseModel):
    """The training loop: rollouts -> rewards -> advantages -> update -> weight sync, `steps` times."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="default", description="model folder, or `default` (SmolLM2-135M-Instruct)")
    suite: str = Field(description="SUITE:split of training tasks, cycled through in a seeded order")
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
    eval: EvalSettings | None = None
    checkpoint_every: int = Field(default=5, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    runtime: Literal["local", "process", "docker"] = "local"
    workers: int = Field(default=1, ge=1, description="environment workers per environment")
    max_model_len: int = Field(default=2048, gt=0)
    seed: int = 0
    ray_address: str | None = None

    @model_validator(mode="after")
    def _known(self) -> TrainConfig:
        if self.advantage not in ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {self.advantage!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.turn_level and self.advantage not in ("grpo", "dr_grpo"):
            raise ValueError("turn_level advantages normalize returns GRPO-style (scaled: grpo, centred: dr_grpo); "
                             f"{self.advantage!r} has no turn-level form")
        if self.advantage in ("gdpo", "dvao") and self.episode.reward is None:
            raise ValueError(f"{self.advantage} combines several rewards: give a reward spec with its components")
        return self

    @classmethod
    def load(cls, path: str | Path, **overrides: object) -> TrainConfig:
        """Read, resolve relative paths against the file's folder, and check; `TrainConfigError` says what is
        wrong. A reward spec is loaded and checked here too, so a bad one fails before any model loads."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TrainConfigError(f"{path}: cannot read the training config: {exc}") from exc
        if not isinstance(data, dict):
            raise TrainConfigError(f"{path}: a training config is a mapping, got {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        episode = data.get("episode")
        reward = episode.get("reward") if isinstance(episode, dict) else None
        if reward is not None and not Path(reward).is_absolute() and (path.parent / reward).exists():
            episode["reward"] = str(path.parent / reward)  # next to the config; else as given (the working folder)
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise TrainConfigError(f"{path}: invalid training config: {exc}") from exc
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
