"""Which trials' weights a search keeps (tracking/winners.py): logged with the run, pruned to the best keep_best as
results arrive (never another search's), registered as versions of the model named after the search."""

from __future__ import annotations

from pathlib import Path

import pytest

from eaglesearch.spec import ExpertSpec, ModelSpec, TrialResult, TrialSpec
from eaglesearch.tracking import TrackingStore, Winners
from eaglesearch.tracking.winners import WEIGHTS_DATA


def _trial(seed: int) -> TrialSpec:
    return TrialSpec(model=ModelSpec(experts=(ExpertSpec(name="clip"),)), seed=seed)


class Record:
    """A search's record with hand-made trial runs (weights: a small stand-in folder; what is in it is not read)."""

    def __init__(self, root: Path, search: str) -> None:
        self.root, self.search = root / search, search
        self.store = TrackingStore(f"sqlite:///{root}/mlflow.db")
        self.winners = Winners(self.store.uri)
        self.exp = self.store.ensure_experiment(search)
        self.parent, _ = self.store.open_parent(search, f"fp-{search}", f"tune-{search}", "name: x", {})

    def trained(self, seed: int, objective: float, weights: bool = True) -> str:
        trial = _trial(seed)
        run = self.store.start_trial(self.parent, self.exp, trial, search=self.search, round=0, role="candidate",
                                     added=None, strategy="grid", label=f"seed{seed}")
        if weights:
            folder = self.root / f"w{seed}" / WEIGHTS_DATA
            folder.mkdir(parents=True)
            (folder / "model.safetensors").write_bytes(b"stand-in")
            self.winners.log_weights(run, folder)
        self.store.finish_trial(run, TrialResult(key=trial.key, status="finished", objective=objective, run_id=run))
        return run

    def cached(self, seed: int, source: str, objective: float) -> str:
        trial = _trial(seed)
        result = TrialResult(key=trial.key, status="finished", objective=objective, run_id=source)
        return self.store.record_cached(self.parent, self.exp, trial, result, search=self.search, round=0,
                                        role="candidate", added=None, strategy="grid", label=f"seed{seed}")

    def stored(self) -> set[str]:
        runs = self.store.trial_runs(self.parent)["run_id"]
        return {r for r in runs if self.winners.has_weights(r)}


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite store for the module (creating its schema takes seconds); each test records its own searches."""
    return tmp_path_factory.mktemp("kept")


@pytest.fixture
def record(store_root: Path, request: pytest.FixtureRequest) -> Record:
    return Record(store_root, request.node.name.replace("_", "-"))


def test_prune_keeps_the_best_and_deletes_the_rest(record: Record) -> None:
    low, high, mid = record.trained(0, 0.2), record.trained(1, 0.9), record.trained(2, 0.5)
    record.trained(3, 0.99, weights=False)  # a rung or a failed upload: never a kept trial
    kept = record.winners.prune(record.parent, "objective", "max", keep=2)
    assert [k.run_id for k in kept] == [high, mid]
    assert record.stored() == {high, mid}
    assert not (Path(record.winners.model_uri(low).removeprefix("file://"))).exists()  # the files are gone
    assert record.store.get_run(low).tags["eaglesearch.weights"] == "deleted"
    assert [k.run_id for k in record.winners.prune(record.parent, "objective", "min", keep=1)] == [mid]


def test_the_searchs_answer_is_kept_first_and_undecided_candidates_wait(record: Record) -> None:
    """Greedy adopted clip+pix2struct (0.750) and declined +convnext (0.767, its gain not significant): the model
    kept and aliased ``best`` is the adopted one. While a round is undecided its candidates keep their weights."""
    adopted, declined, base = record.trained(0, 0.750), record.trained(1, 0.767), record.trained(2, 0.450)
    kept = record.winners.prune(record.parent, "objective", "max", keep=1, answer=_trial(0).key,
                                protect={_trial(1).key})
    assert [k.run_id for k in kept] == [adopted]
    assert record.stored() == {adopted, declined}  # the round deciding on +convnext may still adopt it
    kept = record.winners.prune(record.parent, "objective", "max", keep=1, answer=_trial(0).key)
    assert [k.run_id for k in kept] == [adopted] and record.stored() == {adopted}
    assert record.winners.register(record.search, kept, "objective")[0].trial.run_id == adopted
    assert base not in record.stored()


def test_register_tags_versions_and_aliases_the_best(record: Record) -> None:
    best, second = record.trained(0, 0.8), record.trained(1, 0.6)
    kept = record.winners.prune(record.parent, "objective", "max", keep=2)
    versions = record.winners.register(record.search, kept, "objective")
    assert [(v.version, v.trial.run_id) for v in versions] == [("1", best), ("2", second)]
    listed = record.winners.versions(record.search)
    assert listed[0]["key"] == _trial(0).key and listed[0]["objective"] == "0.8"
    assert listed[0]["objective_metric"] == "objective"
    assert record.winners.find(record.search)["run_id"] == best  # alias "best"
    assert record.winners.find(record.search, _trial(1).key[:8])["run_id"] == second
    with pytest.raises(LookupError, match="no kept trial with a key starting 'zzz'"):
        record.winners.find(record.search, "zzz")
    again = record.winners.register(record.search, kept, "objective")  # the search run again: nothing new
    assert [v.version for v in again] == ["1", "2"] and len(record.winners.versions(record.search)) == 2


def test_a_cached_trial_keeps_the_weights_of_the_run_it_came_from(store_root: Path) -> None:
    first = Record(store_root, "first")
    source = first.trained(0, 0.7)
    first.winners.prune(first.parent, "objective", "max", keep=1)
    second = Record(store_root, "second")
    cached = second.cached(0, source, 0.7)
    own = second.trained(1, 0.3)
    kept = second.winners.prune(second.parent, "objective", "max", keep=1)
    assert [(k.run_id, k.trial_run_id) for k in kept] == [(source, cached)]
    assert not second.winners.has_weights(own)
    assert second.winners.prune(second.parent, "objective", "min", keep=1)[0].run_id == source
    assert first.winners.has_weights(source)  # the other search's run is never pruned by this one


def test_a_search_that_kept_nothing_says_why(record: Record) -> None:
    with pytest.raises(LookupError, match="keep_best"):
        record.winners.find(record.search)
