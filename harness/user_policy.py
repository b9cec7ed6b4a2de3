"""`--user-policy`: the simulated user of τ²-bench episodes, with a named model served over HTTP for the run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gymbox.agent.models import model_path

USER_CONTEXT = 8192  # tokens: τ²'s guidelines, the scenario and the conversation; SmolLM2's own limit
HELP = ("τ²-bench suites: the simulated user. `default` or `base` (gymbox's models), a model folder or name: served "
        "by vLLM on a loopback port for the run; openai:URL#MODEL: an OpenAI-compatible endpoint you run; gold: a "
        "scripted user doing the task's reference user actions (tests, smoke runs)")


def served(spec: str) -> bool:
    """Whether `spec` names a model for the run to serve (not an endpoint or the scripted user)."""
    return spec != "gold" and not spec.startswith("openai:")


@contextmanager
def user_endpoint(spec: str | None, log: Path, runtime: str) -> Iterator[str | None]:
    """The user spec the environments take: endpoints and `gold` as given; a model served (with tool calls, for
    telecom's phone) until the block ends, as `openai:URL/v1#NAME`, where NAME is the model's folder name, which
    each trajectory's provenance then records."""
    if spec is None or not served(spec):
        yield spec
        return
    if runtime == "docker":
        raise ValueError(f"--user-policy {spec}: a user served by the run listens on this machine's loopback, which "
                         "the docker runtime's containers (no network) cannot reach; use --runtime process or "
                         "local, or serve the model where they can reach it and pass openai:URL#MODEL")
    from gymbox.agent.vllm_server import vllm_server

    name = Path(model_path(spec)).name
    with vllm_server(spec, log, name=name, max_model_len=USER_CONTEXT, tools=True) as url:
        yield f"openai:{url}/v1#{name}"
