"""Persisted predictions: one JSON line per evaluated item, enough to recompute every metric without the model.

Each line holds the benchmark, the metric it is scored with, the item (id, question, the exact prompt, references,
choices, meta), the model's prediction, the scoring mode, and the per-item values the metric computed. Images are
not stored (a path is kept when the item had one); re-scoring never needs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem

PREDICTIONS = "predictions.jsonl"  # the artifact name on every trial run


@dataclass(frozen=True)
class PredictionRecord:
    metric: str
    scoring: str
    scored: ScoredItem

    def to_json(self) -> str:
        item = self.scored.item
        return json.dumps({
            "benchmark": item.benchmark, "metric": self.metric, "scoring": self.scoring, "id": item.id,
            "question": item.question, "prompt": item.prompt, "prediction": self.scored.prediction,
            "references": list(item.references), "choices": list(item.choices), "meta": dict(item.meta),
            "image": str(item.image) if isinstance(item.image, Path) else None,
            "values": dict(self.scored.values),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> PredictionRecord:
        d = json.loads(line)
        item = BenchmarkItem(
            benchmark=d["benchmark"], id=d["id"], question=d["question"], prompt=d["prompt"],
            references=tuple(d["references"]), image=Path(d["image"]) if d.get("image") else None,
            choices=tuple(d.get("choices", ())), meta=dict(d.get("meta", {})),
        )
        return cls(metric=d["metric"], scoring=d["scoring"],
                   scored=ScoredItem(item=item, prediction=d["prediction"], values=d.get("values", {})))


def write_predictions(path: Path, records: Iterable[PredictionRecord]) -> Path:
    path.write_text("".join(r.to_json() + "\n" for r in records))
    return path


def read_predictions(path: Path) -> list[PredictionRecord]:
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(PredictionRecord.from_json(line))
            except (KeyError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}:{n}: not a prediction record ({err}); was it written by eaglesearch?") \
                    from None
    return records


def by_benchmark(records: Sequence[PredictionRecord]) -> dict[str, list[PredictionRecord]]:
    out: dict[str, list[PredictionRecord]] = {}
    for r in records:
        out.setdefault(r.scored.item.benchmark, []).append(r)
    return out
