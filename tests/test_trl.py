"""gymbox environments in TRL's GRPOTrainer: tool methods whose schemas are the tools', episodes that play and score
as gymbox's own, and two real training steps with TRL's own generation on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils import get_json_schema

from gymbox.environments.runtime import LocalRuntime
from gymbox.integrations.trl import dataset, environment_factory, tool_method
from gymbox.tasks.suites import load_suite

SUITE = "echo-demo:train"


def test_tool_methods_carry_the_tools_schemas() -> None:
    import asyncio

    async def tools() -> list:
        async with LocalRuntime("echo") as rt:
            client = await rt.client()
            try:
                return (await client.reset(load_suite(SUITE).tasks[0], 0)).tools or []
            finally:
                await client.close()

    env = environment_factory(SUITE)()
    for tool in asyncio.run(tools()):
        schema = get_json_schema(getattr(env, tool.function.name))["function"]
        assert schema["name"] == tool.function.name and schema["description"] == tool.function.description
        expected = tool.function.parameters or {}
        assert schema["parameters"]["properties"].keys() == expected.get("properties", {}).keys()
        assert set(schema["parameters"].get("required", [])) == set(expected.get("required", []))
        for name, prop in expected.get("properties", {}).items():
            assert schema["parameters"]["properties"][name]["type"] == prop["type"]


def test_an_episode_plays_and_scores_as_in_gymbox() -> None:
    env = environment_factory(SUITE)()
    rows = dataset(SUITE, limit=2)
    task = load_suite(SUITE).tasks[0]
    assert task.instruction in env.reset(**rows[0])
    for _ in range(task.payload["times"]):
        assert env.echo(word=task.payload["word"]) == task.payload["word"]
    assert env.submit() == "Submitted."
    assert env.echo(word="late") == "The episode has ended; no further tool calls are taken."
    assert env.get_reward() == 1.0
    env.reset(**rows[1])  # left unfinished: graded as the harness grades a turn limit
    assert env.get_reward() == 0.0


def test_a_tool_that_cannot_be_a_method_and_a_call_before_reset_are_refused() -> None:
    from gymbox.environments.api.models import ToolSpec

    with pytest.raises(ValueError, match="cannot be a Python method name"):
        tool_method(ToolSpec.make("get-weather", "weather"))
    with pytest.raises(RuntimeError, match=r"call reset\(\*\*row\) before the tools"):
        environment_factory(SUITE)().submit()


@pytest.mark.slow  # TRL generates with transformers on the CPU: about a minute
def test_grpo_trainer_trains_two_steps_on_a_gymbox_environment(tmp_path: Path) -> None:
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    from gymbox.agent.models import model_path

    model = model_path("default")
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    # TRL parses tool calls with the parser of a chat template it knows; SmolLM2's ChatML tokens fit Qwen 2.5's.
    tokenizer.chat_template = qwen2_5_chat_template
    played: list[float] = []

    class Counted(environment_factory(SUITE)):  # type: ignore[misc]
        def get_reward(self) -> float:
            played.append(super().get_reward())
            return played[-1]

    def brevity(completions: list, **_: object) -> list[float]:
        """A second reward, so that the update has a signal even when SmolLM2 never solves a task."""
        return [-len(str(c)) / 1000 for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=48, learning_rate=1e-5, logging_steps=1, report_to="none", use_cpu=True,
                      bf16=False, save_strategy="no", seed=0, max_tool_calling_iterations=4)
    trainer = GRPOTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=dataset(SUITE, limit=4),
                          environment_factory=Counted, reward_funcs=[brevity])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all("rewards/Counted/mean" in entry for entry in logged)
    assert len(played) == 4 and all(r in (0.0, 1.0) for r in played)  # every rollout was a gymbox episode, scored
    assert any(not (p.detach() == before[n]).all() for n, p in trainer.model.named_parameters())
