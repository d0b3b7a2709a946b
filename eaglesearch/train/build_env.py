"""The machine a pretrained component was trained on, and whether this one rebuilds it bit for bit.

CPU training here is deterministic for a fixed machine, torch build and thread count, but not across machines:
ATen picks its vector kernels by the CPU's capability (``torch.backends.cpu.get_cpu_capability()``), and oneDNN and
MKL pick theirs by instruction-set extensions (AVX-512 subsets, AMX). Two CPUs that differ there sum in another order
and round differently, and after hundreds of optimizer steps the weights differ in their low bits while the
component learns the same thing. A component's record therefore names what decides the kernels, and a bit-for-bit
comparison is meaningful only where :meth:`BuildEnvironment.reproduces` holds.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

# CPU flags some kernel library dispatches on (ATen, oneDNN, MKL): x86 vector and matrix extensions, Arm's SVE/NEON.
DISPATCH_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd",
                  "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
                  "amx_fp16", "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (Linux); the platform's processor string elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    path = Path("/proc/cpuinfo")
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and value.strip():
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return model, flags


@dataclass(frozen=True)
class BuildEnvironment:
    """What decides the CPU kernels a training run used: the CPU (for people), its kernel-relevant instruction set,
    torch's version and the thread count."""

    cpu: str
    cpu_capability: str
    """ATen's dispatch level, e.g. ``AVX512``, ``AVX2``, ``DEFAULT``."""
    isa: tuple[str, ...]
    """The CPU's flags among :data:`DISPATCH_FLAGS`, sorted."""
    torch: str
    threads: int

    @classmethod
    def current(cls, threads: int | None = None) -> BuildEnvironment:
        model, flags = _cpuinfo()
        return cls(cpu=model, cpu_capability=torch.backends.cpu.get_cpu_capability(),
                   isa=tuple(sorted(flags.intersection(DISPATCH_FLAGS))), torch=torch.__version__,
                   threads=torch.get_num_threads() if threads is None else threads)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BuildEnvironment | None:
        """The environment a component record names (None for a record written before records named it)."""
        built = record.get("built_on")
        if not isinstance(built, dict):
            return None
        return cls(cpu=str(built["cpu"]), cpu_capability=str(built["cpu_capability"]), isa=tuple(built["isa"]),
                   torch=str(built["torch"]), threads=int(built["threads"]))

    def as_record(self) -> dict[str, Any]:
        return {**asdict(self), "isa": list(self.isa)}

    def reproduces(self, other: BuildEnvironment) -> bool:
        """Whether a run here with ``other.threads`` threads computes bit for bit what ``other`` computed: same
        kernels (capability and instruction set), same torch, same thread count. The CPU's name does not matter."""
        return (self.cpu_capability, self.isa, self.torch, self.threads) == \
            (other.cpu_capability, other.isa, other.torch, other.threads)

    def differences(self, other: BuildEnvironment) -> list[str]:
        """Human-readable fields where ``other`` differs from this environment."""
        out = [f"{name}: {getattr(other, name)} there, {getattr(self, name)} here"
               for name in ("cpu_capability", "torch", "threads") if getattr(self, name) != getattr(other, name)]
        if self.isa != other.isa:
            only_there, only_here = sorted(set(other.isa) - set(self.isa)), sorted(set(self.isa) - set(other.isa))
            out.append(f"isa: {' '.join(only_there) or '-'} only there, {' '.join(only_here) or '-'} only here")
        return out
