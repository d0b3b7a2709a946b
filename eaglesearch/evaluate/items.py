"""The values every benchmark loader produces and every metric consumes.

A :class:`BenchmarkItem` is one question as a benchmark ships it, plus the exact prompt the model is asked (so
results record what was evaluated). A :class:`ScoredItem` is an item with the model's prediction and the
per-item values a metric computed from it; benchmark-level numbers are aggregations over scored items, which is
what lets predictions be re-scored offline and bootstrapped by resampling items (or groups of items).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    id: str
    question: str
    prompt: str
    references: tuple[str, ...]
    image: Path | bytes | None = None  # a file, or encoded image bytes (TSV/parquet benchmarks embed base64)
    choices: tuple[str, ...] = ()  # multiple choice: option texts in order (A, B, C, ...); empty otherwise
    meta: Mapping[str, str] = field(default_factory=dict)  # category, split, image id, circular group, ...

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(chr(ord("A") + i) for i in range(len(self.choices)))


@dataclass(frozen=True)
class ScoredItem:
    item: BenchmarkItem
    prediction: str
    values: Mapping[str, float]  # per-item metric values; "score" is the item's primary value
