"""Re-score finished trials from their persisted predictions alone (no model, no GPU): ``eaglesearch rescore``.

For every finished (or cached) trial of a search's run, the trial's ``predictions.jsonl`` and ``trial_spec.json``
artifacts are downloaded, every per-item value is recomputed from the predictions with today's pinned metrics, and
the benchmark scores, intervals and objective are compared with what the trial logged.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.spec import TrialSpec
from eaglesearch.tracking import TrackingStore, source_run_id
from eaglesearch.tracking.records import ARTIFACT_TRIAL_SPEC
from eaglesearch.trial.scoring import PREDICTIONS, rescore_predictions


@dataclass(frozen=True)
class Rescored:
    label: str
    run_id: str
    source_run_id: str
    logged: dict[str, float]
    rescored: dict[str, float]

    @property
    def differences(self) -> dict[str, tuple[float | None, float]]:
        out = {}
        for name, value in self.rescored.items():
            old = self.logged.get(name)
            if old is None or not (old == value or (math.isnan(old) and math.isnan(value))):
                out[name] = (old, value)
        return out

    @property
    def identical(self) -> bool:
        return not self.differences


def rescore_run(store: TrackingStore, run_id: str, source_run_id: str, label: str, logged: dict[str, float]) \
        -> Rescored:
    with tempfile.TemporaryDirectory() as tmp:
        predictions = store.download_artifact(source_run_id, PREDICTIONS, tmp)
        spec = store.download_artifact(source_run_id, ARTIFACT_TRIAL_SPEC, tmp)
        trial = TrialSpec.model_validate_json(Path(spec).read_text())
        rescored = rescore_predictions(Path(predictions), trial)
    return Rescored(label=label, run_id=run_id, source_run_id=source_run_id, logged=logged, rescored=rescored)


def rescore_search(store: TrackingStore, search: str, parent_id: str | None = None) -> list[Rescored]:
    parent = parent_id or store.latest_parent(search)
    if parent is None:
        raise LookupError(f"no run of search '{search}' is recorded in {store.uri}")
    runs = store.trial_runs(parent)
    out = []
    for _, row in runs.iterrows():
        if row.get("status_tag") not in ("finished", "cached"):
            continue
        source = source_run_id(row)
        logged = {c: float(row[c]) for c in runs.columns
                  if isinstance(c, str) and c.startswith(("score", "objective")) and row[c] == row[c]}
        out.append(rescore_run(store, row["run_id"], source, row.get("label") or "", logged))
    return out
