"""Ray actors: one policy server (an engine shared by every episode) and environment workers running episodes.

Actor classes are plain classes here; `ray.remote` wraps them where they are placed (see `ray_runner`), so this
module imports without starting Ray and its classes can be used in-process.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from gymbox.agent.policy import Completion, Policy, PolicyError, Prompt, Sampling
from gymbox.agent.spec import PolicySpec
from gymbox.environments.records import Provenance, Trajectory
from gymbox.environments.runtime import make_runtime
from gymbox.harness import runlog
from gymbox.harness.episode import EpisodeConfig, sampling_record
from gymbox.harness.rollout import attempt, runtime_provenance
from gymbox.tasks.spec import TaskSpec


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


class PolicyServer:
    """Holds the policy built from its spec; episodes on every worker call `generate` concurrently."""

    def __init__(self, spec: PolicySpec) -> None:
        runlog.redirect_process()  # the engine's output (and its processes') into the run's log, if there is one
        self.policy = spec.build()
        self.requests = 0  # generations asked for so far: progress a caller can wait on

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        self.requests += 1
        return await self.policy.generate(prompt, sampling)

    def requested(self) -> int:
        return self.requests

    async def load_weights(self, path: str, version: str) -> None:
        await self.policy.load_weights(path, version)

    def info(self) -> dict[str, Any]:
        return {"name": self.policy.name, "weights_version": self.policy.weights_version,
                "max_model_len": self.policy.max_model_len, "describe": self.policy.describe(), "node": node_id(),
                "pid": os.getpid()}

    def healthy(self) -> bool:
        return self.policy.healthy()

    async def close(self) -> None:
        await self.policy.close()


class RemotePolicy(Policy):
    """A policy whose generations happen in a `PolicyServer` actor; the tokenizer is loaded here, by the episode."""

    def __init__(self, handle: Any, info: dict[str, Any], tokenizer: Any) -> None:
        self.handle = handle
        self.name = info["name"]
        self.weights_version = info["weights_version"]
        self.max_model_len = info["max_model_len"]
        self.tokenizer = tokenizer
        self._info = info

    async def generate(self, prompt: Prompt, sampling: Sampling) -> Completion:
        from ray.exceptions import RayActorError

        try:
            return await self.handle.generate.remote(prompt, sampling)
        except RayActorError as err:
            raise PolicyError(f"the policy actor died ({err.__class__.__name__}); its episodes are recorded as "
                              "infrastructure failures: see the Ray logs (`ray logs`) for why it stopped") from err

    def describe(self) -> dict[str, Any]:
        return dict(self._info["describe"])


class EnvWorker:
    """Runs episodes of one environment on its own runtime, asking the policy actor for every generation."""

    def __init__(self, env: str, runtime: str, runtime_options: dict[str, Any], policy: Any,
                 policy_info: dict[str, Any], spec: PolicySpec, config: EpisodeConfig) -> None:
        runlog.redirect_process()
        self.policy = RemotePolicy(policy, policy_info, spec.load_tokenizer())
        self.runtime = make_runtime(runtime, env, **runtime_options)
        self.config = config
        self.provenance: Provenance | None = None
        self._starting = asyncio.Lock()

    async def _ready(self) -> Provenance:
        async with self._starting:  # the first episodes all arrive at once; start the runtime once
            if self.provenance is None:
                await self.runtime.start()
                self.provenance = await runtime_provenance(self.runtime, self.policy, self.config)
        return self.provenance

    async def attempt(self, task: TaskSpec, sample: int, base_seed: int,
                      config: EpisodeConfig | None = None) -> Trajectory:
        """One try of one episode, unscored (the driver retries and scores); `config` overrides the worker's
        episode settings (greedy evaluation during training)."""
        provenance = await self._ready()
        if config is not None:
            provenance = provenance.model_copy(update={"sampling": sampling_record(config)})
        return await attempt(self.runtime, task, self.policy, config=config or self.config, sample=sample,
                             base_seed=base_seed, provenance=provenance)

    def set_policy(self, handle: Any, info: dict[str, Any]) -> None:
        """Send generations to `handle`, a policy actor started in place of a dead one, from now on."""
        self.policy.handle, self.policy._info = handle, info
        self.set_weights_version(info["weights_version"])

    def set_weights_version(self, version: str) -> None:
        """Record `version` in the provenance of the episodes that start from now on."""
        self.policy.weights_version = version
        if self.provenance is not None:
            self.provenance = self.provenance.model_copy(update={"weights_version": version})

    def node(self) -> str:
        return node_id()

    def pid(self) -> int:
        return os.getpid()

    async def stop(self) -> None:
        await self.runtime.stop()
