"""What one training stage did in a trial (trained or reused, its curve and cost): what trials record and report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class StageRecord:
    """What one stage did in a trial: trained here, or reused from the artifact store (``losses`` are then the
    curve of the run that built it)."""

    stage: str
    index: int
    data: str
    status: Literal["trained", "reused"]
    steps: int
    expert: str | None = None
    artifact_key: str | None = None
    resumed_from: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    loss_final: float | None = None
    wall_s: float = 0.0
    samples: int = 0
    trainable: dict[str, int] = field(default_factory=dict)
    trainable_label: str = ""
    built_by: str | None = None  # key of the trial that trained it (per-expert stages; joint stages of a rung)

    @property
    def name(self) -> str:
        """``prealign/clip`` for a per-expert stage, ``sft`` for a joint one."""
        return f"{self.stage}/{self.expert}" if self.expert else self.stage

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        data = dict(data)
        data["losses"] = [(int(s), float(v)) for s, v in data.get("losses", [])]
        return cls(**data)
