"""Bootstrap confidence intervals and paired tests for benchmark scores and group averages.

Method (one benchmark). Items are grouped into resampling units by ``metric.unit(item)`` (an item id, an MME image,
an MMBench circular group), units ordered by first appearance. A replicate draws ``n_units`` unit indices uniformly
with replacement (``Generator.integers``) and recomputes ``metric.aggregate(items of the drawn units)[metric.primary]``
over all items of the drawn units, a unit drawn k times contributing its items k times (the cluster bootstrap).
The interval is the percentile interval: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
replicates (``numpy.quantile``, linear interpolation). The point estimate is the aggregate over all items.

Repeated units: a unit drawn k times contributes its items k times, unchanged (same ids), to one ``aggregate`` call.
A metric that groups items inside ``aggregate`` (MME acc+ by image, MMBench circular groups) must therefore weight
each group by its multiplicity (items / distinct item ids), as ``metrics.base.group_all_correct`` does.

Paired tests draw one set of unit indices per replicate and apply it to both trials, so each replicate compares the
two models on the same questions; delta = score(a) - score(b).

Aggregates (:mod:`eaglesearch.evaluate.groups`): per replicate, each member benchmark is resampled independently
(its own unit draw, taken from one generator in ``group.members`` order), its primary recomputed, and the members
combined with :func:`~eaglesearch.evaluate.groups.combine`.

Fast path: a metric whose ``mean_of_scores`` attribute is true declares that ``aggregate(...)[primary]`` is the
mean of the items' ``values["score"]``; its replicates are computed from per-unit sums in numpy (1000 replicates of
5,000 items in milliseconds), from exactly the same unit draws as the generic loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from eaglesearch.evaluate.groups import AggregateGroup, combine
from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem

_CHUNK_ELEMENTS = 1 << 20  # unit indices drawn per chunk: bounds memory at ~4 MiB (+ a gather) whatever the size


class MetricLike(Protocol):
    """What the bootstrap needs of a metric (``eaglesearch.evaluate.metrics`` ``Metric`` satisfies it).

    Optional: ``mean_of_scores: bool`` (read with ``getattr``, default False) enables the vectorized path.
    """

    name: str
    primary: str

    def aggregate(self, scored: Sequence[ScoredItem]) -> Mapping[str, float]: ...

    def unit(self, item: BenchmarkItem) -> str: ...


@dataclass(frozen=True)
class Interval:
    """A score with its bootstrap percentile interval; ``n_units`` resampling units (summed over members)."""

    point: float
    low: float
    high: float
    n_units: int
    n_resamples: int
    confidence: float = 0.95


@dataclass(frozen=True)
class PairedComparison:
    """delta = score(a) - score(b) with its paired-bootstrap percentile interval.

    ``p_value``: two-sided, ``min(1, 2 * fraction of replicate deltas on the other side of 0 from delta)``, a replicate
    equal to 0 counting as the other side; 1 when delta is 0; 0 means no replicate crossed (p < 2 / n_resamples).
    ``separated``: the interval excludes 0 (``low > 0 or high < 0``).
    """

    delta: float
    low: float
    high: float
    p_value: float
    separated: bool
    n_units: int
    n_resamples: int
    confidence: float = 0.95


# ---------------------------------------------------------------------------------------------------------- public


def bootstrap_interval(scored: Sequence[ScoredItem], metric: MetricLike, *, n_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> Interval:
    """Cluster-bootstrap percentile interval of ``metric``'s primary score (method in the module docstring).

    Replicates come from ``numpy.random.default_rng(seed)``: the same inputs and seed give the same interval.
    """
    _check_settings(n_resamples, confidence)
    clusters = _Clusters.build((scored,), metric, metric.name)
    reps = clusters.replicates(metric, np.random.default_rng(seed), n_resamples)[0]
    low, high = _percentile(reps, confidence)
    return Interval(clusters.point(metric, 0), low, high, clusters.n_units, n_resamples, confidence)


def paired_bootstrap(a: Sequence[ScoredItem], b: Sequence[ScoredItem], metric: MetricLike, *,
                     n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Paired cluster bootstrap of score(a) - score(b) on the same benchmark.

    Items are paired by ``item.id``; both trials must hold exactly the same ids (else ``ValueError`` naming the
    missing ones). Each replicate applies one unit draw to both trials. Interval and p-value as in
    :class:`PairedComparison`.
    """
    _check_settings(n_resamples, confidence)
    clusters = _Clusters.build((a, b), metric, metric.name)
    reps = clusters.replicates(metric, np.random.default_rng(seed), n_resamples)
    delta = clusters.point(metric, 0) - clusters.point(metric, 1)
    return _comparison(delta, reps[0] - reps[1], clusters.n_units, n_resamples, confidence)


def aggregate_interval(per_benchmark: Mapping[str, Sequence[ScoredItem]], metrics: Mapping[str, MetricLike],
                       group: AggregateGroup, *, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> Interval:
    """Percentile interval of a group average (members resampled independently, then combined; module docstring).

    point = ``combine(group, {member: primary on all its items})``. With one member and no divisor or percent, the
    result equals :func:`bootstrap_interval` with the same seed.
    """
    _check_settings(n_resamples, confidence)
    _check_members(group, metrics, per_benchmark)
    rng = np.random.default_rng(seed)
    points: dict[str, float] = {}
    reps: dict[str, np.ndarray] = {}
    n_units = 0
    for name in group.members:
        clusters = _Clusters.build((per_benchmark[name],), metrics[name], name)
        reps[name] = clusters.replicates(metrics[name], rng, n_resamples)[0]
        points[name] = clusters.point(metrics[name], 0)
        n_units += clusters.n_units
    low, high = _percentile(_combine_replicates(group, reps, n_resamples), confidence)
    return Interval(combine(group, points), low, high, n_units, n_resamples, confidence)


def paired_aggregate(a: Mapping[str, Sequence[ScoredItem]], b: Mapping[str, Sequence[ScoredItem]],
                     metrics: Mapping[str, MetricLike], group: AggregateGroup, *, n_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Paired bootstrap of combine(a) - combine(b) for a group average.

    Per replicate and member benchmark, one unit draw is applied to both trials (paired by item id within the
    benchmark); members are drawn independently of each other, in ``group.members`` order from one generator.
    """
    _check_settings(n_resamples, confidence)
    _check_members(group, metrics, a, "trial a")
    _check_members(group, metrics, b, "trial b")
    rng = np.random.default_rng(seed)
    points: tuple[dict[str, float], dict[str, float]] = ({}, {})
    reps: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    n_units = 0
    for name in group.members:
        clusters = _Clusters.build((a[name], b[name]), metrics[name], name)
        both = clusters.replicates(metrics[name], rng, n_resamples)
        for t in (0, 1):
            reps[t][name] = both[t]
            points[t][name] = clusters.point(metrics[name], t)
        n_units += clusters.n_units
    deltas = _combine_replicates(group, reps[0], n_resamples) - _combine_replicates(group, reps[1], n_resamples)
    delta = combine(group, points[0]) - combine(group, points[1])
    return _comparison(delta, deltas, n_units, n_resamples, confidence)


def tied_ranks(means: Sequence[float], comparisons: Callable[[int, int], PairedComparison],
               mode: Literal["max", "leader"] = "max") -> list[str]:
    """Rank labels for models sorted best-first, with ties the paired test cannot break.

    ``means[i]`` is model i's score, non-increasing (best first); ``comparisons(i, j)`` is the paired test of model i
    against model j. Model 0 is ``"1"``. Model i >= 1 is tied when ``comparisons(k, i).separated`` is false, where
    k is ``i - 1`` (mode ``"max"``: a tie chain extends as far as consecutive models stay inseparable, so its first and
    last model may themselves be separated) or the first model of the chain model i - 1 belongs to (mode
    ``"leader"``: every model of a chain is inseparable from its leader). A tied model is labelled ``"="`` + the
    1-based position of its chain's first model; an untied model starts a new chain, labelled with its own 1-based
    position (competition ranking): ``["1", "=1", "3"]``.
    """
    if mode not in ("max", "leader"):
        raise ValueError(f"tied_ranks mode must be 'max' or 'leader', got {mode!r}")
    values = [float(m) for m in means]
    for i in range(1, len(values)):
        if values[i] > values[i - 1]:
            raise ValueError(f"tied_ranks needs models sorted best-first; model {i} ({values[i]}) scores above "
                             f"model {i - 1} ({values[i - 1]})")
    labels: list[str] = []
    leader = 0
    for i in range(len(values)):
        if i > 0 and not comparisons(i - 1 if mode == "max" else leader, i).separated:
            labels.append(f"={leader + 1}")
        else:
            leader = i
            labels.append(str(i + 1))
    return labels


# -------------------------------------------------------------------------------------------------------- internal


@dataclass(frozen=True)
class _Clusters:
    """One benchmark's items (of one trial, or two trials aligned position by position) grouped into units."""

    trials: tuple[tuple[ScoredItem, ...], ...]
    unit_of: np.ndarray  # (n_items,) unit index of each position
    members: tuple[tuple[int, ...], ...]  # positions of each unit's items

    @property
    def n_units(self) -> int:
        return len(self.members)

    @staticmethod
    def build(trials: Sequence[Sequence[ScoredItem]], metric: MetricLike, label: str) -> _Clusters:
        """Group the first trial's items by ``metric.unit``; align every other trial to its item order by id."""
        first = tuple(trials[0])
        if not first:
            raise ValueError(f"{label}: no scored items to bootstrap")
        aligned = [first]
        order = _index_by_id(first, label, "trial a")
        for t, trial in enumerate(trials[1:], start=1):
            other = _index_by_id(trial, label, f"trial {chr(ord('a') + t)}")
            only_first, only_other = sorted(set(order) - set(other)), sorted(set(other) - set(order))
            if only_first or only_other:
                raise ValueError(f"{label}: paired trials must score the same items; only in trial a: "
                                 f"{_ids(only_first)}; only in trial {chr(ord('a') + t)}: {_ids(only_other)}")
            aligned.append(tuple(trial[other[item_id]] for item_id in order))
        unit_index: dict[str, int] = {}
        unit_of = np.empty(len(first), dtype=np.intp)
        for pos, s in enumerate(first):
            key = metric.unit(s.item)
            for trial in aligned[1:]:
                if metric.unit(trial[pos].item) != key:
                    raise ValueError(f"{label}: item {s.item.id} falls in unit {key!r} in trial a and "
                                     f"{metric.unit(trial[pos].item)!r} in the other trial")
            unit_of[pos] = unit_index.setdefault(key, len(unit_index))
        members: list[list[int]] = [[] for _ in unit_index]
        for pos, u in enumerate(unit_of):
            members[u].append(pos)
        return _Clusters(tuple(aligned), unit_of, tuple(tuple(m) for m in members))

    def point(self, metric: MetricLike, trial: int) -> float:
        """The primary score on all items of one trial (and a check of the ``mean_of_scores`` claim)."""
        value = _primary(metric, self.trials[trial])
        if getattr(metric, "mean_of_scores", False):
            mean = float(np.mean(_scores(self.trials[trial], metric)))
            if not np.isclose(value, mean, rtol=1e-9, atol=1e-12):
                raise ValueError(f"metric {metric.name} sets mean_of_scores, but its {metric.primary} ({value}) is "
                                 f"not the mean of the items' 'score' values ({mean})")
        return value

    def replicates(self, metric: MetricLike, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
        """(n_trials, n_resamples) primary scores on resampled units; one unit draw per replicate for all trials."""
        out = np.empty((len(self.trials), n_resamples))
        if getattr(metric, "mean_of_scores", False):
            sums = np.stack([np.bincount(self.unit_of, weights=_scores(t, metric), minlength=self.n_units)
                             for t in self.trials])
            counts = np.bincount(self.unit_of, minlength=self.n_units).astype(np.float64)
            uniform = bool(np.all(counts == counts[0]))  # equal-sized units: every resample has the same size
            for start, idx in _draws(rng, self.n_units, n_resamples):
                sizes = counts[0] * self.n_units if uniform else counts[idx].sum(axis=1)
                for t in range(len(self.trials)):
                    out[t, start:start + len(idx)] = sums[t][idx].sum(axis=1) / sizes
        else:
            for start, idx in _draws(rng, self.n_units, n_resamples):
                for r, row in enumerate(idx.tolist()):
                    for t, trial in enumerate(self.trials):
                        out[t, start + r] = _primary(metric, [trial[pos] for u in row for pos in self.members[u]])
        bad = int(np.count_nonzero(~np.isfinite(out)))
        if bad:
            raise ValueError(f"metric {metric.name}: {metric.primary} is not finite on {bad} bootstrap resample(s); "
                             f"the metric must be defined on any multiset of its units")
        return out


def _draws(rng: np.random.Generator, n_units: int, n_resamples: int) -> Iterator[tuple[int, np.ndarray]]:
    """Unit indices, ``n_resamples`` rows of ``n_units`` uniform draws, yielded in row chunks as (first row, rows)."""
    rows = max(1, _CHUNK_ELEMENTS // n_units)
    for start in range(0, n_resamples, rows):
        yield start, rng.integers(0, n_units, size=(min(rows, n_resamples - start), n_units), dtype=np.int32)


def _index_by_id(trial: Sequence[ScoredItem], label: str, which: str) -> dict[str, int]:
    index: dict[str, int] = {}
    duplicates: set[str] = set()
    for pos, s in enumerate(trial):
        if s.item.id in index:
            duplicates.add(s.item.id)
        index[s.item.id] = pos
    if duplicates:
        raise ValueError(f"{label}: {which} scores item(s) {_ids(sorted(duplicates))} more than once")
    return index


def _ids(ids: Sequence[str], limit: int = 10) -> str:
    if not ids:
        return "none"
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _primary(metric: MetricLike, scored: Sequence[ScoredItem]) -> float:
    result = metric.aggregate(scored)
    if metric.primary not in result:
        raise KeyError(f"metric {metric.name}: aggregate() returned no {metric.primary!r} "
                       f"(returned: {', '.join(sorted(result))})")
    return float(result[metric.primary])


def _scores(trial: Sequence[ScoredItem], metric: MetricLike) -> np.ndarray:
    try:
        return np.array([s.values["score"] for s in trial], dtype=np.float64)
    except KeyError:
        missing = [s.item.id for s in trial if "score" not in s.values]
        raise KeyError(f"metric {metric.name}: items {_ids(missing)} have no 'score' value") from None


def _combine_replicates(group: AggregateGroup, reps: Mapping[str, np.ndarray], n_resamples: int) -> np.ndarray:
    return np.array([combine(group, {m: float(reps[m][i]) for m in group.members}) for i in range(n_resamples)])


def _percentile(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _comparison(delta: float, deltas: np.ndarray, n_units: int, n_resamples: int,
                confidence: float) -> PairedComparison:
    low, high = _percentile(deltas, confidence)
    if delta > 0:
        other_side = float(np.mean(deltas <= 0))
    elif delta < 0:
        other_side = float(np.mean(deltas >= 0))
    else:
        other_side = 1.0
    return PairedComparison(delta, low, high, min(1.0, 2.0 * other_side), bool(low > 0 or high < 0), n_units,
                            n_resamples, confidence)


def _check_settings(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_members(group: AggregateGroup, metrics: Mapping[str, MetricLike],
                   per_benchmark: Mapping[str, Sequence[ScoredItem]], which: str = "scored items") -> None:
    no_metric = [m for m in group.members if m not in metrics]
    no_items = [m for m in group.members if m not in per_benchmark]
    if no_metric or no_items:
        raise KeyError(f"aggregate group {group.name!r}: no metric for {_ids(no_metric)}; "
                       f"no {which} for {_ids(no_items)}")
