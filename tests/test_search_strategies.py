"""Search strategies driven by a fake evaluator: greedy round-robin and grid, in milliseconds."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from eaglesearch.search import GreedyStrategy, GridStrategy, Proposal, Strategy, make_strategy
from eaglesearch.spec import (
    ExpertSpec,
    GreedyStrategySpec,
    GridStrategySpec,
    Recipe,
    TrialFactory,
    TrialResult,
    load_search_space,
)

ROOT = Path(__file__).resolve().parents[1]
FACTORY = TrialFactory(recipe=Recipe(name="t"))

Table = Mapping[frozenset[str], float | None] | Callable[[frozenset[str]], float | None]


def at_64(expert: ExpertSpec) -> ExpertSpec:
    """A module-level expert resolver (picklable), standing in for the registry's."""
    return expert.model_copy(update={"resolution": 64})


def names(p: Proposal) -> frozenset[str]:
    return frozenset(e.name for e in p.trial.model.experts)


def order(p: Proposal) -> tuple[str, ...]:
    return tuple(e.name for e in p.trial.model.experts)


def additive(weights: Mapping[str, float]) -> Callable[[frozenset[str]], float]:
    return lambda s: sum(weights[n] for n in s)


def evaluate(p: Proposal, table: Table) -> TrialResult:
    value = table(names(p)) if callable(table) else table.get(names(p))
    if value is None:
        return TrialResult(key=p.key, status="failed", error="boom")
    return TrialResult(key=p.key, status="finished", objective=value)


def batch(s: Strategy) -> list[Proposal]:
    out = []
    while (p := s.ask()) is not None:
        out.append(p)
    return out


def drive(s: Strategy, table: Table, rng: random.Random | None = None, limit: int = 1000) -> list[Proposal]:
    """Run ``s`` to the end honouring the barrier: ask until None, then tell the batch (shuffled with ``rng``)."""
    seen: list[Proposal] = []
    for _ in range(limit):
        if s.finished:
            return seen
        proposals = batch(s)
        assert proposals, "strategy is neither finished nor proposing: deadlock"
        assert s.pending() == {p.key for p in proposals}
        if rng is not None:
            rng.shuffle(proposals)
        for p in proposals:
            s.tell(p.key, evaluate(p, table))
        seen += proposals
    raise AssertionError("search did not finish")


def greedy(base=("a",), candidates=("b", "c", "d", "e"), factory=FACTORY, **kw) -> GreedyStrategy:
    return GreedyStrategy(GreedyStrategySpec(kind="greedy", base=base, candidates=candidates, **kw), factory)


def key_of(*experts: str, factory: TrialFactory = FACTORY) -> str:
    return factory.make(tuple(ExpertSpec(name=n) for n in experts)).key


def ok(key: str, objective: float) -> TrialResult:
    return TrialResult(key=key, status="finished", objective=objective)


def rounds(proposals: list[Proposal]) -> list[int]:
    counts: dict[int, int] = {}
    for p in proposals:
        counts[p.round] = counts.get(p.round, 0) + 1
    return [counts[r] for r in sorted(counts)]


# ---------------------------------------------------------------------------------------------------- greedy


def test_greedy_follows_the_argmax_path_on_a_four_expert_pool():
    s = greedy()
    seen = drive(s, additive({"a": 1.0, "b": 0.25, "c": 0.75, "d": -0.5, "e": 0.5}), random.Random(0))

    assert rounds(seen) == [1, 4, 3, 2, 1] == s.expected_trials()
    d = s.decisions()
    assert [x.round for x in d] == [0, 1, 2, 3, 4]
    assert [x.added for x in d] == [None, "c", "e", "b", "d"]
    assert [x.objective for x in d] == [1.0, 1.75, 2.25, 2.5, 2.0]
    assert [x.gain for x in d] == [None, 0.75, 0.5, 0.25, -0.5]  # without stop_when_no_gain, a loss is still taken
    assert [x.stopped for x in d] == [None, None, None, None, "pool empty"]
    assert d[0].chosen_label == "a" and d[0].previous_objective is None
    assert d[2].chosen_label == "a+c+e" and d[2].previous_objective == 1.75
    # candidates of a round are listed in pool order, with their objective and status
    assert [(c[0], c[2], c[3]) for c in d[1].candidates] == [
        ("a+b", 1.25, "finished"), ("a+c", 1.75, "finished"), ("a+d", 0.5, "finished"), ("a+e", 1.5, "finished"),
    ]
    # expert order: base, then experts in the order they were added, then the candidate
    r2 = [p for p in seen if p.round == 2]
    assert sorted(order(p) for p in r2) == [("a", "c", "b"), ("a", "c", "d"), ("a", "c", "e")]
    assert all(p.role == "candidate" and p.added == order(p)[-1] and p.label == p.trial.label for p in r2)
    assert order(s.incumbent()) == ("a", "c", "e", "b", "d")
    assert s.chosen() == ("a", "c", "e", "b", "d")
    assert s.baseline_key() == key_of("a") == seen[0].key and seen[0].role == "base"


def test_greedy_round_proposals_come_in_pool_order():
    s = greedy(base=("x", "y"), candidates=("d", "b", "c"))
    assert s.ask().label == "x+y"
    s.tell(key_of("x", "y"), ok(key_of("x", "y"), 1.0))
    assert [p.added for p in batch(s)] == ["d", "b", "c"]


def test_greedy_ties_go_to_the_earlier_pool_expert():
    for pool, first in [(("b", "c", "d"), "b"), (("c", "b", "d"), "c"), (("d", "c", "b"), "d")]:
        for seed in range(4):
            s = greedy(candidates=pool, max_rounds=1)
            drive(s, lambda e: 1.0 if e == {"a"} else 2.0, random.Random(seed))
            assert s.decisions()[1].added == first


def test_failed_candidates_never_win():
    def table(e: frozenset[str]) -> float | None:
        return None if "c" in e else len(e) + (0.5 if "b" in e else 0.0)

    s = greedy(candidates=("b", "c", "d"))
    seen = drive(s, table, random.Random(1))
    assert [x.added for x in s.decisions()] == [None, "b", "d", None]
    assert s.decisions()[1].candidates[1][3] == "failed" and s.decisions()[1].candidates[1][2] is None
    assert rounds(seen) == [1, 3, 2, 1]  # the failed expert stays in the pool and is tried again each round
    assert s.decisions()[-1].stopped == "all candidates failed" and s.decisions()[-1].candidates[0][0] == "a+b+d+c"


def test_a_failed_status_or_missing_objective_loses_even_with_a_big_number():
    s = greedy(candidates=("b", "c", "d"), max_rounds=1)
    s.tell(s.ask().key, ok(key_of("a"), 1.0))
    for p in batch(s):
        if p.added == "b":
            s.tell(p.key, TrialResult(key=p.key, status="failed", objective=99.0))
        elif p.added == "c":
            s.tell(p.key, TrialResult(key=p.key, status="finished", objective=None))
        else:
            s.tell(p.key, ok(p.key, 0.5))
    assert s.decisions()[1].added == "d"
    assert s.decisions()[1].objective == 0.5


def test_a_nan_objective_never_wins():
    s = greedy(candidates=("b", "c"), max_rounds=1)
    drive(s, lambda e: float("nan") if "b" in e else 1.0)
    assert s.decisions()[1].added == "c"


def test_a_round_where_every_candidate_failed_stops_and_keeps_the_incumbent():
    s = greedy(candidates=("b", "c"))
    drive(s, lambda e: 1.0 if e == {"a"} else None)
    last = s.decisions()[-1]
    assert s.finished and last.round == 1 and last.stopped == "all candidates failed"
    assert last.chosen_key is None and last.added is None and last.objective is None and last.gain is None
    assert s.incumbent().key == key_of("a")
    assert s.ask() is None


def test_base_failure_finishes_the_search():
    s = greedy()
    seen = drive(s, lambda e: None if e == {"a"} else 1.0)
    assert len(seen) == 1 and s.finished and s.ask() is None
    assert len(s.decisions()) == 1 and s.decisions()[0].stopped == "base failed"
    assert s.incumbent() is None
    assert s.baseline_key() == key_of("a")


def test_no_trial_is_proposed_twice():
    s = greedy(candidates=("b", "c", "d", "e", "f"))
    seen = drive(s, additive({"a": 0, "b": 1, "c": 5, "d": 3, "e": 2, "f": 4}), random.Random(2))
    assert len(seen) == len({p.key for p in seen}) == 1 + 5 + 4 + 3 + 2 + 1


def test_a_result_told_before_it_is_asked_is_not_proposed():
    s = greedy(candidates=("b", "c", "d"))
    # resume: the base's result is known before anything is asked
    s.tell(key_of("a"), ok(key_of("a"), 1.0))
    assert len(s.decisions()) == 1 and s.pending() == set()
    # and one round-1 candidate's
    s.tell(key_of("a", "c"), ok(key_of("a", "c"), 3.0))
    r1 = batch(s)
    assert sorted(p.added for p in r1) == ["b", "d"]
    for p in r1:
        s.tell(p.key, ok(p.key, 2.0))
    d1 = s.decisions()[1]
    assert d1.added == "c" and d1.objective == 3.0
    assert [c[1] for c in d1.candidates] == [key_of("a", "b"), key_of("a", "c"), key_of("a", "d")]


def test_a_round_answered_entirely_before_asking_is_decided_without_proposals():
    s = greedy(candidates=("b", "c"), max_rounds=1)
    for key, value in [(key_of("a"), 1.0), (key_of("a", "b"), 2.0), (key_of("a", "c"), 3.0)]:
        s.tell(key, ok(key, value))
    assert s.finished and s.ask() is None
    assert [x.added for x in s.decisions()] == [None, "c"]
    assert s.decisions()[-1].stopped == "max_rounds"


def test_stop_when_no_gain_requires_more_than_min_gain():
    table = {frozenset("a"): 1.0, frozenset("ab"): 1.5, frozenset("ac"): 1.25, frozenset("abc"): 1.75}
    s = greedy(candidates=("b", "c"), stop_when_no_gain=True, min_gain=0.25)
    seen = drive(s, table)
    d = s.decisions()
    assert rounds(seen) == [1, 2, 1]
    assert d[1].added == "b" and d[1].gain == 0.5 and d[1].stopped is None
    # 1.75 - 1.5 = 0.25 is not more than min_gain 0.25: stop, keep {a, b}
    assert d[2].stopped == "no gain" and d[2].chosen_key is None and d[2].added is None
    assert d[2].objective == 1.75 and d[2].previous_objective == 1.5 and d[2].gain == 0.25
    assert names(s.incumbent()) == {"a", "b"}

    s = greedy(candidates=("b", "c"), stop_when_no_gain=True, min_gain=0.125)
    drive(s, table)
    assert s.decisions()[-1].stopped == "pool empty" and names(s.incumbent()) == {"a", "b", "c"}


def test_stop_when_no_gain_stops_on_an_equal_objective():
    s = greedy(candidates=("b", "c"), stop_when_no_gain=True)
    drive(s, lambda e: 1.0)
    assert s.decisions()[1].stopped == "no gain" and s.incumbent().key == key_of("a")


def test_max_rounds_caps_the_adding_rounds():
    s = greedy(max_rounds=2)
    assert s.expected_trials() == [1, 4, 3]
    seen = drive(s, additive({"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}))
    assert rounds(seen) == [1, 4, 3]
    assert s.decisions()[-1].stopped == "max_rounds"
    assert order(s.incumbent()) == ("a", "e", "d")


def test_pool_of_one_stops_when_empty():
    s = greedy(candidates=("b",))
    assert s.expected_trials() == [1, 1]
    drive(s, additive({"a": 1, "b": -1}))
    assert [x.stopped for x in s.decisions()] == [None, "pool empty"]
    assert s.decisions()[1].added == "b"  # without stop_when_no_gain the only candidate is taken, worse or not


def test_min_mode_picks_the_lowest_and_counts_a_drop_as_gain():
    s = greedy(candidates=("b", "c", "d"), mode="min", stop_when_no_gain=True)
    drive(s, additive({"a": 10.0, "b": -1.0, "c": -3.0, "d": 2.0}))
    d = s.decisions()
    assert [x.added for x in d] == [None, "c", "b", None]
    assert d[1].gain == 3.0 and d[2].gain == 1.0
    assert d[3].stopped == "no gain" and d[3].gain == -2.0
    assert order(s.incumbent()) == ("a", "c", "b")


def test_tell_is_idempotent_and_rejects_unknown_keys():
    s = greedy(candidates=("b", "c"))
    base = s.ask()
    s.tell(base.key, ok(base.key, 1.0))
    s.tell(base.key, ok(base.key, 5.0))  # a second delivery of the same trial changes nothing
    assert len(s.decisions()) == 1 and s.decisions()[0].objective == 1.0 and s.result(base.key).objective == 1.0
    with pytest.raises(ValueError, match="not proposed"):
        s.tell("0123456789abcdef", ok("0123456789abcdef", 1.0))
    with pytest.raises(ValueError):  # a trial of a round that has not started yet
        s.tell(key_of("a", "b", "c"), ok(key_of("a", "b", "c"), 1.0))
    r1 = batch(s)
    for p in r1:
        s.tell(p.key, ok(p.key, 2.0))
        s.tell(p.key, ok(p.key, 2.0))
    assert len(s.decisions()) == 2


def test_ask_returns_none_while_a_round_is_in_flight():
    s = greedy(candidates=("b", "c", "d"))
    base = s.ask()
    assert base.role == "base" and base.round == 0 and base.added is None
    assert s.ask() is None and s.pending() == {base.key} and not s.finished
    s.tell(base.key, ok(base.key, 1.0))
    assert s.pending() == set()
    r1 = batch(s)
    assert len(r1) == 3 and s.pending() == {p.key for p in r1}
    s.tell(r1[2].key, ok(r1[2].key, 2.0))
    s.tell(r1[0].key, ok(r1[0].key, 2.0))
    assert s.ask() is None and s.pending() == {r1[1].key} and len(s.decisions()) == 1
    s.tell(r1[1].key, ok(r1[1].key, 2.0))
    assert len(s.decisions()) == 2 and s.ask() is not None


def test_pickled_mid_search_continues_identically():
    table = additive({"a": 0.0, "b": 0.5, "c": 2.0, "d": 1.0, "e": 1.5})
    factory = TrialFactory(recipe=Recipe(name="t"), expert_resolver=at_64)
    s = greedy(factory=factory)
    s.tell(s.ask().key, ok(key_of("a", factory=factory), 0.0))
    r1 = batch(s)
    s.tell(r1[0].key, evaluate(r1[0], table))  # round 1 is half told, the rest in flight

    t = pickle.loads(pickle.dumps(s))
    assert t.pending() == s.pending() and t.decisions() == s.decisions()
    for x in (s, t):
        for p in r1[1:]:
            x.tell(p.key, evaluate(p, table))
    seen_s, seen_t = drive(s, table), drive(t, table)
    assert [p.key for p in seen_s] == [p.key for p in seen_t]
    assert s.decisions() == t.decisions()
    assert order(t.incumbent()) == ("a", "c", "e", "d", "b")
    assert all(e.resolution == 64 for e in t.incumbent().trial.model.experts)


def test_expected_trials_for_greedy():
    assert greedy().expected_trials() == [1, 4, 3, 2, 1]
    assert greedy(max_rounds=1).expected_trials() == [1, 4]
    assert greedy(max_rounds=9).expected_trials() == [1, 4, 3, 2, 1]
    assert greedy(candidates=("b", "c")).expected_trials() == [1, 2, 1]


def _reference(base, pool, table, mode, max_rounds, stop_when_no_gain, min_gain):
    """Brute force: the chosen expert set after each round, and why it stopped."""
    chosen, pool = list(base), list(pool)
    current = table[frozenset(chosen)]
    if current is None:
        return [], "base failed"
    path, r = [tuple(chosen)], 0
    sign = 1 if mode == "max" else -1
    while pool and (max_rounds is None or r < max_rounds):
        r += 1
        scores = [(table[frozenset(chosen + [e])], i) for i, e in enumerate(pool)]
        scores = [(v, i) for v, i in scores if v is not None]
        if not scores:
            return path, "all candidates failed"
        value, i = max(scores, key=lambda vi: (sign * vi[0], -vi[1]))
        if stop_when_no_gain and not sign * (value - current) > min_gain:
            return path, "no gain"
        chosen.append(pool.pop(i))
        current = value
        path.append(tuple(chosen))
    return path, "pool empty" if not pool else "max_rounds"


def test_greedy_matches_brute_force_on_random_tables():
    rng = random.Random(1234)
    experts = "abcdefg"
    for _ in range(60):
        n_base, n_pool = rng.randint(1, 2), rng.randint(1, 4)
        picked = rng.sample(experts, n_base + n_pool)
        base, pool = tuple(picked[:n_base]), tuple(picked[n_base:])
        ties = rng.random() < 0.5
        table: dict[frozenset[str], float | None] = {}
        for mask in range(2 ** n_pool):
            subset = frozenset(base) | {pool[i] for i in range(n_pool) if mask >> i & 1}
            fails = rng.random() < 0.15
            table[subset] = None if fails else float(rng.randint(0, 3)) if ties else rng.uniform(-1, 1)
        kw = {
            "mode": rng.choice(["max", "min"]),
            "max_rounds": rng.choice([None, 1, 2, 3]),
            "stop_when_no_gain": rng.random() < 0.5,
            "min_gain": rng.choice([0.0, 0.5]),
        }
        s = greedy(base=base, candidates=pool, **kw)
        seen = drive(s, table, rng)
        path, why = _reference(base, pool, table, **kw)
        assert ([order(s.incumbent())] if s.incumbent() else []) == path[-1:]
        chosen_sets = [tuple(order(p)) for d in s.decisions() if d.chosen_key for p in seen if p.key == d.chosen_key]
        assert chosen_sets == path, (table, kw)
        assert s.decisions()[-1].stopped == why, (table, kw)
        assert len(seen) == len({p.key for p in seen})


# ------------------------------------------------------------------------------------------------------ grid


def grid(factors, exclude=(), baseline=None, mode="max", factory=FACTORY) -> GridStrategy:
    spec = GridStrategySpec(kind="grid", factors=factors, exclude=exclude, baseline=baseline, mode=mode)
    return GridStrategy(spec, factory)


FACTORS = {"experts": [["a"], ["a", "b"], ["b"]], "train.lr": [1e-4, 5e-4], "seed": [0, 1]}


def test_grid_proposes_the_full_factorial_at_once():
    s = grid(FACTORS)
    assert s.expected_trials() == [12]
    first = batch(s)  # no barrier: everything is proposable before any result
    assert len(first) == 12 == len({p.key for p in first})
    assert all(p.role == "grid" and p.round == 0 and p.added is None for p in first)
    assert s.pending() == {p.key for p in first} and not s.finished
    for p in first:
        s.tell(p.key, ok(p.key, 1.0))
    assert s.finished and s.ask() is None and s.decisions() == [] and s.pending() == set()


def test_grid_exclude_rules_remove_combinations():
    s = grid(FACTORS, exclude=({"train.lr": 1e-4, "seed": 1}, {"experts": ["b"]}))
    seen = drive(s, lambda e: 1.0)
    assert len(seen) == 12 - 3 - 4 + 1
    assert not any(p.trial.train.stages[0].lr == 1e-4 and p.trial.seed == 1 for p in seen)
    assert not any(order(p) == ("b",) for p in seen)


def test_grid_combinations_with_the_same_spec_are_proposed_once():
    # log_every is not part of the key; {"name": "a"} is the same expert as "a"
    s = grid({"experts": [["a"], [{"name": "a"}], ["b"]], "train.log_every": [10, 20]})
    seen = drive(s, lambda e: 1.0)
    assert len(seen) == 2 and s.expected_trials() == [2]
    assert [p.label for p in seen] == ["a log_every=10", "b log_every=10"]


def test_grid_labels_are_short():
    s = grid({"experts": [["clip"], ["clip", "convnext"]], "train.lr": [0.0005, 1e-4]})
    assert [p.label for p in batch(s)] == [
        "clip lr=0.0005", "clip lr=0.0001", "clip+convnext lr=0.0005", "clip+convnext lr=0.0001",
    ]
    s = grid({"experts": [["a"]], "seed": [1], "data.synthetic.seed": [2], "model.freeze_projector": [True]})
    assert batch(s)[0].label == "a seed=1 data.synthetic.seed=2 freeze_projector=true"
    s = grid({"experts": [["a"], ["a", {"name": "b", "resolution": 64, "freeze": True}]]})
    assert [p.label for p in batch(s)] == ["a", "a+b@64*"]


def test_grid_baseline_key():
    s = grid(FACTORS, baseline={"experts": ["a"], "train.lr": 5e-4, "seed": 0})
    expected = FACTORY.make(assignments={"experts": ["a"], "train.lr": 5e-4, "seed": 0}).key
    assert s.baseline_key() == expected
    assert grid(FACTORS, baseline={"experts": ["b"]}).baseline_key() == FACTORY.make(
        assignments={"experts": ["b"], "train.lr": 1e-4, "seed": 0}).key  # partial: the first matching combination
    assert grid(FACTORS).baseline_key() is None


def test_grid_incumbent_is_the_best_usable_result_so_far():
    s = grid({"experts": [["a"], ["b"], ["c"], ["d"]]})
    assert s.incumbent() is None
    p = {order(x)[0]: x for x in batch(s)}
    s.tell(p["a"].key, ok(p["a"].key, 1.0))
    assert s.incumbent() is p["a"]
    s.tell(p["b"].key, TrialResult(key=p["b"].key, status="failed", objective=9.0))
    s.tell(p["c"].key, ok(p["c"].key, 2.0))
    s.tell(p["d"].key, ok(p["d"].key, 2.0))
    assert s.incumbent() is p["c"]  # failures never win; ties go to the earlier combination

    m = grid({"experts": [["a"], ["b"]]}, mode="min")
    drive(m, {frozenset("a"): 2.0, frozenset("b"): 1.0})
    assert order(m.incumbent()) == ("b",)


def test_grid_tell_idempotent_unknown_rejected_and_pre_told_not_proposed():
    s = grid({"experts": [["a"], ["b"], ["c"]]})
    kb = FACTORY.make(assignments={"experts": ["b"]}).key
    s.tell(kb, ok(kb, 3.0))  # known before it is asked (resume)
    seen = batch(s)
    assert [order(p) for p in seen] == [("a",), ("c",)]
    s.tell(seen[0].key, ok(seen[0].key, 1.0))
    s.tell(seen[0].key, ok(seen[0].key, 7.0))
    assert s.result(seen[0].key).objective == 1.0
    with pytest.raises(ValueError):
        s.tell(key_of("d"), ok(key_of("d"), 1.0))
    assert not s.finished and s.pending() == {seen[1].key}
    s.tell(seen[1].key, ok(seen[1].key, 1.0))
    assert s.finished and order(s.incumbent()) == ("b",)


def test_grid_pickled_mid_search_continues_identically():
    s = grid(FACTORS, factory=TrialFactory(recipe=Recipe(name="t"), expert_resolver=at_64))
    first = [s.ask() for _ in range(5)]
    for p in first[:3]:
        s.tell(p.key, ok(p.key, p.trial.train.stages[0].lr))
    t = pickle.loads(pickle.dumps(s))
    for x in (s, t):
        for p in first[3:]:
            x.tell(p.key, ok(p.key, 1.0))
    assert [p.key for p in drive(s, lambda e: 0.0)] == [p.key for p in drive(t, lambda e: 0.0)]
    assert s.incumbent() == t.incumbent() and s.finished and t.finished


# --------------------------------------------------------------------------------------------------- factory


def _write(tmp_path: Path, strategy: str) -> Path:
    (tmp_path / "recipe.yaml").write_text("name: r\nscale: tiny\n")
    path = tmp_path / "space.yaml"
    path.write_text(f"name: s\nrecipe: recipe.yaml\nstrategy:\n{strategy}")
    return path


def test_make_strategy_dispatches_on_kind(tmp_path: Path):
    g = make_strategy(load_search_space(_write(tmp_path, "  kind: greedy\n  base: [a]\n  candidates: [b, c]\n")))
    assert isinstance(g, GreedyStrategy) and g.kind == "greedy" and g.expected_trials() == [1, 2, 1]
    spec = "  kind: grid\n  factors:\n    experts: [[a], [a, b]]\n    train.lr: [0.001, 0.0005]\n  mode: min\n"
    r = make_strategy(load_search_space(_write(tmp_path, spec)))
    assert isinstance(r, GridStrategy) and r.kind == "grid" and r.mode == "min" and r.expected_trials() == [4]


def test_make_strategy_on_the_demo_search_space():
    s = make_strategy(load_search_space(ROOT / "search_spaces" / "demo_greedy.yaml"))
    assert s.expected_trials() == [1, 3, 2] and s.metric == "objective"
    assert s.ask().label == "clip"


def test_greedy_ranks_by_the_configured_metric_not_the_objective():
    """``objective: acc/count`` picks by that metric even when the recipe's objective disagrees."""
    s = greedy(candidates=("b", "c"), objective="score/count", max_rounds=1)
    base = batch(s)
    s.tell(base[0].key, TrialResult(key=base[0].key, status="finished", objective=0.5, metrics={"score/count": 0.1}))
    by_added = {p.added: p for p in batch(s)}
    s.tell(by_added["b"].key, TrialResult(key=by_added["b"].key, status="finished", objective=0.9,
                                          metrics={"score/count": 0.2}))
    s.tell(by_added["c"].key, TrialResult(key=by_added["c"].key, status="finished", objective=0.1,
                                          metrics={"score/count": 0.7}))
    assert s.finished and s.decisions()[-1].added == "c"
    assert s.decisions()[-1].objective == pytest.approx(0.7)
    # A result without the metric cannot win.
    s2 = greedy(candidates=("b",), objective="score/missing", max_rounds=1)
    p = batch(s2)[0]
    s2.tell(p.key, TrialResult(key=p.key, status="finished", objective=0.5))
    assert s2.finished and s2.decisions()[0].stopped == "base failed"


def with_interval(key: str, objective: float, half_width: float) -> TrialResult:
    return TrialResult(key=key, status="finished", objective=objective,
                       metrics={"objective_low": objective - half_width, "objective_high": objective + half_width})


def test_add_seeds_retrains_the_best_two_when_their_intervals_overlap():
    s = greedy(candidates=("b", "c", "d"), max_rounds=1, on_tie="add_seeds", tie_seeds=2)
    base = batch(s)[0]
    s.tell(base.key, with_interval(base.key, 0.3, 0.05))
    first = {p.added: p for p in batch(s)}
    s.tell(first["b"].key, with_interval(first["b"].key, 0.60, 0.05))  # b and c overlap: not separated
    s.tell(first["c"].key, with_interval(first["c"].key, 0.58, 0.05))
    s.tell(first["d"].key, with_interval(first["d"].key, 0.20, 0.05))
    assert not s.finished
    reseeds = batch(s)
    assert sorted((p.added, p.trial.seed) for p in reseeds) == [("b", 1), ("b", 2), ("c", 1), ("c", 2)]
    assert all(p.role == "reseed" and p.round == 1 for p in reseeds)
    values = {("b", 1): 0.50, ("b", 2): 0.52, ("c", 1): 0.62, ("c", 2): 0.60}  # c is better on average
    for p in reseeds:
        s.tell(p.key, with_interval(p.key, values[(p.added, p.trial.seed)], 0.05))
    assert s.finished
    decision = s.decisions()[-1]
    assert decision.added == "c"
    assert decision.objective == pytest.approx((0.58 + 0.62 + 0.60) / 3)
    assert len(decision.candidates) == 7  # 3 candidates + 4 extra-seed trials, all in the round's record


def test_add_seeds_does_nothing_when_the_best_two_are_separated():
    s = greedy(candidates=("b", "c"), max_rounds=1, on_tie="add_seeds")
    base = batch(s)[0]
    s.tell(base.key, with_interval(base.key, 0.3, 0.05))
    first = {p.added: p for p in batch(s)}
    s.tell(first["b"].key, with_interval(first["b"].key, 0.80, 0.05))
    s.tell(first["c"].key, with_interval(first["c"].key, 0.50, 0.05))
    assert s.finished and s.decisions()[-1].added == "b"


def test_stage_factors_keep_their_stage_in_labels() -> None:
    from eaglesearch.search.grid import factor_labels

    labels = factor_labels(["experts", "train.lr", "train.stages.prealign.enabled", "train.stages.sft.steps",
                            "model.grid"])
    assert labels == {"train.lr": "lr", "train.stages.prealign.enabled": "prealign.enabled",
                      "train.stages.sft.steps": "sft.steps", "model.grid": "grid"}


def test_greedy_names_the_answered_candidates_of_an_undecided_round():
    """What a search must not delete yet: the round's answered candidates until the round is decided."""
    s = greedy(candidates=("b", "c"), max_rounds=1)
    base = batch(s)[0]
    assert s.undecided() == set()
    s.tell(base.key, TrialResult(key=base.key, status="finished", objective=0.5))
    first, second = batch(s)
    s.tell(first.key, TrialResult(key=first.key, status="finished", objective=0.6))
    assert s.undecided() == {first.key}
    s.tell(second.key, TrialResult(key=second.key, status="finished", objective=0.7))
    assert s.finished and s.undecided() == set()
    assert s.incumbent().key == second.key
