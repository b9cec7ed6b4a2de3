"""SPA-RL's learned progress estimator on a tiny random Llama: where c_t is read, training, saving, CLI, reward spec."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gymbox.environments.api.models import Action, Message
from gymbox.environments.records import EpisodeError, Trajectory, Turn
from gymbox.harness import cli_progress
from gymbox.harness.cli_progress import train_from_store as train_progress
from gymbox.harness.store import StoreError, TrajectoryStore
from gymbox.rewards.progress import grounding
from gymbox.rewards.progress_model import LearnedProgress, ProgressModel, turn_ends
from gymbox.rewards.progress_train import ProgressTrainConfig as TrainConfig
from gymbox.rewards.progress_train import ProgressTrainError
from gymbox.rewards.spec import RewardSpec, RewardSpecError
from tests.reward_fixtures import trajectory

VOCAB = 48
GOOD, BAD = 10, 11  # the token in the policy's last reply that decides the synthetic reward
INFRA = EpisodeError(code="container_died", message="137", infra=True)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead, and the machine is shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama saved as a Hugging Face folder."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def policy_turn(index: int, policy: list[int], env: list[int], *, valid: bool = True) -> Turn:
    """A turn: the policy's tokens (loss mask 1) then the environment's answer (loss mask 0)."""
    ids = policy + env
    return Turn(index=index, token_ids=ids, loss_mask=[1] * len(policy) + [0] * len(env), logprobs=[None] * len(ids),
                text="x", action=Action(text="x"), signals={"valid_action": 1.0 if valid else 0.0},
                observation=[Message(role="tool", content="ok", tool_call_id="call_0")])


def episode(*turns: Turn, reward: float | None = None, error: EpisodeError | None = None,
            sample: int = 0) -> Trajectory:
    t = trajectory(list(turns), error=error).model_copy(update={"prompt_ids": [1, 2, 3], "reward": reward})
    return t.model_copy(update={"id": f"r{sample}", "sample": sample})


def learnable(n: int) -> list[Trajectory]:
    """Reward 1 when the policy's second reply starts with GOOD, else 0; the other tokens vary as noise."""
    out = []
    for i in range(n):
        decisive = GOOD if i % 2 == 0 else BAD
        first = policy_turn(0, [20 + i % 5, 30, 2], [40, 41 + i % 3])
        second = policy_turn(1, [decisive, 25 + i % 4, 2], [42])
        out.append(episode(first, second, reward=1.0 if decisive == GOOD else 0.0, sample=i))
    return out


def random_head(path: Path) -> ProgressModel:
    model = ProgressModel.from_base(path)
    torch.manual_seed(1)
    torch.nn.init.normal_(model.head.weight)  # the saved head starts at zero: give it something to read
    return model.eval()


def test_c_t_is_read_at_each_turn_s_last_policy_token(base: Path) -> None:
    model = random_head(base)
    # Turn 0 ends with environment tokens (40, 41) after its last policy token (position 5).
    t = episode(policy_turn(0, [20, 21, 22], [40, 41]), policy_turn(1, [23, 24], [42]))
    assert turn_ends(t) == [5, 9]
    values = LearnedProgress(model).estimate(t)
    assert values is not None and len(values) == 2
    # The same as reading the head on the full logits at those positions: only those rows are computed.
    with torch.inference_mode():
        logits = model.lm(input_ids=torch.tensor([t.token_ids])).logits[0]
        expected = model.head(logits[[5, 9]])[:, 0].tolist()
    assert values == pytest.approx(expected, abs=1e-5)

    after = episode(policy_turn(0, [20, 21, 22], [44, 45]), policy_turn(1, [23, 24], [42]))  # after turn 0's end
    changed = LearnedProgress(model).estimate(after)
    assert changed is not None and changed[0] == pytest.approx(values[0], abs=1e-6) and changed[1] != values[1]
    before = episode(policy_turn(0, [20, 33, 22], [40, 41]), policy_turn(1, [23, 24], [42]))  # before it
    moved = LearnedProgress(model).estimate(before)
    assert moved is not None and moved[0] != pytest.approx(values[0], abs=1e-6)


def test_turns_without_policy_tokens_get_zero(base: Path) -> None:
    model = random_head(base)
    silent = policy_turn(1, [], [40, 41])
    t = episode(policy_turn(0, [20, 21], [40]), silent, policy_turn(2, [22], []))
    values = LearnedProgress(model).estimate(t)
    assert values is not None and values[1] == 0.0 and values[0] != 0.0 and values[2] != 0.0
    assert LearnedProgress(model).estimate(episode(silent.model_copy(update={"index": 0}))) == [0.0]
    assert LearnedProgress(model).estimate(episode()) == []


def test_training_lowers_the_mse_of_the_summed_progress(base: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with TrajectoryStore(store).writer() as writer:
        for t in learnable(24):
            writer.append(t)
    seen: list[tuple[int, int, float]] = []
    config = TrainConfig(epochs=10, lr=3e-3, batch_size=2, holdout=0.25, seed=3, device="cpu")
    report = train_progress(store, base, tmp_path / "out", config, on_step=lambda *a: seen.append(a))
    assert (report.trained, report.held_out) == (18, 6)
    assert report.optimizer_steps == 10 * 9 and [s[:2] for s in seen] == [(i, 180) for i in range(1, 181)]
    # The untrained (zero) head predicts 0: the MSE is the mean of R², half the rewards being 1.
    assert report.train_mse_before == pytest.approx(0.5, abs=0.2)
    assert report.train_mse_after < 0.1 * report.train_mse_before
    assert report.holdout_mse_before is not None and report.holdout_mse_after is not None
    assert report.holdout_mse_after < 0.5 * report.holdout_mse_before
    trained = LearnedProgress.load(tmp_path / "out", device="cpu")
    good, bad = learnable(2)
    assert sum(trained.estimate(good) or []) > sum(trained.estimate(bad) or []) + 0.5


def test_save_and_load_give_identical_estimates(base: Path, tmp_path: Path) -> None:
    estimator = LearnedProgress(random_head(base))
    estimator.save(tmp_path / "saved", {"note": "round trip"})
    loaded = LearnedProgress.load(tmp_path / "saved", device="cpu")
    for t in learnable(4):
        assert loaded.estimate(t) == estimator.estimate(t)
    with pytest.raises(FileNotFoundError, match="no progress model at"):
        LearnedProgress.load(tmp_path / "missing")


def test_over_long_trajectories_are_refused_by_the_estimator(base: Path) -> None:
    long = episode(policy_turn(0, [20] * 70, [40]))  # the tiny Llama's context is 64 tokens
    with pytest.raises(ValueError, match="more than the progress model's 64"):
        LearnedProgress(random_head(base)).estimate(long)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gymbox")
    cli_progress.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_cli_trains_from_a_store_and_says_what_it_skipped(base: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    with TrajectoryStore(store).writer() as writer:
        for t in learnable(6):
            writer.append(t)
        writer.append(episode(policy_turn(0, [20], []), reward=1.0, error=INFRA, sample=6))
        writer.append(episode(policy_turn(0, [20], []), reward=None, sample=7))
        writer.append(episode(policy_turn(0, [20] * 30, []), reward=1.0, sample=8))
    code = run_cli("progress", "train", str(store), "--model", str(base), "--out", str(tmp_path / "out"),
                   "--epochs", "2", "--lr", "1e-3", "--batch-size", "3", "--max-length", "20", "--device", "cpu")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines at the terminal's width
    assert code == 0, out
    assert "skipped: 1 masked, 1 no reward, 1 too long" in out and "MSE before" in out and "train" in out
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"progress.json", "progress_head.safetensors", "config.json"} <= saved
    assert LearnedProgress.load(tmp_path / "out", device="cpu").estimate(learnable(1)[0]) is not None


def test_errors_come_before_any_model_is_loaded(base: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing_model = tmp_path / "no-model"  # never reached: the store's problems are found first
    TrajectoryStore(tmp_path / "empty").writer().close()
    with pytest.raises(ProgressTrainError, match="holds no trajectories"):
        train_progress(tmp_path / "empty", missing_model, tmp_path / "out")
    with pytest.raises(StoreError, match="no trajectory store"):
        train_progress(tmp_path / "nowhere", missing_model, tmp_path / "out")
    with TrajectoryStore(tmp_path / "unusable").writer() as writer:
        writer.append(episode(policy_turn(0, [20], []), reward=1.0, error=INFRA))
        writer.append(episode(policy_turn(0, [20], []), reward=None, sample=1))
    with pytest.raises(ProgressTrainError, match="1 masked, 1 without a reward"):
        train_progress(tmp_path / "unusable", missing_model, tmp_path / "out")
    with TrajectoryStore(tmp_path / "good").writer() as writer:
        writer.append(learnable(1)[0])
    with pytest.raises(ProgressTrainError, match="cannot read a causal LM"):
        train_progress(tmp_path / "good", missing_model, tmp_path / "out")
    with pytest.raises(ProgressTrainError, match="holdout"):
        TrainConfig(holdout=1.0)
    assert run_cli("progress", "train", str(tmp_path / "empty"), "--model", str(base), "--out", str(tmp_path)) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "holds no trajectories" in out and "training" not in out  # no progress bar before the checks pass
    assert not (tmp_path / "out").exists()


def test_a_spa_spec_with_a_learned_estimator_scores_c_t_plus_g_t(base: Path, tmp_path: Path) -> None:
    estimator = LearnedProgress(random_head(base))
    estimator.save(tmp_path / "estimator")
    spec_path = tmp_path / "spa.yaml"
    spec_path.write_text(f"components:\n  - fn: spa\n    options: {{estimator: {tmp_path / 'estimator'}}}\n")
    t = episode(policy_turn(0, [20, 21], [40], valid=True), policy_turn(1, [22], [41], valid=False))
    scores = RewardSpec.load(spec_path).score(t)
    c = estimator.estimate(t)
    assert c is not None and grounding(t) == [0.5, 0.0]
    assert scores.error is None and scores.per_turn == pytest.approx([c[0] + 0.5, c[1]], abs=1e-5)
    assert scores.total == pytest.approx(sum(c) + 0.5, abs=1e-5)

    missing = tmp_path / "missing.yaml"
    missing.write_text(f"components:\n  - fn: progress\n    options: {{estimator: {tmp_path / 'nope'}}}\n")
    with pytest.raises(RewardSpecError, match="no progress model at"):
        RewardSpec.load(missing)
    both = tmp_path / "both.yaml"
    both.write_text(f"components:\n  - fn: spa\n    options: {{keys: [score], estimator: {tmp_path / 'estimator'}}}\n")
    with pytest.raises(RewardSpecError, match="give one or the other"):
        RewardSpec.load(both)
