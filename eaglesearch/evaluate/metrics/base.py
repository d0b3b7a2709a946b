"""The metric interface and the aggregation helpers every metric shares.

A metric has two halves, after lmms-eval's split of ``process_results`` from named aggregations:

* :meth:`Metric.score` maps one prediction on one :class:`BenchmarkItem` to per-item values (always including
  ``"score"``, the item's contribution to the primary number). It is pure: the same prediction and item give the
  same values, so persisted predictions can be re-scored offline.
* :meth:`Metric.aggregate` maps any sequence of :class:`ScoredItem` to benchmark-level numbers (always including
  :attr:`Metric.primary`). It reads only the scored items, so it works on a subset or a bootstrap resample.

Pinned conventions shared by all metrics:

* Rates are fractions in [0, 1] (not percentages), except where a benchmark defines points (MME, OCRBench).
* Sums use :func:`math.fsum` (exactly rounded), so an aggregate is bit-identical under any permutation of items.
* ``item.meta["category"]``, when present, gives a per-category breakdown keyed ``"<primary>/<category>"``.
* Group metrics (MME acc+, MMBench circular) resample whole groups (:meth:`Metric.unit`). A group drawn k times by
  a bootstrap appears with each item id k times; it is counted k times (its multiplicity is the number of its
  items divided by the number of its distinct item ids). A group with some members missing (a plain subset) is
  judged on the members present.
* An empty input is an error, not a NaN.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem

CATEGORY_KEY = "category"


class Metric(ABC):
    """One benchmark metric: per-item scoring, benchmark-level aggregation, and the bootstrap resampling unit."""

    name: str
    """Registry name (``METRICS[name]``)."""
    primary: str
    """Key of the aggregate that ranks models, e.g. ``"accuracy"``, ``"f1"``, ``"anls"``."""
    mean_of_scores: bool = False
    """True iff ``aggregate(...)[primary]`` is the plain mean of the items' ``values["score"]`` (lets the
    bootstrap in ``evaluate/uncertainty.py`` resample from per-unit sums instead of calling ``aggregate``)."""

    @abstractmethod
    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        """Per-item values for ``prediction`` on ``item``; includes ``"score"``."""

    @abstractmethod
    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        """Benchmark-level numbers over ``scored`` (any subset or resample); includes :attr:`primary`."""

    def unit(self, item: BenchmarkItem) -> str:
        """The bootstrap resampling unit ``item`` belongs to: the item itself unless the metric scores groups."""
        return item.id

    def score_item(self, prediction: str, item: BenchmarkItem) -> ScoredItem:
        """Convenience: :meth:`score` wrapped into a :class:`ScoredItem`."""
        return ScoredItem(item=item, prediction=prediction, values=self.score(prediction, item))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, primary={self.primary!r})"


class MeanMetric(Metric):
    """A metric whose primary number is the mean of the per-item ``"score"`` (VQA accuracy, ANLS, exact match...).

    Aggregates: ``primary`` (the mean), ``n`` (items), and ``"<primary>/<category>"`` for every category present.
    """

    mean_of_scores = True

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        require_items(scored, self.name)
        out = {self.primary: mean(item_value(s, "score", self.name) for s in scored), "n": float(len(scored))}
        for category, members in by_category(scored).items():
            out[f"{self.primary}/{category}"] = mean(item_value(s, "score", self.name) for s in members)
        return out


# ---------------------------------------------------------------------------------------------------------------
# helpers


def require_items(scored: Sequence[ScoredItem], metric: str) -> None:
    if len(scored) == 0:
        raise ValueError(f"metric {metric!r}: cannot aggregate zero scored items")


def mean(values: Iterable[float]) -> float:
    """Exactly rounded mean (order-independent); raises on an empty iterable."""
    vals = list(values)
    if not vals:
        raise ValueError("mean of no values")
    return math.fsum(vals) / len(vals)


def safe_ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is 0 (pinned: an undefined rate reports 0)."""
    return numerator / denominator if denominator else 0.0


def item_value(scored: ScoredItem, key: str, metric: str) -> float:
    """``scored.values[key]`` with an error that says which metric produced values without it."""
    try:
        return float(scored.values[key])
    except KeyError:
        raise KeyError(f"metric {metric!r}: scored item {scored.item.id!r} has no value {key!r} "
                       f"(has {sorted(scored.values)}); re-score it with this metric's score()") from None


def require_references(item: BenchmarkItem, metric: str) -> tuple[str, ...]:
    if not item.references:
        raise ValueError(f"metric {metric!r}: item {item.id!r} of {item.benchmark!r} has no reference answer")
    return item.references


def require_meta(item: BenchmarkItem, key: str, metric: str) -> str:
    try:
        return item.meta[key]
    except KeyError:
        raise KeyError(f"metric {metric!r}: item {item.id!r} of {item.benchmark!r} needs meta[{key!r}] "
                       f"(has {sorted(item.meta)}); the benchmark loader must set it") from None


def by_category(scored: Iterable[ScoredItem], key: str = CATEGORY_KEY) -> dict[str, list[ScoredItem]]:
    """Items grouped by ``item.meta[key]`` (items without it are left out), categories sorted by name."""
    groups: dict[str, list[ScoredItem]] = defaultdict(list)
    for s in scored:
        category = s.item.meta.get(key)
        if category is not None:
            groups[category].append(s)
    return {k: groups[k] for k in sorted(groups)}


def groups_of(scored: Iterable[ScoredItem], group_of: Callable[[ScoredItem], str],
              metric: str) -> list[tuple[float, list[ScoredItem]]]:
    """``(multiplicity, members)`` per group: multiplicity = number of items / number of distinct item ids.

    1 for a group as the benchmark ships it, k for a group a bootstrap drew k times.
    """
    groups: dict[str, list[ScoredItem]] = defaultdict(list)
    for s in scored:
        groups[group_of(s)].append(s)
    if not groups:
        raise ValueError(f"metric {metric!r}: no groups to score")
    return [(len(members) / len({m.item.id for m in members}), members) for members in groups.values()]


def group_count(scored: Iterable[ScoredItem], group_of: Callable[[ScoredItem], str], metric: str) -> float:
    """Number of groups, counted with their multiplicity."""
    return math.fsum(weight for weight, _ in groups_of(scored, group_of, metric))


def group_all_correct(scored: Iterable[ScoredItem], group_of: Callable[[ScoredItem], str], metric: str) -> float:
    """Fraction of groups (multiplicity-weighted) whose every item scored 1 (MME acc+, MMBench circular)."""
    groups = groups_of(scored, group_of, metric)
    hits = [w for w, members in groups if all(item_value(m, "score", metric) == 1.0 for m in members)]
    return math.fsum(hits) / math.fsum(w for w, _ in groups)


def group_mean(scored: Iterable[ScoredItem], group_of: Callable[[ScoredItem], str], metric: str) -> float:
    """Mean over groups (multiplicity-weighted) of each group's mean item score."""
    groups = groups_of(scored, group_of, metric)
    parts = [w * mean(item_value(m, "score", metric) for m in members) for w, members in groups]
    return math.fsum(parts) / math.fsum(w for w, _ in groups)


def with_category_keys(values: Mapping[str, float], category: str) -> dict[str, float]:
    """``{"<key>/<category>": value}`` for each entry."""
    return {f"{k}/{category}": v for k, v in values.items()}
