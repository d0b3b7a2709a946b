"""Grid ablation: every combination of the factors (minus ``exclude``), all proposable at once.

Combinations that build the same TrialSpec (same key, e.g. differing only in a non-semantic field) are proposed
once, under the first combination's label.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from eaglesearch.search.base import Proposal, Strategy
from eaglesearch.spec import GridStrategySpec, TrialFactory, TrialResult

EXPERTS_FACTOR = "experts"


def format_value(value: Any) -> str:
    """A factor value as it reads in a label: ``0.0005``, ``true``, ``[1,2]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _short(factor: str) -> str:
    """``lr`` for ``train.lr``; a stage setting keeps its stage: ``prealign.enabled`` for
    ``train.stages.prealign.enabled``."""
    parts = factor.split(".")
    if parts[:2] == ["train", "stages"] and len(parts) >= 4:
        return ".".join(parts[2:])
    return parts[-1]


def factor_labels(factors: list[str]) -> dict[str, str]:
    """Short names of non-expert factors (see :func:`_short`), the full path where two would collide."""
    names = [f for f in factors if f != EXPERTS_FACTOR]
    counts = Counter(_short(f) for f in names)
    return {f: _short(f) if counts[_short(f)] == 1 else f for f in names}


class GridStrategy(Strategy):
    """Every combination proposable at once; the reach is exactly the declared combinations (the defaults)."""

    kind = "grid"

    def __init__(self, spec: GridStrategySpec, factory: TrialFactory) -> None:
        super().__init__(spec, factory)
        self.spec: GridStrategySpec = spec
        short = factor_labels(list(spec.factors))
        self._proposals: list[Proposal] = []  # one per distinct key, in grid order
        self._baseline_key: str | None = None
        for combo in spec.combinations():
            trial = self.factory.make(assignments=combo)
            key = trial.key
            if self._baseline_key is None and spec.baseline is not None and _matches(combo, spec.baseline):
                self._baseline_key = key
            if key in self._proposed:
                continue
            extras = " ".join(f"{short[f]}={format_value(v)}" for f, v in combo.items() if f != EXPERTS_FACTOR)
            label = f"{trial.label} {extras}" if extras else trial.label
            self._proposals.append(Proposal(trial=trial, round=0, label=label, role="grid", added=None))
            self._record(self._proposals[-1])
        self._asked: set[str] = set()
        self._cursor = 0  # proposals before it are asked or told

    def ask(self) -> Proposal | None:
        while self._cursor < len(self._proposals):
            p = self._proposals[self._cursor]
            self._cursor += 1
            key = p.key
            if key not in self._results and key not in self._asked:
                self._asked.add(key)
                self._pending.add(key)
                return p
        return None

    def tell(self, key: str, result: TrialResult) -> None:
        if key not in self._proposed:
            raise ValueError(f"grid search was told about trial {key}, which is not one of its "
                             f"{len(self._proposals)} combinations")
        if key in self._results:
            return  # at-least-once delivery: the first told result stands
        self._results[key] = result
        self._pending.discard(key)

    @property
    def finished(self) -> bool:
        return len(self._results) == len(self._proposals)

    def baseline_key(self) -> str | None:
        return self._baseline_key

    def expected_trials(self) -> list[int]:
        return [len(self._proposals)]


def _matches(combo: Mapping[str, Any], partial: Mapping[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in partial.items())
