"""Where a running trial is inside its stages: the value that travels from the training loop to the search's
progress display (through the inline executor directly, or from a Ray worker as a Tune intermediate report).

Like :class:`~eaglesearch.spec.TrialResult` it is passed between layers (``train/`` makes it, ``execution/`` carries
it), so it lives here, where every layer may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StageProgress:
    """Stage ``index`` of ``count`` (``label``: ``sft``, or ``prealign/clip`` for a per-expert stage) has done
    ``step`` of its ``steps`` optimizer steps; ``loss`` is the last logged loss and ``eta_s`` the seconds left in
    this stage at the pace measured since its first logged step in this process (None before two were logged)."""

    label: str
    index: int
    count: int
    step: int
    steps: int
    loss: float
    eta_s: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageProgress:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


StageProgressFn = Callable[[StageProgress], None]
