"""``eaglesearch export``: a search's kept model (MLflow) → a self-contained folder (``export/``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.export import ModelCard, write_export
from eaglesearch.tracking import TrackingStore, Winners
from eaglesearch.tracking.winners import model_name


@dataclass(frozen=True)
class Exported:
    folder: Path
    card: ModelCard


def export_winner(tracking_uri: str, search: str, out: Path, key: str | None = None) -> Exported:
    """Write the kept trial of ``search`` (the best, or the one whose key starts with ``key``) into ``out``.
    ``LookupError`` when the search kept no such trial."""
    winners = Winners(tracking_uri)
    version = winners.find(search, key)
    run_id = version["run_id"]
    record = TrackingStore(tracking_uri).get_run(run_id)
    objective = version.get("objective_metric", "objective")
    scores = {k: v for k, v in record.metrics.items() if k.startswith(("score/", "objective"))}
    card = ModelCard(search=search, key=version.get("key", ""), label=version.get("trial", ""), objective=objective,
                     value=float(record.metrics.get(objective, float("nan"))), run_id=run_id, scores=scores,
                     registered=f"models:/{model_name(search)}/{version['version']}")
    with tempfile.TemporaryDirectory() as tmp:
        weights = winners.download_weights(run_id, Path(tmp))
        folder = write_export(weights, Path(out), card)
    return Exported(folder=folder, card=card)
