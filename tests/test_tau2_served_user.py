"""`--user-policy MODEL`: a τ²-bench user played by a model the run serves with vLLM, and recorded as such."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gymbox.agent.spec import PolicySpec
from gymbox.harness.episode import EpisodeConfig, make_provenance, user_provenance
from gymbox.harness.evaluate import USER_LOG, EvalRun, evaluate
from gymbox.harness.store import TrajectoryStore
from gymbox.harness.user_policy import served, user_endpoint
from gymbox.tasks import load_suite
from gymbox.tasks.toolcall.tau2 import with_user


@pytest.mark.slow  # vLLM's server starts (about 40 s) and plays the user
async def test_a_model_user_is_served_for_the_run_and_recorded(tmp_path: Path) -> None:
    # Two agent turns of the gold actions: a model user need not follow the gold script, so the episode ends
    # at the turn limit (truncated, not an error), which is enough to see the user answer.
    run = EvalRun(suite="tau2-airline:test", policy=PolicySpec.parse("expert"), limit=1, out=tmp_path,
                  user_policy="base", workers=1, config=EpisodeConfig(max_turns=2))
    summary = await evaluate(run)
    [trajectory] = TrajectoryStore(tmp_path / "trajectories").iter()
    assert trajectory.error is None and summary.overall.masked == 0  # the user's endpoint answered throughout
    user = trajectory.provenance.user
    assert user is not None and user.startswith("openai:http://127.0.0.1:") and user.endswith(
        "/v1#SmolLM2-135M-Instruct")
    opening = trajectory.prompt[-1]  # the served model's first message, after the agent's fixed greeting
    assert opening.role == "user" and (opening.content or "").strip()
    assert (tmp_path / USER_LOG).stat().st_size > 0  # the server's output went to the run's log
    url = user.removeprefix("openai:").partition("#")[0].removesuffix("/v1")
    with pytest.raises(httpx.TransportError):  # the run's end stopped its server
        httpx.get(f"{url}/health", timeout=2)


def test_endpoints_and_the_scripted_user_pass_through_unserved(tmp_path: Path) -> None:
    for spec in ("gold", "openai:http://host:8000/v1#m", None):
        assert spec is None or not served(spec)
        with user_endpoint(spec, tmp_path / USER_LOG, "docker") as endpoint:
            assert endpoint == spec
    assert not (tmp_path / USER_LOG).exists()


def test_a_served_user_is_refused_with_the_docker_runtime(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"containers .* cannot reach; use --runtime process"), \
            user_endpoint("default", tmp_path / USER_LOG, "docker"):
        pass


def test_provenance_names_the_user_of_tau2_tasks_only() -> None:
    base = make_provenance("toolcall@v1", "local", policy="p", weights_version="0", config=EpisodeConfig())
    tau2 = load_suite("tau2-retail").tasks[0]
    assert user_provenance(base, with_user([tau2], "gold")[0]).user == "gold"
    assert user_provenance(base, with_user([tau2], {"kind": "replies", "replies": ["hi"]})[0]).user == "replies"
    assert user_provenance(base, load_suite("echo-demo").tasks[0]).user is None
