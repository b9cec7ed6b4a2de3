"""gymbox environments inside TRL's `GRPOTrainer`: `environment_factory(SUITE)` gives the class TRL instantiates per
rollout (its public methods are the tasks' tools, with signatures and docstrings built from their JSON schemas),
`dataset(SUITE)` the rows its `reset(**row)` takes, and `get_reward()` scores the episode with a gymbox reward spec.

    from gymbox.integrations.trl import dataset, environment_factory
    trainer = GRPOTrainer(model=..., args=GRPOConfig(...), train_dataset=dataset("echo-demo:train"),
                          environment_factory=environment_factory("echo-demo:train"))
"""

from __future__ import annotations

import inspect
import keyword
import time
from collections.abc import Callable
from typing import Any, ClassVar

from gymbox.environments.api.models import Action, Message, ToolCall, ToolSpec
from gymbox.environments.api.sync_client import SyncEnvClient
from gymbox.environments.records import Provenance, Trajectory, Turn
from gymbox.environments.runtime import sync_client
from gymbox.rewards.score import score
from gymbox.tasks.spec import TaskSpec
from gymbox.tasks.suites import load_suite

JSON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                               "object": dict}
RESERVED = {"reset", "get_reward"}  # TRL's own methods of an environment: no tool may take these names


def dataset(suite: str, *, limit: int | None = None, seed: int = 0) -> Any:
    """A `datasets.Dataset` of the suite's tasks for `GRPOTrainer(train_dataset=...)`: an empty user turn as the
    prompt (TRL appends what `reset` returns, the environment's first observation), the task and its seed."""
    from datasets import Dataset

    tasks = list(load_suite(suite).tasks)[:limit]
    return Dataset.from_list([{"prompt": [{"role": "user", "content": ""}], "task": task.model_dump_json(),
                               "seed": seed + i} for i, task in enumerate(tasks)])


def environment_factory(suite: str, *, runtime: str = "local", url: str | None = None, reward: str | None = None,
                        **runtime_options: Any) -> type[GymboxEnvironment]:
    """The environment class for `GRPOTrainer(environment_factory=...)`, for the tasks of `suite` played on
    `runtime` (local, process, docker) or on a running server at `url`, scored by the reward spec file `reward`
    (default: the episode's outcome). Its tools are learned by resetting the suite's first task once."""
    tasks = list(load_suite(suite).tasks)
    if not tasks:
        raise ValueError(f"suite {suite!r} has no tasks")
    probe = _open(tasks[0], runtime, url, runtime_options)
    try:
        tools = probe.reset(tasks[0], tasks[0].seed).tools or []
    finally:
        probe.close()
    attributes: dict[str, Any] = {"suite": suite, "runtime": runtime, "url": url, "reward_spec": reward,
                                  "runtime_options": runtime_options,
                                  "tool_names": tuple(t.function.name for t in tools)}
    for tool in tools:
        attributes[tool.function.name] = tool_method(tool)
    name = "".join(part.capitalize() for part in tasks[0].env.split("@")[0].split("_")) + "Environment"
    return type(name, (GymboxEnvironment,), attributes)


class GymboxEnvironment:
    """One rollout at a time: `reset(**row)` starts the row's task, the tool methods step it, `get_reward()` scores
    it. Built by `environment_factory`, which adds the tool methods."""

    suite: ClassVar[str]
    runtime: ClassVar[str]
    url: ClassVar[str | None]
    reward_spec: ClassVar[str | None]
    runtime_options: ClassVar[dict[str, Any]]
    tool_names: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self._client: SyncEnvClient | None = None
        self._task: TaskSpec | None = None

    def reset(self, **row: Any) -> str:
        """Start the row's task (a new episode); the environment's first observation, as text."""
        self._close()
        task = TaskSpec.model_validate_json(row["task"])
        self._client = _open(task, self.runtime, self.url, self.runtime_options)
        self._task, self._seed, self._started = task, int(row.get("seed") or 0), time.time()
        observation = self._client.reset(task, self._seed)
        names = tuple(t.function.name for t in observation.tools or [])
        if names != self.tool_names:
            raise ValueError(f"task {task.id} has the tools {list(names)}, not {list(self.tool_names)}: TRL fixes "
                             "an environment's tools when the trainer starts, so one factory serves tasks that share "
                             "their tools (give TRL a dict of factories, one per tool set, for a mixed suite)")
        self._prompt, self._tools = list(observation.messages), list(observation.tools or [])
        self._turns: list[Turn] = []
        self._signals: dict[str, float] = {}
        self._terminated = self._truncated = False
        return _text(observation.messages)

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """Step the episode with one call to tool `name`; the environment's answer, as text."""
        if self._client is None or self._task is None:
            raise RuntimeError("call reset(**row) before the tools: no episode has started")
        if self._terminated or self._truncated:
            return "The episode has ended; no further tool calls are taken."
        action = Action(tool_calls=[ToolCall.make(name, {k: v for k, v in arguments.items() if v is not None})])
        result = self._client.step(action, turn=len(self._turns))
        self._turns.append(Turn(index=len(self._turns), action=action, observation=result.observation.messages,
                                reward=result.reward, signals=result.signals, terminated=result.terminated,
                                truncated=result.truncated))
        self._signals, self._terminated, self._truncated = result.signals, result.terminated, result.truncated
        return _text(result.observation.messages)

    def get_reward(self) -> float:
        """The episode's reward by the reward spec; an episode the model left unfinished is graded first, as the
        harness grades one at its turn limit. An infrastructure failure raises: it is never a reward."""
        if self._client is None or self._task is None:
            raise RuntimeError("get_reward() before reset(**row): no episode to score")
        if not (self._terminated or self._truncated):
            self._signals, self._truncated = self._client.grade().signals, True
        trajectory = Trajectory(
            id=f"{self._task.id}#{self._seed}", task=self._task, group=self._task.id, sample=0, base_seed=self._seed,
            seed=self._seed, provenance=Provenance(env=self._task.env, runtime=self.runtime, policy="trl"),
            prompt=self._prompt, tools=self._tools, turns=self._turns, terminated=self._terminated,
            truncated=self._truncated, signals=self._signals, started_at=self._started)
        scored = score(trajectory, self.reward_spec)
        self._close()
        if scored.error is not None:
            raise RuntimeError(f"task {self._task.id}: the reward could not be computed ({scored.error.message})")
        return float(scored.reward or 0.0)

    def _close(self) -> None:
        """End the current episode, if any (private: TRL offers every public method as a tool)."""
        if self._client is not None:
            self._client.close()
            self._client = None


def tool_method(tool: ToolSpec) -> Callable[..., str]:
    """A method that calls `tool`, with the signature, annotations and Google-style docstring TRL (through
    transformers' `get_json_schema`) reads the tool's schema back from."""
    spec = tool.function
    if spec.name in RESERVED or not spec.name.isidentifier() or keyword.iskeyword(spec.name):
        raise ValueError(f"tool {spec.name!r} cannot be a Python method name, which TRL needs")
    properties: dict[str, Any] = (spec.parameters or {}).get("properties", {})
    required = set((spec.parameters or {}).get("required", []))
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {"return": str}
    lines = [spec.description or spec.name, "", "Args:"]
    for arg, schema in properties.items():
        kind = JSON_TYPES.get(schema.get("type", "string"), str)
        hint = kind if arg in required else kind | None
        default = inspect.Parameter.empty if arg in required else None
        parameters.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint))
        annotations[arg] = hint
        lines.append(f"    {arg}: {(schema.get('description') or arg).replace(chr(10), ' ')}")
    if not properties:
        lines = lines[:1]
    lines += ["", "Returns:", "    The environment's answer."]

    def call(self: GymboxEnvironment, **arguments: Any) -> str:
        return self._call(spec.name, arguments)

    call.__name__ = call.__qualname__ = spec.name
    call.__doc__ = "\n".join(lines)
    call.__annotations__ = annotations
    call.__signature__ = inspect.Signature(parameters, return_annotation=str)  # type: ignore[attr-defined]
    return call


def _open(task: TaskSpec, runtime: str, url: str | None, options: dict[str, Any]) -> SyncEnvClient:
    if url is not None:
        return SyncEnvClient.connect(url)
    return sync_client(runtime, task.env, task=task, **options)


def _text(messages: list[Message]) -> str:
    return "\n\n".join(m.content for m in messages if m.content)
