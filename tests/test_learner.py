"""The GRPO learner on a tiny real Llama: accumulation invariance, hand-computed loss, updates, resume."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch import nn

from gymbox.agent.learner import checkpoint, forward
from gymbox.agent.learner.batch import Sample, collate, sample_of
from gymbox.agent.learner.config import LearnerConfig
from gymbox.agent.learner.learner import Learner
from gymbox.agent.learner.loss import AGGREGATIONS, grpo_terms, token_entropy, truncated_is_weights

VOCAB = 32


def tiny_llama(seed: int = 0) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(config)


def batch(n: int = 8, seed: int = 1) -> list[Sample]:
    """Sequences of varied length: a prompt (mask 0), a policy reply, an observation, a second reply."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        prompt, reply, obs, reply2 = (int(x) for x in torch.randint(2, 7, (4,), generator=g))
        mask = [0] * prompt + [1] * reply + [0] * obs + [1] * reply2
        ids = torch.randint(0, VOCAB, (len(mask),), generator=g).tolist()
        adv = (torch.randn(1, generator=g).item() if i % 3 else 0.0)
        samples.append(Sample(token_ids=ids, mask=mask, advantages=[adv * m for m in mask],
                              logprobs=[-1.0 * m for m in mask], source=f"s{i}"))
    return samples


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("old", ["recompute", "rollout"])
def test_accumulation_1x8_equals_8x1(aggregation: str, old: str) -> None:
    after = []
    for micro in (8, 1):
        config = LearnerConfig(lr=1e-2, micro_batch_size=micro, aggregation=aggregation, old_logprobs=old,
                               precision="fp32", max_grad_norm=None)
        learner = Learner(tiny_llama(), config)
        stats = learner.update(batch())
        # The accumulated gradient is the update's input (Adam's first step is nearly sign(g), which would turn
        # float rounding in near-zero gradients into full-size differences).
        after.append(({k: p.grad.clone() for k, p in learner.model.named_parameters()}, stats))
    (one, s1), (eight, s8) = after
    assert s1.loss == pytest.approx(s8.loss, rel=1e-5, abs=1e-7)
    assert s1.grad_norm == pytest.approx(s8.grad_norm, rel=1e-5)
    for name in one:
        torch.testing.assert_close(one[name], eight[name], rtol=1e-4, atol=1e-7, msg=name)


def test_parameters_change_after_a_step() -> None:
    learner = Learner(tiny_llama(), LearnerConfig(lr=1e-3, precision="fp32"))
    before = params(learner.model)
    stats = learner.update(batch())
    moved = [k for k, v in params(learner.model).items() if not torch.equal(v, before[k])]
    assert stats.optimizer_steps == 1 and learner.step == 1
    assert len(moved) == len(before)  # every parameter gets a gradient from the policy tokens
    assert stats.grad_norm > 0


class Bigram(nn.Module):
    """A model whose log-probs are easy to write by hand: logits[t] = table[token t]."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, input_ids: torch.Tensor, logits_to_keep: torch.Tensor, **_: object) -> object:
        return type("Out", (), {"logits": self.table[input_ids][:, logits_to_keep]})()


def test_loss_equals_hand_computed_value() -> None:
    # Two symbols; table row for token 0 = logits [0, ln 3] (p(1|0) = 3/4), row for token 1 = [0, 0] (p = 1/2).
    table = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    # Sequence a: 0 -> 1 -> 0, policy tokens at positions 1, 2; sequence b: 1 -> 1, policy token at position 1.
    # The recorded log-probs are the sampler's (vLLM's), which differ from the learner's.
    a = Sample(token_ids=[0, 1, 0], mask=[0, 1, 1], advantages=[0, 2.0, 2.0], logprobs=[0, math.log(0.5), -2.0])
    b = Sample(token_ids=[1, 1], mask=[0, 1], advantages=[0, -1.0], logprobs=[0, math.log(0.25)])
    # Learner log-probs: a1 = ln 3/4, a2 = ln 1/2 (after token 1), b1 = ln 1/2. One step per batch: the PPO ratio
    # is 1 (old = the learner's own), and each token's term is weighted by min(pi_old / pi_rollout, 2):
    #   a1: 1.5 -> -1.5 * 2 = -3.0;  a2: 0.5 e^2 = 3.69, truncated to 2 -> -2 * 2 = -4.0;  b1: 2 -> -2 * -1 = 2.0
    expected = {"token_mean": (-3.0 - 4.0 + 2.0) / 3,
                "seq_mean": ((-3.0 - 4.0) / 2 + 2.0) / 2,
                "dr_grpo": (-3.0 - 4.0 + 2.0) / (2 * 2)}
    ratios = [1.5, 0.5 * math.exp(2), 2.0]
    for aggregation, value in expected.items():
        config = LearnerConfig(lr=0.1, old_logprobs="rollout", tis_cap=2.0, aggregation=aggregation,
                               precision="fp32")
        stats = Learner(Bigram(table), config).update([a, b])
        assert stats.loss == pytest.approx(value, abs=1e-6), aggregation
        assert stats.clip_fraction == 0.0  # the ratio against the learner's own log-probs starts at 1
        # The mismatch, k3 of KL(pi_rollout || pi_old) per token: w - ln w - 1 with w = pi_old / pi_rollout.
        assert stats.mismatch_kl == pytest.approx(sum(w - math.log(w) - 1 for w in ratios) / 3, rel=1e-5)
        assert stats.is_ratio_mean == pytest.approx(sum(ratios) / 3, rel=1e-5)
        assert stats.is_ratio_max == pytest.approx(0.5 * math.exp(2), rel=1e-5)
        assert stats.is_truncated_fraction == pytest.approx(1 / 3)  # a2 only: b1's weight is exactly the cap


def test_entropy_is_logged_at_policy_tokens_only() -> None:
    """The update's entropy is the mean over policy tokens of each next-token distribution's entropy, from the
    model before the step; observations and prompts do not count."""
    assert float(token_entropy(torch.zeros(VOCAB))) == pytest.approx(math.log(VOCAB))  # uniform: log V
    peaked = torch.full((VOCAB,), -30.0)
    peaked[3] = 30.0
    assert float(token_entropy(peaked)) == pytest.approx(0.0, abs=1e-20)
    samples = batch()
    model = tiny_llama()
    collated = collate(samples)
    with torch.no_grad():
        logits = model(input_ids=collated.input_ids, attention_mask=collated.attention_mask).logits
    expected = token_entropy(logits)[collated.mask.bool()].mean()
    stats = Learner(model, LearnerConfig(lr=1e-3, micro_batch_size=3, precision="fp32")).update(samples)
    assert stats.entropy == pytest.approx(float(expected), rel=1e-5)
    assert 0 < stats.entropy < math.log(VOCAB)


def test_clipped_ratio_equals_hand_computed_terms() -> None:
    # The tokens above with old log-probs from before an update: ratios 1.5, 3.69 (A = 2) and 2 (A = -1).
    logp = torch.tensor([math.log(0.75), math.log(0.5), math.log(0.5)])
    old = torch.tensor([math.log(0.5), -2.0, math.log(0.25)])
    adv = torch.tensor([2.0, 2.0, -1.0])
    terms = grpo_terms(logp, old, adv)
    torch.testing.assert_close(terms.loss, torch.tensor([-2.4, -2.4, 2.0]))  # -min(r A, clip(r, 0.8, 1.2) A)
    assert terms.clipped.tolist() == [1.0, 1.0, 0.0]
    weighted = grpo_terms(logp, old, adv, is_weights=torch.tensor([0.5, 2.0, 1.0]))
    torch.testing.assert_close(weighted.loss, torch.tensor([-1.2, -4.8, 2.0]))
    assert weighted.clipped.tolist() == [1.0, 1.0, 0.0]  # the weight scales the term, not the clip decision


def test_clip_higher_lets_a_positive_token_grow_further() -> None:
    logp, old, adv = torch.tensor([math.log(0.75)]), torch.tensor([math.log(0.6)]), torch.tensor([1.0])  # r = 1.25
    low, high = grpo_terms(logp, old, adv), grpo_terms(logp, old, adv, clip_high=0.28)
    assert float(low.loss) == pytest.approx(-1.2) and float(low.clipped) == 1.0
    assert float(high.loss) == pytest.approx(-1.25) and float(high.clipped) == 0.0


def test_truncated_importance_weights() -> None:
    old, rollout = torch.log(torch.tensor([0.5, 0.5, 0.1])), torch.log(torch.tensor([0.5, 0.1, 0.4]))
    torch.testing.assert_close(truncated_is_weights(old, rollout, 2.0), torch.tensor([1.0, 2.0, 0.25]))
    torch.testing.assert_close(truncated_is_weights(old, rollout, None), torch.ones(3))  # no correction


def with_learner_logprobs(samples: list[Sample], model: nn.Module) -> list[Sample]:
    """The samples with the model's own log-probs recorded as the sampler's (a sampler that matches exactly)."""
    out = []
    with torch.no_grad():
        for s in samples:
            logp = forward.logprobs(model, collate([s]))[0].tolist()
            out.append(Sample(token_ids=s.token_ids, mask=s.mask, advantages=s.advantages,
                              logprobs=[0.0] + [lp if m else 0.0 for lp, m in zip(logp, s.mask[1:], strict=True)],
                              source=s.source))
    return out


def test_rollout_logprobs_equal_to_the_learners_give_the_recompute_update() -> None:
    samples = with_learner_logprobs(batch(), tiny_llama())
    runs = {}
    for old in ("recompute", "rollout"):
        config = LearnerConfig(lr=1e-2, micro_batch_size=3, old_logprobs=old, precision="fp32", max_grad_norm=None)
        learner = Learner(tiny_llama(), config)
        stats = learner.update(samples)
        runs[old] = ({k: p.grad.clone() for k, p in learner.model.named_parameters()}, stats)
    (plain, s_plain), (weighted, s_weighted) = runs["recompute"], runs["rollout"]
    assert s_weighted.loss == pytest.approx(s_plain.loss, rel=1e-5, abs=1e-7)
    for name in plain:
        torch.testing.assert_close(weighted[name], plain[name], rtol=1e-4, atol=1e-7, msg=name)
    assert s_plain.mismatch_kl is None and s_plain.is_ratio_mean is None  # recompute reads no rollout log-probs
    assert s_weighted.mismatch_kl == pytest.approx(0.0, abs=1e-6)
    assert s_weighted.is_ratio_mean == pytest.approx(1.0, abs=1e-5)
    assert s_weighted.is_ratio_max == pytest.approx(1.0, abs=1e-5)
    assert s_weighted.is_truncated_fraction == 0.0


def test_the_clip_acts_from_the_second_update_of_a_batch() -> None:
    samples = batch()  # rollout log-probs -1 everywhere: far from the learner's (about -ln 32)
    one = Learner(tiny_llama(), LearnerConfig(lr=5e-2, precision="fp32")).update(samples)
    assert one.mismatch_kl is not None and one.mismatch_kl > 0.5  # `auto` read the rollout log-probs
    assert one.clip_fraction == 0.0  # the ratio is against the learner's own log-probs, not the sampler's
    two = Learner(tiny_llama(), LearnerConfig(lr=5e-2, precision="fp32", epochs=2, minibatches=2)).update(samples)
    assert two.optimizer_steps == 4 and two.clip_fraction > 0  # later steps moved the policy past the clip
    assert two.mismatch_kl == pytest.approx(one.mismatch_kl, rel=1e-5)  # measured against the batch's old policy


def test_a_sample_keeps_a_missing_sampler_logprob_missing() -> None:
    from gymbox.environments.records import Turn
    from tests.reward_fixtures import trajectory

    recorded = Turn(index=0, token_ids=[5, 6, 7], loss_mask=[1, 1, 0], logprobs=[-0.5, 0.0, None])
    unrecorded = Turn(index=1, token_ids=[8, 9], loss_mask=[1, 0], logprobs=[None, None])
    t = trajectory([recorded]).model_copy(update={"prompt_ids": [1, 2]})
    assert sample_of(t, 1.0).logprobs == [0.0, 0.0, -0.5, 0.0] and sample_of(t, 1.0).has_rollout_logprobs
    gap = sample_of(trajectory([recorded, unrecorded]).model_copy(update={"prompt_ids": [1, 2]}), 1.0)
    assert gap.logprobs == [0.0, 0.0, -0.5, 0.0, 0.0, None] and not gap.has_rollout_logprobs  # not a log-prob of 0


def test_rollout_logprobs_are_required_by_rollout_and_optional_for_auto() -> None:
    samples = batch()
    gap = samples[2]
    samples[2] = Sample(token_ids=gap.token_ids, mask=gap.mask, advantages=gap.advantages,
                        logprobs=[None if m else 0.0 for m in gap.mask], source=gap.source)  # a sampler without them
    learner = Learner(tiny_llama(), LearnerConfig(old_logprobs="rollout", precision="fp32"))
    with pytest.raises(ValueError, match=r"old_logprobs: rollout needs .* \(s2\).*old_logprobs: recompute"):
        learner.update(samples)
    assert learner.step == 0
    stats = Learner(tiny_llama(), LearnerConfig(precision="fp32")).update(samples)  # auto: recompute
    assert stats.optimizer_steps == 1 and stats.mismatch_kl is None


def test_kl_penalty_pulls_towards_the_reference() -> None:
    config = LearnerConfig(lr=1e-2, precision="fp32", kl_coef=0.5, epochs=3)
    learner = Learner(tiny_llama(), config)
    first = learner.update(batch())
    assert first.kl > 0  # after the first of three epochs the policy has left the reference
    assert learner.reference is not None
    assert all(not p.requires_grad for p in learner.reference.parameters())


def test_resume_continues_identically(tmp_path) -> None:
    config = LearnerConfig(lr=1e-2, epochs=2, minibatches=2, micro_batch_size=3, precision="fp32")
    straight = Learner(tiny_llama(), config)
    straight.update(batch(seed=1))
    torch.manual_seed(123)  # the loop's own randomness must be restored too
    straight.update(batch(seed=2))
    after_straight, draw_straight = params(straight.model), torch.rand(3)

    first = Learner(tiny_llama(), config)
    first.update(batch(seed=1))
    torch.manual_seed(123)
    path = checkpoint.save(first, tmp_path, extra={"batch": 1})
    assert checkpoint.latest(tmp_path) == path
    torch.manual_seed(999)  # disturb everything the checkpoint holds
    resumed = Learner(tiny_llama(seed=7), config)
    assert checkpoint.restore(resumed, path) == {"batch": 1}
    assert resumed.step == first.step == 4
    resumed.update(batch(seed=2))
    for name, value in params(resumed.model).items():
        assert torch.equal(value, after_straight[name]), name
    assert torch.equal(torch.rand(3), draw_straight)


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path) -> None:
    learner = Learner(tiny_llama(), LearnerConfig(precision="fp32"))
    good = checkpoint.save(learner, tmp_path)
    learner.update(batch())
    (tmp_path / ".step-000001.partial" / "model").mkdir(parents=True)  # what a kill during the write leaves
    assert checkpoint.latest(tmp_path) == good
    assert checkpoint.save(learner, tmp_path).name == "step-000001"


@pytest.mark.parametrize(("samples", "message"), [
    ([], "empty batch"),
    ([Sample(token_ids=[1, 2], mask=[0, 0], advantages=[0, 0], logprobs=[0, 0])], "no policy tokens"),
    ([Sample(token_ids=[1, 2], mask=[0, 1], advantages=[0, math.nan], logprobs=[0, 0])], "non-finite"),
])
def test_bad_batches_are_refused_before_compute(samples: list[Sample], message: str) -> None:
    learner = Learner(tiny_llama(), LearnerConfig(precision="fp32"))
    before = params(learner.model)
    with pytest.raises(ValueError, match=message):
        learner.update(samples)
    assert learner.step == 0 and all(torch.equal(v, before[k]) for k, v in params(learner.model).items())


def test_collate_shifts_for_next_token_prediction() -> None:
    s = Sample(token_ids=[5, 6, 7], mask=[0, 1, 1], advantages=[0, 1, 1], logprobs=[0, -1, -2])
    c = collate([s, Sample(token_ids=[1, 2], mask=[0, 1], advantages=[0, 3], logprobs=[0, -3])], pad_id=0)
    assert c.input_ids.tolist() == [[5, 6], [1, 2]]
    assert c.targets.tolist() == [[6, 7], [2, 0]]
    assert c.mask.tolist() == [[1, 1], [1, 0]]
    assert c.attention_mask.tolist() == [[1, 1], [1, 1]]
    assert c.logprobs.tolist() == [[-1, -2], [-3, 0]]


def group_batch(seed: int = 3) -> list[Sample]:
    """Two groups of four rollouts; each group's rollouts share a 20-token prompt and differ after it."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for group in range(2):
        prompt = torch.randint(0, VOCAB, (20,), generator=g).tolist()
        for i in range(4):
            reply = torch.randint(0, VOCAB, (3 + i,), generator=g).tolist()
            obs, reply2 = torch.randint(0, VOCAB, (2,), generator=g).tolist(), [int(group), i]
            ids = prompt + reply + obs + reply2
            mask = [0] * 20 + [1] * len(reply) + [0, 0] + [1, 1]
            adv = float(i) - 1.5
            samples.append(Sample(token_ids=ids, mask=mask, advantages=[adv * m for m in mask],
                                  logprobs=[-1.0 * m for m in mask], source=f"g{group}-{i}"))
    return samples


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_sharing_the_prompt_changes_nothing_but_the_cost(aggregation: str) -> None:
    from gymbox.agent.learner.batch import collate
    from gymbox.agent.learner.forward import shared_prefix

    assert shared_prefix(collate(group_batch()[:4])) == 20
    runs = []
    for share in (False, True):
        config = LearnerConfig(lr=1e-2, micro_batch_size=4, aggregation=aggregation, old_logprobs="rollout",
                               precision="fp32", share_prefix=share)
        learner = Learner(tiny_llama(), config)
        stats = learner.update(group_batch())
        runs.append(({k: p.grad.clone() for k, p in learner.model.named_parameters()}, stats))
    (plain, s_plain), (shared, s_shared) = runs
    assert s_shared.loss == pytest.approx(s_plain.loss, rel=1e-5, abs=1e-7)
    assert s_shared.clip_fraction == s_plain.clip_fraction
    assert s_shared.entropy == pytest.approx(s_plain.entropy, rel=1e-5)
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_checkpointing_gives_the_loss_and_gradients_of_the_default() -> None:
    runs = []
    for checkpointing in (False, True):
        config = LearnerConfig(lr=1e-2, micro_batch_size=4, old_logprobs="rollout", precision="fp32",
                               gradient_checkpointing=checkpointing)
        learner = Learner(tiny_llama(), config)
        assert learner.model.is_gradient_checkpointing == checkpointing
        assert config.share_prefix == (not checkpointing)  # the default yields to checkpointing
        stats = learner.update(group_batch())  # groups sharing a 20-token prompt: the case sharing would run
        runs.append(({k: p.grad.clone() for k, p in learner.model.named_parameters()}, stats))
    (plain, s_plain), (checkpointed, s_checkpointed) = runs
    assert s_checkpointed.loss == pytest.approx(s_plain.loss, rel=1e-5, abs=1e-7)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_sharing_the_prompt_under_gradient_checkpointing_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="share_prefix: false"):
        LearnerConfig(gradient_checkpointing=True, share_prefix=True)
    assert not LearnerConfig(gradient_checkpointing=True, share_prefix=False).share_prefix


def test_a_resumed_run_keeps_the_initial_model_as_its_kl_reference(tmp_path, smollm2) -> None:
    from transformers import AutoTokenizer

    initial = tmp_path / "initial"
    tiny_llama().save_pretrained(initial, safe_serialization=True)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(initial)  # its pad id (2) is in the tiny vocabulary
    config = LearnerConfig(lr=1e-2, precision="fp32", kl_coef=0.5)
    first = Learner.from_pretrained(str(initial), config, device="cpu")
    start = params(first.reference)
    for seed in (1, 2):
        first.update(batch(seed=seed))
    saved = checkpoint.save(first, tmp_path / "checkpoints", extra={"step": 2})
    trained = params(first.model)
    assert any(not torch.equal(trained[k], start[k]) for k in start)

    resumed, extra = checkpoint.resume(saved, "unused: the checkpoint records the run's start", config, device="cpu")
    assert extra == {"step": 2} and resumed.initial == str(initial.resolve())
    assert all(torch.equal(v, start[k]) for k, v in params(resumed.reference).items())  # not the checkpoint's
    assert all(torch.equal(v, trained[k]) for k, v in params(resumed.model).items())
    assert resumed.update(batch(seed=3)).kl == pytest.approx(first.update(batch(seed=3)).kl, rel=1e-5)
    # Resumed once more, from a checkpoint of the resumed run: still the initial model.
    again, _ = checkpoint.resume(checkpoint.save(resumed, tmp_path / "checkpoints"), str(initial), config)
    assert all(torch.equal(v, start[k]) for k, v in params(again.reference).items())


def test_resuming_with_a_kl_penalty_says_when_the_initial_model_is_gone(tmp_path, smollm2) -> None:
    from transformers import AutoTokenizer

    initial = tmp_path / "initial"
    tiny_llama().save_pretrained(initial, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    tokenizer.save_pretrained(initial)
    learner = Learner.from_pretrained(str(initial), LearnerConfig(precision="fp32", kl_coef=0.1), device="cpu")
    saved = checkpoint.save(learner, tmp_path / "checkpoints", tokenizer=tokenizer)
    shutil.rmtree(initial)
    with pytest.raises(FileNotFoundError, match="KL reference"):
        checkpoint.resume(saved, str(initial), LearnerConfig(precision="fp32", kl_coef=0.1))
    resumed, _ = checkpoint.resume(saved, str(initial), LearnerConfig(precision="fp32"))  # no reference needed
    assert resumed.reference is None
