"""Runtimes: where environment servers run: in-process, in a child process, or in a container per episode."""

from __future__ import annotations

from typing import Any

from gymbox.environments.api.env import Environment
from gymbox.environments.runtime.base import Runtime
from gymbox.environments.runtime.containers import ContainerLimits
from gymbox.environments.runtime.docker import DockerRuntime
from gymbox.environments.runtime.local import LocalRuntime
from gymbox.environments.runtime.process import ProcessRuntime

RUNTIMES: dict[str, type[Runtime]] = {"local": LocalRuntime, "process": ProcessRuntime, "docker": DockerRuntime}


def make_runtime(kind: str, env: str | type[Environment], **options: Any) -> Runtime:
    """The runtime of `kind` for an environment id, `module:Class` or class."""
    try:
        cls = RUNTIMES[kind]
    except KeyError:
        raise ValueError(f"no runtime {kind!r}; choose one of {', '.join(RUNTIMES)}") from None
    return cls(env, **options)


__all__ = ["RUNTIMES", "ContainerLimits", "DockerRuntime", "LocalRuntime", "ProcessRuntime", "Runtime", "make_runtime"]
