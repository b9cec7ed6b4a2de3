"""`gymbox sft` configuration: the demonstrations (stores and filters), the schedule, the learner and LoRA."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.lora import LoraSettings
from gymbox.harness.tracking import DEFAULT_TRACKING, Backend, check_installed
from gymbox.harness.train_config import read_mapping

TEST_SPLIT = "test"
FULL_LR, LORA_LR = 1e-5, 2e-4  # learning rates when the config gives none: adapters start at 0 and need larger steps


class SFTConfigError(ValueError):
    """The configuration file is unreadable or invalid; raised before any store is read or model loaded."""


class DemoFilter(BaseModel):
    """Which stored trajectories are demonstrations. Masked rollouts (infrastructure failures) never are."""

    model_config = ConfigDict(extra="forbid")

    successful_only: bool = Field(default=True, description="only trajectories whose `success` signal is 1")
    min_reward: float | None = Field(default=None, description="only trajectories with at least this reward")
    envs: list[str] | None = Field(default=None, min_length=1, description="environment names (`toolcall`) or "
                                   "versioned ids (`toolcall@v1`); None: every environment")
    splits: list[str] = Field(default_factory=lambda: ["train"], min_length=1, description="task splits to take")
    allow_test_split: bool = Field(default=False, description="the only way to train on the test split: held-out "
                                   "evaluation on it then means nothing")

    @model_validator(mode="after")
    def _no_test(self) -> DemoFilter:
        if TEST_SPLIT in self.splits and not self.allow_test_split:
            raise ValueError(f"data.splits names the {TEST_SPLIT!r} split, which held-out evaluation uses: training "
                             "on it makes that evaluation meaningless. Remove it, or set data.allow_test_split: true "
                             "if that is really what you want")
        if self.allow_test_split and TEST_SPLIT not in self.splits:
            raise ValueError(f"data.allow_test_split is set but data.splits {self.splits} does not name "
                             f"{TEST_SPLIT!r}: add it to the splits, or drop allow_test_split")
        return self


class SFTConfig(BaseModel):
    """Supervised fine-tuning on stored demonstrations: `steps` optimizer steps, or `epochs` passes over them."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="default", description="model folder or prepared model's name; `default`: "
                       "the default policy's (SmolLM2-135M-Instruct warm-started on echo); `base`: SmolLM2 itself")
    stores: list[Path] = Field(min_length=1, description="trajectory stores (folders or .jsonl files) to read")
    data: DemoFilter = Field(default_factory=DemoFilter)
    out: Path = Path("runs/sft")
    epochs: int | None = Field(default=None, ge=1, description="passes over the demonstrations (default 1)")
    steps: int | None = Field(default=None, ge=1, description="optimizer steps, instead of epochs")
    batch_size: int = Field(default=8, ge=1, description="demonstrations per optimizer step; the learner's "
                            "micro_batch_size sets how many go through the model at once")
    max_tokens: int = Field(default=2048, gt=1, description="longer demonstrations are left out (and counted)")
    validation_fraction: float = Field(default=0.1, ge=0, lt=1, description="share of the demonstrations' tasks "
                                       "held out; their loss chooses the checkpoint kept as final")
    eval_every: int | None = Field(default=None, ge=1, description="validation loss every N steps (default: "
                                   "each checkpoint)")
    checkpoint_every: int = Field(default=50, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    select: str = Field(default="best", pattern="^(best|last)$", description="final weights: lowest validation "
                        "loss (`best`, needs a validation slice) or the last step")
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    lora: LoraSettings | None = Field(default=None, description="train LoRA adapters instead of every weight")
    merge: bool = Field(default=True, description="with lora: also write base + adapter merged (out/merged)")
    seed: int = 0
    tracking: list[Backend] = Field(default_factory=lambda: list(DEFAULT_TRACKING), description="where metrics go "
                                    "besides metrics.jsonl: tensorboard (under out/), wandb, mlflow")

    @model_validator(mode="after")
    def _sane(self) -> SFTConfig:
        check_installed(self.tracking)
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give epochs or steps, not both: steps counts optimizer steps, epochs passes over the "
                             "demonstrations")
        if self.epochs is None and self.steps is None:
            self.epochs = 1
        lc = self.learner
        if lc.kl_coef > 0:
            raise ValueError("learner.kl_coef is a GRPO setting: supervised fine-tuning has no reference model")
        if lc.epochs != 1 or lc.minibatches != 1:
            raise ValueError("learner.epochs and learner.minibatches split one GRPO batch into several updates; in "
                             "sft, set epochs or steps at the top level and batch_size for the step")
        if self.select == "best" and self.validation_fraction == 0:
            if "select" in self.model_fields_set:
                raise ValueError("select: best picks the checkpoint by validation loss, and validation_fraction "
                                 "is 0: hold some demonstrations out, or select: last")
            self.select = "last"
        if self.lora is not None and lc.gradient_checkpointing:
            raise ValueError("lora with gradient_checkpointing is not supported yet: drop one of them")
        if "lr" not in lc.model_fields_set:
            self.learner = lc.model_copy(update={"lr": LORA_LR if self.lora is not None else FULL_LR})
        return self

    @classmethod
    def load(cls, path: str | Path, **overrides: object) -> SFTConfig:
        """Read, resolve store paths against the file's folder when they exist there, and check."""
        path = Path(path)
        data = read_mapping(path, "sft", SFTConfigError)
        if overrides.get("steps") is not None:
            data.pop("epochs", None)  # --steps replaces the config's schedule
        data.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(data.get("stores"), str | Path):
            data["stores"] = [data["stores"]]
        if isinstance(data.get("stores"), list):
            data["stores"] = [_beside(path, s) for s in data["stores"]]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SFTConfigError(f"{path}: invalid sft config: {exc}") from exc


def _beside(config: Path, store: object) -> object:
    """A relative store path next to the config when it exists there; else as given (the working folder)."""
    if isinstance(store, str) and not Path(store).is_absolute() and (config.parent / store).exists():
        return str(config.parent / store)
    return store
