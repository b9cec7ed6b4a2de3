"""The engine dtype chosen from the CPU's flags (float32 everywhere, for the reason the flags give), and the CPUs
its threads are bound to."""

from __future__ import annotations

from pathlib import Path

import pytest

from gymbox.agent.cpu import cpu_flags, engine_dtype, omp_binding

EPYC_AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}  # the AMD EPYC VMs that expose AVX2 only
XEON_VNNI = EPYC_AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}  # AVX-512 without bf16 (Cascade Lake)
COOPER = XEON_VNNI | {"avx512_bf16"}
SAPPHIRE = COOPER | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize(("flags", "dtype", "why"), [
    (EPYC_AVX2, "float32", "this CPU has no native bf16 (AVX2)"),
    (XEON_VNNI, "float32", "this CPU has no native bf16 (AVX-512)"),
    (set(), "float32", "this CPU has no native bf16 (no AVX2)"),
    (COOPER, "float32", "vLLM's bf16 kernels for this CPU's avx512_bf16 generate differently"),
    (SAPPHIRE, "float32", "vLLM's bf16 kernels for this CPU's avx512_bf16, amx_bf16 generate differently"),
])
def test_the_engine_computes_in_float32_and_says_why(flags: set[str], dtype: str, why: str) -> None:
    assert engine_dtype(flags) == (dtype, why)


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert "avx512_bf16" in engine_dtype(cpu_flags(str(info)))[1]
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize(("cpus", "binding"), [
    ({0, 1}, "0,1"),  # two cores: vLLM would leave one to its scheduler
    ({3, 1, 2}, "1,2,3"),
    ({0}, "0"),
    (set(range(16)), None),  # a larger machine keeps vLLM's own binding
])
def test_small_machines_bind_the_engine_to_every_cpu(cpus: set[int], binding: str | None) -> None:
    assert omp_binding(cpus) == binding
