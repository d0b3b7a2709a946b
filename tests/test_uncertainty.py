"""Bootstrap intervals, paired tests, group averages and tie-aware ranks (eaglesearch.evaluate.uncertainty/groups)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from eaglesearch.evaluate.groups import PAPER_GROUPS, AggregateGroup, combine, mean_group, member_value
from eaglesearch.evaluate.items import BenchmarkItem, ScoredItem
from eaglesearch.evaluate.uncertainty import (
    Interval,
    PairedComparison,
    aggregate_interval,
    bootstrap_interval,
    paired_aggregate,
    paired_bootstrap,
    tied_ranks,
)

# ------------------------------------------------------------------------------------------------- fake metrics


class MeanMetric:
    """Accuracy = mean of per-item "score"; resampling unit = meta["unit"] (the item id when absent)."""

    name = "fake"
    primary = "accuracy"
    mean_of_scores = True

    def score(self, prediction: str, item: BenchmarkItem) -> dict[str, float]:
        return {"score": float(prediction == item.references[0])}

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        return {"accuracy": sum(s.values["score"] for s in scored) / len(scored), "n": float(len(scored))}

    def unit(self, item: BenchmarkItem) -> str:
        return item.meta.get("unit", item.id)


class LoopMetric(MeanMetric):
    """The same metric without the vectorization flag: the generic loop."""

    mean_of_scores = False


class ItemMetric(MeanMetric):
    """The same metric resampled by item, ignoring units."""

    def unit(self, item: BenchmarkItem) -> str:
        return item.id


class AllCorrectMetric:
    """MMVP/MME-acc+-style: fraction of units whose items are all correct.

    Follows the metrics' convention (``metrics/base.py``): a unit a bootstrap drew k times arrives with each item id
    k times and is weighted by its multiplicity, items / distinct ids.
    """

    name = "pairs"
    primary = "pair_accuracy"

    def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
        groups: dict[str, list[ScoredItem]] = {}
        for s in scored:
            groups.setdefault(s.item.meta["unit"], []).append(s)
        weights = {k: len(v) / len({s.item.id for s in v}) for k, v in groups.items()}
        hits = sum(weights[k] for k, v in groups.items() if all(s.values["score"] == 1.0 for s in v))
        return {"pair_accuracy": hits / sum(weights.values())}

    def unit(self, item: BenchmarkItem) -> str:
        return item.meta["unit"]


def make_scored(scores: Sequence[float], units: Sequence[str] | None = None, bench: str = "fake",
                ids: Sequence[str] | None = None) -> list[ScoredItem]:
    out = []
    for i, value in enumerate(scores):
        meta = {"unit": units[i]} if units is not None else {}
        item = BenchmarkItem(bench, ids[i] if ids is not None else f"q{i}", "q?", "q?", ("yes",), meta=meta)
        out.append(ScoredItem(item, "yes" if value == 1.0 else "no", {"score": float(value)}))
    return out


def bernoulli(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return (rng.random(n) < p).astype(float)


def width(x: Interval | PairedComparison) -> float:
    return x.high - x.low


# --------------------------------------------------------------------------------------------- single benchmark


def test_interval_covers_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(1234)
    p, n, sims = 0.3, 300, 200
    covered = 0
    for sim in range(sims):
        iv = bootstrap_interval(make_scored(bernoulli(rng, p, n)), MeanMetric(), seed=sim)
        assert iv.low <= iv.point <= iv.high
        covered += iv.low <= p <= iv.high
    assert 0.90 <= covered / sims <= 0.99


def test_point_is_aggregate_on_all_items_and_counts() -> None:
    scored = make_scored([1, 0, 1, 1], units=["a", "a", "b", "c"])
    iv = bootstrap_interval(scored, MeanMetric(), n_resamples=200)
    assert iv.point == 0.75 and iv.n_units == 3 and iv.n_resamples == 200 and iv.confidence == 0.95


def test_fewer_items_give_a_wider_interval() -> None:
    rng = np.random.default_rng(7)
    small = bootstrap_interval(make_scored(bernoulli(rng, 0.6, 100)), MeanMetric())
    large = bootstrap_interval(make_scored(bernoulli(rng, 0.6, 2500)), MeanMetric())
    assert width(small) > 3 * width(large)  # sqrt(25) = 5 expected


def test_cluster_bootstrap_wider_when_items_within_a_unit_are_perfectly_correlated() -> None:
    rng = np.random.default_rng(3)
    unit_outcomes = bernoulli(rng, 0.5, 50)
    scores = np.repeat(unit_outcomes, 10)  # every unit: 10 items, all right or all wrong
    units = [f"img{i // 10}" for i in range(500)]
    scored = make_scored(scores, units=units)
    cluster = bootstrap_interval(scored, MeanMetric())
    by_item = bootstrap_interval(scored, ItemMetric())
    assert cluster.n_units == 50 and by_item.n_units == 500
    assert cluster.point == by_item.point
    assert width(cluster) > 2 * width(by_item)  # sqrt(10) ~ 3.2 expected


def test_same_seed_same_interval_other_seed_differs() -> None:
    scored = make_scored(bernoulli(np.random.default_rng(0), 0.5, 400))
    assert bootstrap_interval(scored, MeanMetric(), seed=5) == bootstrap_interval(scored, MeanMetric(), seed=5)
    assert bootstrap_interval(scored, MeanMetric(), seed=5) != bootstrap_interval(scored, MeanMetric(), seed=6)


def test_vectorized_path_equals_generic_loop() -> None:
    rng = np.random.default_rng(11)
    scores = rng.random(300)  # non-binary scores (e.g. VQA accuracy)
    units = [f"u{int(i)}" for i in rng.integers(0, 90, size=300)]  # uneven unit sizes
    scored = make_scored(scores, units=units)
    fast = bootstrap_interval(scored, MeanMetric(), n_resamples=300, seed=2)
    slow = bootstrap_interval(scored, LoopMetric(), n_resamples=300, seed=2)
    assert (fast.low, fast.high, fast.point) == pytest.approx((slow.low, slow.high, slow.point), rel=1e-12)

    other = make_scored(np.clip(scores + rng.normal(0, 0.2, 300), 0, 1), units=units)
    fast_p = paired_bootstrap(scored, other, MeanMetric(), n_resamples=300, seed=4)
    slow_p = paired_bootstrap(scored, other, LoopMetric(), n_resamples=300, seed=4)
    assert (fast_p.delta, fast_p.low, fast_p.high) == pytest.approx((slow_p.delta, slow_p.low, slow_p.high),
                                                                    rel=1e-12)
    assert fast_p.p_value == slow_p.p_value and fast_p.separated == slow_p.separated


def test_generic_loop_keeps_repeated_units_apart() -> None:
    """Pair accuracy on pairs equals mean accuracy on one item per pair, replicate for replicate."""
    rng = np.random.default_rng(5)
    first, second = bernoulli(rng, 0.8, 120), bernoulli(rng, 0.7, 120)
    pairs = make_scored(np.stack([first, second], axis=1).ravel(), units=[f"p{i // 2}" for i in range(240)])
    collapsed = make_scored(first * second, units=[f"p{i}" for i in range(120)])
    grouped = bootstrap_interval(pairs, AllCorrectMetric(), n_resamples=200, seed=9)
    flat = bootstrap_interval(collapsed, MeanMetric(), n_resamples=200, seed=9)
    assert (grouped.point, grouped.low, grouped.high) == pytest.approx((flat.point, flat.low, flat.high))


def test_false_mean_of_scores_claim_is_caught() -> None:
    class Liar(MeanMetric):
        def aggregate(self, scored: Sequence[ScoredItem]) -> dict[str, float]:
            return {"accuracy": 100 * super().aggregate(scored)["accuracy"]}

    with pytest.raises(ValueError, match="mean_of_scores"):
        bootstrap_interval(make_scored([1, 0, 1]), Liar())


def test_bad_settings_and_empty_input_are_errors() -> None:
    with pytest.raises(ValueError, match="no scored items"):
        bootstrap_interval([], MeanMetric())
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(make_scored([1, 0]), MeanMetric(), confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_interval(make_scored([1, 0]), MeanMetric(), n_resamples=0)


# ------------------------------------------------------------------------------------------------- paired tests


def test_identical_trials_give_zero_delta_not_separated() -> None:
    scored = make_scored(bernoulli(np.random.default_rng(2), 0.6, 300))
    cmp = paired_bootstrap(scored, list(reversed(scored)), MeanMetric())
    assert (cmp.delta, cmp.low, cmp.high, cmp.p_value, cmp.separated) == (0.0, 0.0, 0.0, 1.0, False)


def test_large_planted_difference_is_separated() -> None:
    rng = np.random.default_rng(8)
    a, b = make_scored(bernoulli(rng, 0.8, 500)), make_scored(bernoulli(rng, 0.5, 500))
    cmp = paired_bootstrap(a, b, MeanMetric())
    assert cmp.separated and cmp.p_value < 0.01 and cmp.low > 0
    assert cmp.delta == pytest.approx(0.3, abs=0.08)
    reverse = paired_bootstrap(b, a, MeanMetric())
    assert reverse.separated and reverse.high < 0 and reverse.delta == -cmp.delta


def test_small_difference_is_not_separated() -> None:
    rng = np.random.default_rng(9)
    a = bernoulli(rng, 0.6, 200)
    b = a.copy()
    b[:3] = 1 - b[:3]  # three flipped answers
    cmp = paired_bootstrap(make_scored(a), make_scored(b), MeanMetric())
    assert not cmp.separated and cmp.p_value > 0.05


def test_pairing_narrows_the_delta_interval_for_correlated_trials() -> None:
    rng = np.random.default_rng(4)
    a = bernoulli(rng, 0.6, 600)
    b = np.where(rng.random(600) < 0.1, 1 - a, a)  # b agrees with a on ~90% of items
    paired = paired_bootstrap(make_scored(a), make_scored(b), MeanMetric())
    unpaired = paired_bootstrap(make_scored(a), make_scored(rng.permutation(b)), MeanMetric())  # same marginals
    assert width(paired) < 0.6 * width(unpaired)


def test_paired_trials_must_score_the_same_items() -> None:
    a = make_scored([1, 0, 1], ids=["q1", "q2", "q3"])
    b = make_scored([1, 0, 1], ids=["q1", "q2", "q9"])
    with pytest.raises(ValueError, match=r"only in trial a: q3; only in trial b: q9"):
        paired_bootstrap(a, b, MeanMetric())
    with pytest.raises(ValueError, match="q1 more than once"):
        paired_bootstrap(a, make_scored([1, 0, 1], ids=["q1", "q1", "q2"]), MeanMetric())


def test_paired_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(12)
    a, b = make_scored(bernoulli(rng, 0.55, 300)), make_scored(bernoulli(rng, 0.5, 300))
    assert paired_bootstrap(a, b, MeanMetric(), seed=3) == paired_bootstrap(a, b, MeanMetric(), seed=3)
    assert paired_bootstrap(a, b, MeanMetric(), seed=3) != paired_bootstrap(a, b, MeanMetric(), seed=4)


# ----------------------------------------------------------------------------------------------- group averages

# Reference §5(f) rows: (K-Avg, SQA, MMMU, MathVista, AI2D, G-Avg, MME, MMB, SEED, GQA,
#                        D-Avg, ChartQA, OCR/10, TextVQA, DocVQA, V-Avg, MMVP, RWQA)
CAMBRIAN_TABLE = {
    "llama3-mini-gemini-hd": (55.7, 75.1, 37.3, 37.0, 73.5, 72.7, 1606, 72.7, 73.2, 64.5, 62.9, 59.1, 47.7, 70.2, 74.6,
                              40.4, 18.7, 62.1),
    "llama3-llava-next": (55.6, 72.8, 41.7, 36.3, 71.6, 72.5, 1604, 72.1, 72.7, 65.2, 63.9, 69.5, 49.0, 64.6, 72.6,
                          49.4, 38.7, 60.1),
    "llama3-cambrian": (61.3, 80.4, 42.7, 49.0, 73.0, 73.1, 1547, 75.9, 74.7, 64.6, 71.3, 73.3, 62.4, 71.7, 77.8,
                        57.6, 51.3, 64.2),
    "llama3-eagle-x4-plus": (64.2, 84.3, 43.4, 52.7, 76.1, 73.8, 1559, 75.9, 76.3, 64.9, 76.6, 80.1, 62.6, 77.1, 86.6,
                             69.1, 71.6, 66.5),
    "vicuna13-mini-gemini-hd": (54.1, 71.9, 37.3, 37.0, 70.1, 70.7, 1597, 68.6, 70.6, 63.7, 60.8, 56.6, 46.6, 70.2,
                                69.8, 38.4, 19.3, 57.5),
    "vicuna13-llava-next": (53.7, 73.5, 36.2, 35.1, 70.0, 69.9, 1575, 70.0, 65.6, 65.4, 62.9, 62.2, 51.4, 67.1, 70.9,
                            47.6, 36.0, 59.1),
    "vicuna13-cambrian": (60.2, 79.3, 40.0, 48.0, 73.6, 73.7, 1610, 75.7, 74.4, 64.3, 71.3, 73.8, 61.9, 72.8, 76.8,
                          52.2, 41.3, 63.0),
    "vicuna13-eagle-x4-plus": (63.0, 82.0, 41.0, 54.4, 74.0, 74.6, 1651, 75.7, 74.8, 65.3, 75.1, 77.6, 61.9, 75.5,
                               85.4, 61.4, 58.0, 64.8),
    "yi34-mini-gemini-hd": (62.4, 77.7, 48.0, 43.4, 80.5, 76.2, 1659, 80.6, 75.3, 65.8, 68.1, 67.6, 51.8, 74.1, 78.9,
                            52.3, 37.3, 67.2),
    "yi34-llava-next": (62.5, 81.8, 46.7, 46.5, 74.9, 76.0, 1633, 79.3, 75.9, 67.1, 67.7, 68.7, 54.5, 69.5, 78.1, 54.2,
                        47.3, 61.0),
    "yi34-cambrian": (67.0, 85.6, 49.7, 53.2, 79.7, 76.8, 1689, 81.4, 75.3, 65.8, 71.9, 75.6, 60.0, 76.7, 75.5, 60.3,
                      52.7, 67.8),
    "yi34-eagle-x5-plus": (68.6, 85.5, 51.8, 57.9, 79.1, 76.3, 1677, 81.0, 75.6, 64.9, 75.4, 77.2, 62.4, 78.8, 83.0,
                           68.3, 67.0, 69.5),
}
# The table's K-Avg of the two Eagle-X4 rows and V-Avg of several rows are 0.15 off the mean of their own rounded
# columns (averaged before rounding, presumably), so those two groups are checked on the rows that are consistent.
CONSISTENT_KV = ["llama3-mini-gemini-hd", "llama3-llava-next", "vicuna13-mini-gemini-hd"]


def paper_scores(row: Sequence[float]) -> dict[str, float]:
    """The row as our metrics report it: fractions in [0, 1], MME perception 0-2000, OCRBench correct of 1000."""
    names = ["scienceqa", "mmmu", "mathvista", "ai2d", "mme", "mmbench", "seed", "gqa", "chartqa", "ocrbench",
             "textvqa", "docvqa", "mmvp", "realworldqa"]
    values = [*row[1:5], *row[6:10], *row[11:15], *row[16:18]]
    scores = dict(zip(names, values, strict=True))
    native = {"mme": scores["mme"], "ocrbench": scores["ocrbench"] * 10}
    return {k: native.get(k, v / 100) for k, v in scores.items()}


def test_cambrian_8b_general_average() -> None:
    scores = {"mme": 1547, "mmbench": 0.759, "seed": 0.747, "gqa": 0.646}
    general = combine(PAPER_GROUPS["general"], scores)
    assert general == pytest.approx((1547 / 20 + 75.9 + 74.7 + 64.6) / 4)
    assert round(general, 1) == 73.1


@pytest.mark.parametrize("model", sorted(CAMBRIAN_TABLE))
def test_general_and_doc_averages_match_the_reference_table(model: str) -> None:
    row = CAMBRIAN_TABLE[model]
    scores = paper_scores(row)
    # inputs rounded to 0.1 shift a mean by <= 0.05; the table's own rounding adds <= 0.05
    assert combine(PAPER_GROUPS["general"], scores) == pytest.approx(row[5], abs=0.1 + 1e-9)
    assert combine(PAPER_GROUPS["ocr_doc"], scores) == pytest.approx(row[10], abs=0.1 + 1e-9)
    if model in CONSISTENT_KV:
        assert combine(PAPER_GROUPS["knowledge"], scores) == pytest.approx(row[0], abs=0.1 + 1e-9)
        assert combine(PAPER_GROUPS["vision"], scores) == pytest.approx(row[15], abs=0.1 + 1e-9)


def test_group_arithmetic_and_validation() -> None:
    doc = PAPER_GROUPS["ocr_doc"]
    assert member_value(doc, "ocrbench", 624) == pytest.approx(62.4)
    assert member_value(doc, "chartqa", 0.733) == pytest.approx(73.3)
    assert combine(mean_group(["a", "b"]), {"a": 0.5, "b": 0.7, "ignored": 9.0}) == pytest.approx(0.6)
    assert combine(AggregateGroup("s", ("a", "b"), {"a": 2}), {"a": 3.0, "b": 1.0}) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="not in \\[0, 1\\]"):
        combine(PAPER_GROUPS["vision"], {"mmvp": 51.3, "realworldqa": 0.642})  # already percent
    with pytest.raises(KeyError, match="gqa"):
        combine(PAPER_GROUPS["general"], {"mme": 1547, "mmbench": 0.759, "seed": 0.747})
    with pytest.raises(ValueError, match="not members"):
        AggregateGroup("bad", ("a",), {"b": 2})
    with pytest.raises(ValueError, match="more than once"):
        AggregateGroup("bad", ("a", "a"))
    with pytest.raises(ValueError, match="positive"):
        AggregateGroup("bad", ("a",), {"a": 0})
    assert hash(PAPER_GROUPS["general"]) == hash(AggregateGroup("General Avg", ("mme", "mmbench", "seed", "gqa"),
                                                                {"mme": 20.0}, percent=True))


# ------------------------------------------------------------------------------------------ aggregate intervals


def two_benchmarks(rng: np.random.Generator, p: float, n: int = 400) -> dict[str, list[ScoredItem]]:
    return {"gqa": make_scored(bernoulli(rng, p, n), bench="gqa"),
            "mme": make_scored(2000 * bernoulli(rng, p, n), bench="mme")}


def test_single_member_aggregate_equals_bootstrap_interval() -> None:
    scored = make_scored(bernoulli(np.random.default_rng(6), 0.4, 300))
    single = bootstrap_interval(scored, MeanMetric(), seed=3)
    plain = aggregate_interval({"x": scored}, {"x": MeanMetric()}, mean_group(["x"]), seed=3)
    assert plain == single
    percent = aggregate_interval({"x": scored}, {"x": MeanMetric()}, AggregateGroup("P", ("x",), percent=True),
                                 seed=3)
    assert (percent.point, percent.low, percent.high) == pytest.approx((100 * single.point, 100 * single.low,
                                                                        100 * single.high))


def test_aggregate_combines_members_on_the_paper_scale() -> None:
    rng = np.random.default_rng(10)
    per = two_benchmarks(rng, 0.6)
    metrics = {"gqa": MeanMetric(), "mme": MeanMetric()}
    group = AggregateGroup("G", ("mme", "gqa"), {"mme": 20.0}, percent=True)
    iv = aggregate_interval(per, metrics, group)
    gqa_point = bootstrap_interval(per["gqa"], MeanMetric()).point
    mme_point = bootstrap_interval(per["mme"], MeanMetric()).point
    assert iv.point == pytest.approx((mme_point / 20 + 100 * gqa_point) / 2)
    assert iv.low < iv.point < iv.high and iv.n_units == 800
    # two independent members average to a narrower interval than either member alone (about 1/sqrt(2))
    gqa_alone = aggregate_interval(per, metrics, AggregateGroup("g", ("gqa",), percent=True))
    assert width(iv) < 0.85 * width(gqa_alone)
    assert iv == aggregate_interval(per, metrics, group)
    with pytest.raises(KeyError, match="no metric for seed"):
        aggregate_interval(per, metrics, AggregateGroup("x", ("gqa", "seed")))


def test_paired_aggregate() -> None:
    rng = np.random.default_rng(13)
    metrics = {"gqa": MeanMetric(), "mme": LoopMetric()}
    group = AggregateGroup("G", ("mme", "gqa"), {"mme": 20.0}, percent=True)
    a, b = two_benchmarks(rng, 0.8, 300), two_benchmarks(rng, 0.5, 300)
    same = paired_aggregate(a, a, metrics, group, n_resamples=200)
    assert (same.delta, same.low, same.high, same.separated) == (0.0, 0.0, 0.0, False)
    cmp = paired_aggregate(a, b, metrics, group, n_resamples=200)
    assert cmp.separated and cmp.p_value < 0.01 and cmp.delta == pytest.approx(30, abs=8)
    assert cmp.delta == pytest.approx(aggregate_interval(a, metrics, group).point
                                      - aggregate_interval(b, metrics, group).point)
    assert cmp == paired_aggregate(a, b, metrics, group, n_resamples=200)
    b_short = {**b, "gqa": b["gqa"][:-1]}
    with pytest.raises(ValueError, match="gqa: .*only in trial a: q299"):
        paired_aggregate(a, b_short, metrics, group)


# -------------------------------------------------------------------------------------------------- tied ranks


def fixed(separated: Mapping[tuple[int, int], bool]):
    def comparisons(i: int, j: int) -> PairedComparison:
        sep = separated[(i, j)]
        return PairedComparison(0.1, 0.05 if sep else -0.01, 0.2, 0.01 if sep else 0.3, sep, 100, 1000)
    return comparisons


def test_tied_ranks_examples() -> None:
    assert tied_ranks([0.7, 0.69, 0.5], fixed({(0, 1): False, (1, 2): True})) == ["1", "=1", "3"]
    assert tied_ranks([0.7, 0.6, 0.5], fixed({(0, 1): True, (1, 2): True})) == ["1", "2", "3"]
    assert tied_ranks([0.7, 0.6, 0.59, 0.2], fixed({(0, 1): True, (1, 2): False, (2, 3): True})) == \
        ["1", "2", "=2", "4"]
    assert tied_ranks([0.5], fixed({})) == ["1"]
    assert tied_ranks([], fixed({})) == []


def test_tied_ranks_chain_modes() -> None:
    # 0~1 and 1~2 inseparable, but 0 and 2 separated
    seps = fixed({(0, 1): False, (1, 2): False, (0, 2): True, (2, 3): False})
    assert tied_ranks([0.70, 0.67, 0.64, 0.63], seps, mode="max") == ["1", "=1", "=1", "=1"]
    assert tied_ranks([0.70, 0.67, 0.64, 0.63], seps, mode="leader") == ["1", "=1", "3", "=3"]


def test_tied_ranks_with_real_paired_tests() -> None:
    rng = np.random.default_rng(21)
    base = bernoulli(rng, 0.6, 400)
    near = np.where(rng.random(400) < 0.02, 1 - base, base)
    trials = [make_scored(base), make_scored(near), make_scored(bernoulli(rng, 0.3, 400))]
    order = sorted(range(3), key=lambda k: -float(np.mean([s.values["score"] for s in trials[k]])))
    means = [float(np.mean([s.values["score"] for s in trials[k]])) for k in order]
    ranks = tied_ranks(means, lambda i, j: paired_bootstrap(trials[order[i]], trials[order[j]], MeanMetric()))
    assert ranks == ["1", "=1", "3"]


def test_tied_ranks_rejects_unsorted_input() -> None:
    with pytest.raises(ValueError, match="best-first"):
        tied_ranks([0.5, 0.7], fixed({(0, 1): True}))
