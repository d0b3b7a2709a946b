"""Host RAM of one rank's trial process: what every rank holds while it builds (and, on CPU, trains) its model."""

from __future__ import annotations

from dataclasses import dataclass

from eaglesearch.model.memory import GB


@dataclass(frozen=True)
class HostMemory:
    """Estimated peak host RAM of one rank's trial process (the model and its training; not DataLoader workers).

    Every rank builds its model in host RAM before moving it to its GPU (or sharding it): the weights in the dtype
    they are loaded in (bf16 for a GPU trial, fp32 on CPU), plus ``build``: the largest expert while it is built
    (and its checkpoint read) at fp32 before being cast; the LM is read straight into its dtype, a tensor at a
    time. A CPU trial also trains there, so its peak is the larger of the
    build and the training step (``step``: the same estimate as :class:`MemoryEstimate`, which on CPU is host RAM).
    Ranks on one node add up: 8 ranks need 8 times this (safetensors checkpoints are memory-mapped, so the file's
    page cache is shared, but each rank keeps its own model until it is on its GPU).
    """

    weights: int
    build: int
    step: int
    ranks: int

    @property
    def total(self) -> int:
        return max(self.weights + self.build, self.step)

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def breakdown(self) -> str:
        """e.g. ``weights 14.2 + building 3.4 GB (per rank, x8 ranks)``."""
        text = f"weights {self.weights / GB:.1f} + building {self.build / GB:.1f} GB"
        if self.step:
            text += f"; training step {self.step / GB:.1f} GB"
        return text + (f" (per rank, x{self.ranks} ranks)" if self.ranks > 1 else "")


def estimate_host_memory(params_total: int, largest_part: int, *, load_bytes: int, step: int = 0,
                         ranks: int = 1) -> HostMemory:
    """Host RAM of one rank: ``params_total`` parameters held at ``load_bytes`` each, plus the largest expert
    (``largest_part`` parameters) built at fp32 width before it is cast; ``step`` is the
    training step's peak when the trial trains on the CPU (0 for a GPU trial)."""
    return HostMemory(weights=params_total * load_bytes, build=largest_part * 4, step=step, ranks=ranks)
