"""Greedy adoption rules (``strategy.adopt``) with a fake evaluator and a fake comparator: milliseconds, no I/O.

The fake comparator gives each candidate a normal-approximation paired interval, ``delta ± z(level) * se``, and
the matching two-sided p-value, so the scenarios below are exact: which intervals contain 0 at 95% and at Holm's
corrected levels is arithmetic, not sampling."""

from __future__ import annotations

import math
import pickle
from statistics import NormalDist

import pytest
from pydantic import ValidationError

from eaglesearch.app.outcome import round_lines
from eaglesearch.search import ComparisonUnavailable, GreedyStrategy, PairedGain, Proposal
from eaglesearch.search.adoption import (
    ADOPTED,
    BELOW_MIN_GAIN,
    FAILED,
    NOT_BEST,
    NOT_SIGNIFICANT,
    UNPAIRED,
    WORSE,
    holm_levels,
)
from eaglesearch.search.greedy import NO_GAIN
from eaglesearch.search.greedy import NOT_SIGNIFICANT as STOP_NOT_SIGNIFICANT
from eaglesearch.search.halving import average_ranks, spearman
from eaglesearch.spec import GreedyStrategySpec, Recipe, TrialFactory, TrialResult

FACTORY = TrialFactory(recipe=Recipe(name="t"))
BASE = 0.50


class NormalComparator:
    """delta(candidate) and its standard error by the expert the candidate adds; ``None``: cannot pair."""

    def __init__(self, effects: dict[str, tuple[float, float] | None]) -> None:
        self.effects = effects
        self.added: dict[str, str] = {}  # trial key → the expert its candidate adds (filled by `answer`)

    def compare(self, candidate: TrialResult, incumbent: TrialResult, metric: str, confidence: float) -> PairedGain:
        name = self.added[candidate.key]
        effect = self.effects[name]
        if effect is None:
            raise ComparisonUnavailable(f"{name}: no predictions")
        delta, se = effect
        z = NormalDist().inv_cdf((1 + confidence) / 2)
        p = 2 * (1 - NormalDist().cdf(abs(delta) / se))
        return PairedGain(delta=delta, low=delta - z * se, high=delta + z * se, p_value=p)


def greedy(candidates: tuple[str, ...], comparator: NormalComparator | None = None, **spec) -> GreedyStrategy:
    return GreedyStrategy(GreedyStrategySpec(kind="greedy", base=("a",), candidates=candidates, **spec), FACTORY,
                          comparator)


def answer(s: GreedyStrategy, gains: dict[str, float | None], mode: str = "max") -> None:
    """Run ``s`` to the end: the base scores BASE, a candidate BASE + its expert's gain (``None``: it fails); in
    ``min`` mode a gain lowers the objective."""
    for _ in range(20):
        if s.finished:
            return
        batch: list[Proposal] = []
        while (p := s.ask()) is not None:
            batch.append(p)
        assert batch, "deadlock"
        for p in batch:
            if s.comparator is not None and p.added:
                s.comparator.added[p.key] = p.added  # type: ignore[attr-defined]
            names = [e.name for e in p.trial.model.experts[1:]]
            if any(gains[n] is None for n in names):
                s.tell(p.key, TrialResult(key=p.key, status="failed", error="boom"))
                continue
            total = math.fsum(gains[n] for n in names)  # type: ignore[misc]
            value = BASE + total if mode == "max" else BASE - total
            s.tell(p.key, TrialResult(key=p.key, status="finished", objective=value))
    raise AssertionError("search did not finish")


def verdicts(s: GreedyStrategy, rnd: int = 1) -> dict[str, str]:
    return {v.added: v.decision for v in s.decisions()[rnd].verdicts}  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------ spec


def test_adopt_spec_defaults_and_invalid_combinations() -> None:
    legacy = GreedyStrategySpec(kind="greedy", base=("a",), candidates=("b",))
    assert legacy.adopt is None and legacy.adoption_rule == "best"
    assert "adopt" not in legacy.model_dump()  # fingerprints of spaces written before adopt stay as they were
    assert GreedyStrategySpec(kind="greedy", base=("a",), candidates=("b",), stop_when_no_gain=True,
                              min_gain=0.05).adoption_rule == "min_gain"
    new = GreedyStrategySpec(kind="greedy", base=("a",), candidates=("b",), adopt={})
    assert new.adoption_rule == "paired_ci" and (new.adopt.alpha, new.adopt.correction) == (0.05, "holm")
    bad = [({"adopt": {"rule": "min_gain", "alpha": 0.1}}, "adopt.alpha applies to adopt.rule paired_ci"),
           ({"adopt": {}, "min_gain": 0.05}, "min_gain 0.05 applies to adopt.rule min_gain"),
           ({"adopt": {}, "stop_when_no_gain": False}, "stop_when_no_gain: false contradicts adopt"),
           ({"adopt": {}, "on_tie": "add_seeds"}, "on_tie: add_seeds"),
           ({"adopt": {}, "objective": "objective_low"}, "objective 'objective_low' has no paired interval"),
           ({"adopt": {"alpha": 0.7}}, "alpha")]
    for extra, message in bad:
        with pytest.raises(ValidationError, match=message):
            GreedyStrategySpec(kind="greedy", base=("a",), candidates=("b",), **extra)


def test_holm_levels() -> None:
    assert holm_levels(3, 0.05, "holm") == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 0.95])
    assert holm_levels(2, 0.05, "none") == [0.95, 0.95]


# ------------------------------------------------------------------------------------------------ paired_ci


def test_holm_withholds_an_adoption_that_uncorrected_intervals_make() -> None:
    # b: z = 0.05 / 0.022 = 2.27 (p = 0.023): its 95% interval excludes 0, the Holm level for 3 (98.3%) does not.
    effects = {"b": (0.05, 0.022), "c": (0.01, 0.03), "d": (-0.01, 0.03)}
    gains = {n: e[0] for n, e in effects.items()}  # type: ignore[index]

    uncorrected = greedy(("b", "c", "d"), NormalComparator(effects), adopt={"correction": "none"})
    answer(uncorrected, gains)
    assert uncorrected.decisions()[1].chosen_label == "a+b"
    assert verdicts(uncorrected) == {"b": ADOPTED, "c": NOT_SIGNIFICANT, "d": NOT_SIGNIFICANT}

    holm = greedy(("b", "c", "d"), NormalComparator(effects), adopt={})
    answer(holm, gains)
    d = holm.decisions()[1]
    assert d.chosen_label is None and d.stopped == STOP_NOT_SIGNIFICANT and holm.finished
    assert verdicts(holm) == {"b": NOT_SIGNIFICANT, "c": NOT_SIGNIFICANT, "d": NOT_SIGNIFICANT}
    b = next(v for v in d.verdicts if v.added == "b")
    assert b.confidence == pytest.approx(1 - 0.05 / 3) and b.low < 0 < b.high  # its corrected interval
    assert b.gain == pytest.approx(0.05) and b.p_value == pytest.approx(0.023, abs=1e-3)
    assert d.objective == pytest.approx(0.55) and d.gain == pytest.approx(0.05)  # the best, not adopted
    assert d.rule == "paired_ci (Holm, alpha 0.05)"
    assert round_lines(holm.decisions(), None)[1] == (
        f"round 1: no candidate's gain interval lay above 0 after Holm (best +b +0.050 [{b.low:+.3f}, {b.high:+.3f}] at 98.3%); "
        "stopped with a 0.500")


def test_a_large_gain_whose_interval_contains_zero_is_not_adopted() -> None:
    # b gains most (+0.30) but is noisy; c gains +0.10 with a tight interval: paired_ci adopts c, min_gain adopts b.
    effects = {"b": (0.30, 0.20), "c": (0.10, 0.01)}
    gains = {"b": 0.30, "c": 0.10}
    s = greedy(("b", "c"), NormalComparator(effects), adopt={}, max_rounds=1)
    answer(s, gains)
    d = s.decisions()[1]
    assert d.chosen_label == "a+c" and d.objective == pytest.approx(0.60) and d.gain == pytest.approx(0.10)
    assert verdicts(s) == {"b": NOT_SIGNIFICANT, "c": ADOPTED}
    # Holm: c (p ~ 0) is tested first at 97.5%, b second at 95%.
    assert {v.added: round(v.confidence, 4) for v in d.verdicts} == {"c": 0.975, "b": 0.95}

    alone = greedy(("b",), NormalComparator({"b": (0.30, 0.20)}), adopt={})
    answer(alone, {"b": 0.30})
    assert alone.decisions()[1].chosen_label is None and alone.decisions()[1].stopped == STOP_NOT_SIGNIFICANT

    by_min_gain = greedy(("b", "c"), NormalComparator(effects), adopt={"rule": "min_gain"}, max_rounds=1)
    answer(by_min_gain, gains)
    assert by_min_gain.decisions()[1].chosen_label == "a+b"


def test_significant_losses_unpaired_and_failed_candidates() -> None:
    effects = {"b": (-0.10, 0.01), "c": (0.08, 0.01), "d": None, "e": (0.05, 0.01)}
    gains = {"b": -0.10, "c": 0.08, "d": 0.20, "e": 0.05, "f": None}
    s = greedy(("b", "c", "d", "e", "f"), NormalComparator(effects), adopt={}, max_rounds=1)
    answer(s, gains)
    d = s.decisions()[1]
    assert verdicts(s) == {"b": WORSE, "c": ADOPTED, "d": UNPAIRED, "e": NOT_BEST, "f": FAILED}
    # The family is the 4 usable candidates (d counts although it cannot be paired): the strictest level is 1 - .05/4.
    assert max(v.confidence for v in d.verdicts if v.confidence) == pytest.approx(1 - 0.05 / 4)
    assert next(v for v in d.verdicts if v.added == "d").low is None  # no interval to show


def test_min_mode_orients_gains_and_intervals() -> None:
    # In min mode a lower metric is better: the comparator's delta (candidate - incumbent) is negative for a gain.
    s = greedy(("b", "c"), NormalComparator({"b": (-0.05, 0.01), "c": (0.02, 0.01)}), adopt={}, mode="min",
               max_rounds=1)
    answer(s, {"b": 0.05, "c": -0.02}, mode="min")
    d = s.decisions()[1]
    assert d.chosen_label == "a+b" and d.gain == pytest.approx(0.05)
    b = next(v for v in d.verdicts if v.added == "b")
    assert b.low > 0 and b.high > b.low and b.gain == pytest.approx(0.05)


def test_paired_ci_needs_a_comparator_and_pickles_with_it() -> None:
    s = greedy(("b",), None, adopt={})
    with pytest.raises(RuntimeError, match="needs a gain comparator"):
        answer(s, {"b": 0.1})
    comparator = NormalComparator({"b": (0.1, 0.01), "c": (0.0, 0.01)})
    live = greedy(("b", "c"), comparator, adopt={})
    restored = pickle.loads(pickle.dumps(live))
    answer(restored, {"b": 0.1, "c": 0.0})
    assert restored.decisions()[1].chosen_label == "a+b"


# ------------------------------------------------------------------------------------------------ legacy rules


def test_min_gain_rule_decides_as_before_and_shows_intervals() -> None:
    gains = {"b": 0.04, "c": 0.03}
    legacy = greedy(("b", "c"), stop_when_no_gain=True, min_gain=0.05)
    explicit = greedy(("b", "c"), NormalComparator({"b": (0.04, 0.01), "c": (0.03, 0.01)}),
                      adopt={"rule": "min_gain"}, min_gain=0.05)
    for s in (legacy, explicit):
        answer(s, gains)
        d = s.decisions()[1]
        assert d.chosen_label is None and d.stopped == NO_GAIN and d.gain == pytest.approx(0.04)
        assert verdicts(s) == {"b": BELOW_MIN_GAIN, "c": BELOW_MIN_GAIN}
        assert d.rule == "min_gain 0.05"
        assert round_lines(s.decisions(), 0.05)[1].startswith("round 1: no candidate gained more than 0.05 (best +b "
                                                            "+0.040")
    assert round_lines(explicit.decisions(), 0.05)[1].endswith("+0.040 [+0.020, +0.060]); stopped with a 0.500")
    assert all(v.low is None for v in legacy.decisions()[1].verdicts)  # no comparator: no intervals
    shown = explicit.decisions()[1].verdicts[0]
    assert shown.confidence == 0.95 and shown.low == pytest.approx(0.04 - 1.96 * 0.01, abs=1e-4)

    passing = greedy(("b", "c"), stop_when_no_gain=True, min_gain=0.035)
    answer(passing, gains)
    assert passing.decisions()[1].chosen_label == "a+b" and verdicts(passing) == {"b": ADOPTED, "c": BELOW_MIN_GAIN}


def test_without_adopt_every_round_adopts_its_best() -> None:
    s = greedy(("b", "c"))
    answer(s, {"b": -0.2, "c": -0.1})  # both hurt; Eagle's protocol adds the best anyway
    assert [d.chosen_label for d in s.decisions()] == ["a", "a+c", "a+c+b"]
    assert verdicts(s) == {"b": NOT_BEST, "c": ADOPTED} and s.decisions()[1].rule == "best"


# ------------------------------------------------------------------------------------------------ Spearman


def test_spearman_with_average_ranks() -> None:
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)  # 1 - 6 * (4 + 1 + 1) / (3 * 8)
    # Ties: Pearson on average ranks (x ranks 1.5, 1.5, 3, 4; y ranks 1, 2, 3, 4) = 0.9487 (scipy's spearmanr too).
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833)
    assert spearman([1, 2], [2, 1]) is None  # two pairs: always ±1, reported as undefined
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side: undefined


def test_halving_rounds_record_rung_against_full_budget_correlation() -> None:
    # 6 candidates, eta 2, min_fraction 0.5: all 6 at 50%, the best 3 at the full budget (n = 3 pairs).
    rung = {"b": 0.60, "c": 0.50, "d": 0.40, "e": 0.30, "f": 0.20, "g": 0.10}
    full = {"b": 0.70, "c": 0.90, "d": 0.80}  # the rung ranks b > c > d; the full budget c > d > b: rho = -0.5
    comparator = NormalComparator({n: (full[n] - BASE, 0.01) for n in full})
    s = GreedyStrategy(GreedyStrategySpec(kind="greedy", base=("a",), candidates=tuple(rung), max_rounds=1,
                                          halving={"eta": 2, "min_fraction": 0.5}, adopt={}), FACTORY, comparator)
    while not s.finished:
        batch = []
        while (p := s.ask()) is not None:
            batch.append(p)
        for p in batch:
            comparator.added[p.key] = p.added or ""
            value = BASE if p.added is None else (full[p.added] if p.trial.budget is None else rung[p.added])
            s.tell(p.key, TrialResult(key=p.key, status="finished", objective=value))
    d = s.decisions()[1]
    assert d.chosen_label == "a+c"
    assert len(d.rungs) == 1 and d.rungs[0].budget == 0.5 and d.rungs[0].n == 3
    assert d.rungs[0].rho == pytest.approx(-0.5)
    assert s.decisions()[0].rungs == ()  # the base round has no ladder
    # Holm counts all 6 candidates that entered the ladder, not just the 3 survivors the rung picked on the same items.
    assert [v.added for v in d.verdicts] == ["b", "c", "d"] and verdicts(s)["c"] == ADOPTED
    assert sorted(v.confidence for v in d.verdicts) == pytest.approx([1 - 0.05 / n for n in (4, 5, 6)])
