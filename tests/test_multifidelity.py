"""Multi-fidelity search: rung budgets in trial keys, a loop that stops early and continues, successive halving
inside greedy rounds (fake evaluator, milliseconds), and one slow end-to-end run where a continued trial resumes
from its rung's checkpoint."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from eaglesearch.search import GreedyStrategy, Proposal
from eaglesearch.search.greedy import ALL_FAILED, POOL_EMPTY
from eaglesearch.search.halving import RUNG, keep_count
from eaglesearch.spec import (
    ExpertSpec,
    GreedyStrategySpec,
    HalvingSpec,
    ModelSpec,
    Recipe,
    TrialFactory,
    TrialResult,
    TrialSpec,
)

FACTORY = TrialFactory(recipe=Recipe(name="t"))
Value = Callable[[frozenset[str], float], float | None]  # (experts, budget) -> objective; None: the trial fails


def names(p: Proposal) -> frozenset[str]:
    return frozenset(e.name for e in p.trial.model.experts)


def budget(p: Proposal) -> float:
    return 1.0 if p.trial.budget is None else p.trial.budget


THIRDS = HalvingSpec(eta=3, min_fraction=0.25)


def greedy(halving: HalvingSpec | None = THIRDS, base=("a",),
           candidates=("b", "c", "d", "e"), **kw) -> GreedyStrategy:
    spec = GreedyStrategySpec(kind="greedy", base=base, candidates=candidates, halving=halving, **kw)
    return GreedyStrategy(spec, FACTORY)


def drive(s: GreedyStrategy, value: Value, record: dict[str, TrialResult] | None = None) -> list[list[Proposal]]:
    """Run ``s`` to the end: ask the whole batch, tell it (answering from ``record`` when it holds the key, and
    adding every new result to it). Returns the batches, in order."""
    batches: list[list[Proposal]] = []
    for _ in range(100):
        if s.finished:
            return batches
        proposals = []
        while (p := s.ask()) is not None:
            proposals.append(p)
        assert proposals, "strategy is neither finished nor proposing: deadlock"
        for p in proposals:
            if record is not None and p.key in record:
                result = record[p.key]
            else:
                v = value(names(p), budget(p))
                result = (TrialResult(key=p.key, status="failed", error="boom") if v is None
                          else TrialResult(key=p.key, status="finished", objective=v))
                if record is not None:
                    record[p.key] = result
            s.tell(p.key, result)
        batches.append(proposals)
    raise AssertionError("search did not finish")


def additive(weights: dict[str, float]) -> Value:
    return lambda experts, _budget: sum(weights[n] for n in experts)


# ------------------------------------------------------------------------------------------------ spec


def test_budget_is_in_the_key_only_when_set() -> None:
    full = TrialSpec(model=ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random"),)))
    rung = full.model_copy(update={"budget": 0.25})
    assert "budget" not in full.canonical_json() and '"budget":0.25' in rung.canonical_json()
    assert rung.key != full.key and rung.full_key == full.key == full.full_key
    assert TrialSpec.model_validate({**full.model_dump(), "budget": 1.0}).budget is None  # 1 is the full trial
    assert "budget" not in full.flat_params() and rung.flat_params()["budget"] == "0.25"
    assert [rung.stop_step(n) for n in (300, 10, 3, 1)] == [75, 3, 1, 1]
    assert full.stop_step(300) is None
    with pytest.raises(ValidationError):
        TrialSpec.model_validate({**full.model_dump(), "budget": 0})


def test_halving_fractions_and_validation() -> None:
    assert HalvingSpec(eta=3, min_fraction=0.25).fractions() == (0.25, 0.75, 1.0)
    assert HalvingSpec(eta=2, min_fraction=0.2).fractions() == (0.2, 0.4, 0.8, 1.0)
    assert HalvingSpec(eta=4, min_fraction=0.5).fractions() == (0.5, 1.0)
    assert [keep_count(n, 3) for n in (1, 2, 3, 5, 6, 9)] == [1, 1, 1, 1, 2, 3]
    for bad in ({"eta": 1}, {"min_fraction": 1.0}, {"min_fraction": 0}):
        with pytest.raises(ValidationError):
            HalvingSpec(**bad)


# ------------------------------------------------------------------------------------------------ strategy


def test_round_climbs_rungs_and_only_the_best_continue() -> None:
    s = greedy()
    weights = {"a": 1.0, "b": 0.1, "c": 0.4, "d": 0.3, "e": 0.2}
    batches = drive(s, additive(weights))
    base, rung0, full = batches[0], batches[1], batches[2]
    assert [p.role for p in base] == ["base"] and base[0].trial.budget is None
    assert [(p.role, sorted(names(p)), p.trial.budget) for p in rung0] == [
        (RUNG, ["a", x], 0.25) for x in "bcde"]
    assert rung0[0].label == "a+b @25%"
    # 4 enter, keep 4 // 3 = 1: the lone survivor skips the 75% rung and runs the full trial, from its checkpoint
    assert [(p.role, sorted(names(p)), p.trial.budget) for p in full] == [("candidate", ["a", "c"], None)]
    assert full[0].trial.full_key == rung0[1].trial.full_key == full[0].key
    # the full trial is the very trial greedy without halving trains: same key, so either search reuses the other
    plain = greedy(halving=None)
    plain_round1 = drive(plain, additive(weights))[1]
    assert full[0].key in {p.key for p in plain_round1}
    assert s.decisions()[1].chosen_key == full[0].key and s.decisions()[1].added == "c"
    assert s.chosen() == plain.chosen() == ("a", "c", "d", "e", "b")
    assert [len(b) for b in batches] == [1, 4, 1, 3, 1, 2, 1, 1]  # rounds with 2 candidates: 2 rungs, 1 full
    assert s.expected_trials() == [1, 5, 4, 3, 1]
    assert [sum(map(len, batches[1:3])), sum(map(len, batches[3:5])), sum(map(len, batches[5:7]))] == [5, 4, 3]
    assert s.decisions()[-1].stopped == POOL_EMPTY
    assert all(p.role == RUNG for p in batches[5]) and len(batches[7]) == 1 and batches[7][0].role == "candidate"


def test_round_is_decided_on_full_budget_results() -> None:
    # At half budget c looks best, at full budget b is: the choice must follow the full-budget results.
    def value(experts: frozenset[str], b: float) -> float:
        if experts == {"a"}:
            return 0.0
        (extra,) = experts - {"a"}
        return {"b": 0.2 if b < 1 else 0.9, "c": 0.8 if b < 1 else 0.7, "d": 0.1, "e": 0.05}[extra]

    s = greedy(halving=HalvingSpec(eta=2, min_fraction=0.5), max_rounds=1)
    batches = drive(s, value)
    assert [sorted(names(p) - {"a"}) for p in batches[2]] == [["b"], ["c"]]  # 4 // 2 = 2 continue
    assert all(p.trial.budget is None for p in batches[2])
    decision = s.decisions()[1]
    assert decision.added == "b" and decision.objective == 0.9
    assert len(decision.candidates) == 6  # every trial of the round is listed: 4 rungs and 2 full trials
    assert s.expected_trials() == [1, 6]


def test_failed_rungs_never_continue_and_an_all_failed_round_stops() -> None:
    def value(experts: frozenset[str], b: float) -> float | None:
        if "b" in experts and b < 1:
            return None  # b fails at its rung (it would have been the best)
        return 1.0 + (0.5 if "b" in experts else 0.0) + (0.1 if "d" in experts else 0.0)

    s = greedy(max_rounds=1)
    batches = drive(s, value)
    assert [sorted(names(p)) for p in batches[2]] == [["a", "d"]]
    assert s.decisions()[1].added == "d"

    dead = greedy()
    drive(dead, lambda experts, b: 1.0 if experts == {"a"} else None)
    assert dead.decisions()[-1].stopped == ALL_FAILED and dead.chosen() == ("a",)
    assert len(dead.decisions()[-1].candidates) == 4  # only the rungs ran


def test_replay_from_the_record_rebuilds_the_ladder_without_new_trials() -> None:
    weights = {"a": 1.0, "b": 0.3, "c": 0.5, "d": 0.2, "e": 0.4}
    record: dict[str, TrialResult] = {}
    first = greedy()
    drive(first, additive(weights), record)

    def never(experts: frozenset[str], b: float) -> float:
        raise AssertionError(f"{sorted(experts)} at {b} was not answered from the record")

    again = greedy()
    drive(again, never, record)
    assert again.decisions() == first.decisions() and again.chosen() == first.chosen()


def test_strategy_pickles_mid_ladder() -> None:
    s = greedy()
    weights = {"a": 1.0, "b": 0.3, "c": 0.5, "d": 0.2, "e": 0.4}
    base = s.ask()
    assert base is not None
    s.tell(base.key, TrialResult(key=base.key, status="finished", objective=1.0))
    rungs = [s.ask() for _ in range(4)]
    for p in rungs[:2]:
        assert p is not None
        s.tell(p.key, TrialResult(key=p.key, status="finished", objective=additive(weights)(names(p), 0.25)))
    clone: GreedyStrategy = pickle.loads(pickle.dumps(s))
    assert clone.pending() == {p.key for p in rungs[2:] if p is not None}
    assert clone.ask() is None  # the rung's barrier survives the round trip
    for p in rungs[2:]:
        assert p is not None
        clone.tell(p.key, TrialResult(key=p.key, status="finished", objective=additive(weights)(names(p), 0.25)))
    drive(clone, additive(weights))
    assert clone.chosen() == ("a", "c", "e", "b", "d")


def _drive_through(dispatcher, value: Value, on_round: Callable[[], None] | None = None) -> None:
    """``drive`` through the execution layer's :class:`Dispatcher` (what both executors call), no training."""
    for _ in range(100):
        if dispatcher.finished:
            return
        requests = []
        while (r := dispatcher.next_request()) is not None:
            requests.append(r)
        for r in requests:
            v = value(frozenset(e.name for e in r.trial.model.experts), r.trial.budget or 1.0)
            dispatcher.complete(r.key, TrialResult(key=r.key, status="finished", objective=v))
        if on_round is not None:
            on_round()
    raise AssertionError("search did not finish")


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep_rung_checkpoints"])
def test_discontinued_rung_checkpoints_are_deleted_when_the_round_is_decided(tmp_path: Path, keep: bool) -> None:
    from eaglesearch.execution.dispatch import Dispatcher, RunContext
    from eaglesearch.trial.workspace import Workspace

    weights = {"a": 1.0, "b": 0.1, "c": 0.4, "d": 0.3, "e": 0.2}
    s = greedy(halving=HalvingSpec(eta=3, min_fraction=0.25, keep_rung_checkpoints=keep), max_rounds=1)
    workspace = Workspace.at(tmp_path / "work", str(tmp_path / "artifacts"))
    context = RunContext(search="s", parent_id="p", experiment_id="e", tracking_uri="sqlite:///unused.db",
                         workdir=str(workspace.root), artifacts=workspace.artifacts, threads=1)
    dispatcher = Dispatcher(s, context)
    seen: dict[str, frozenset[str]] = {}  # full key -> the candidate's experts, for every rung run so far

    def write_rung_checkpoints() -> None:  # what a rung leaves behind (train/stages.py): its full key's folder
        for p in s._proposals:
            if p.role == RUNG and p.trial.full_key not in seen:
                seen[p.trial.full_key] = names(p)
                (workspace.trial_scratch(p.trial.full_key) / "sft").mkdir(parents=True)
                (workspace.trial_scratch(p.trial.full_key) / "sft" / "last.pt").write_bytes(b"rung")

    _drive_through(dispatcher, additive(weights), write_rung_checkpoints)
    assert len(seen) == 4 and s.decisions()[-1].added == "c"
    left = {frozenset(seen[k]) for k in seen if workspace.trial_scratch(k).exists()}
    if keep:
        assert len(left) == 4
    else:  # only the continued candidate's folder is left (its full trial deletes it when it finishes)
        assert left == {frozenset({"a", "c"})}
    assert s.released_checkpoints() == []  # each key is released once


def test_search_space_yaml_accepts_halving(tmp_path: Path) -> None:
    from eaglesearch.spec import load_search_space

    root = Path(__file__).resolve().parents[1]
    space = tmp_path / "h.yaml"
    space.write_text(f"name: h\nrecipe: {root / 'experiments' / 'tiny_cpu.yaml'}\nstrategy:\n  kind: greedy\n"
                     "  base: [clip]\n  candidates: [convnext, sam]\n  halving: {eta: 2, min_fraction: 0.5}\n")
    loaded = load_search_space(space)
    assert loaded.space.strategy.halving == HalvingSpec(eta=2, min_fraction=0.5)


# ------------------------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def tiny_stage(tmp_path_factory: pytest.TempPathFactory):
    """A 1-layer Eagle, its dataset and a 9-step stage (warmup + cosine), built once for the loop tests."""
    import torch

    from eaglesearch.data import TrainDataset, collate_train, read_llava_json, training_corpus, write_synthetic
    from eaglesearch.model import build_eagle, load_tokenizer
    from eaglesearch.spec import LanguageModelSpec, SyntheticDataSpec, TokenizerSpec, TrainSpec

    torch.set_num_threads(1)
    data = write_synthetic(SyntheticDataSpec(tasks=("count",), train_per_task=24, eval_per_task=2, image_size=64),
                           tmp_path_factory.mktemp("synthetic") / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples))
    lm = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    model_spec = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64),), grid=4, lm=lm)
    visual = build_eagle(model_spec, tokenizer, seed=0).num_visual_tokens
    dataset = TrainDataset(samples, tokenizer, image_size=64, num_visual_tokens=visual, max_length=96)
    stage = TrainSpec(steps=9, batch_size=8, lr=1e-3, warmup_ratio=0.25, log_every=4, checkpoint_every=0).stages[0]
    return model_spec, tokenizer, dataset, stage, lambda b: collate_train(b, tokenizer.pad_token_id)


def _train(tiny_stage, checkpoint_dir: Path | None, stop_at: int | None):
    from eaglesearch.model import build_eagle
    from eaglesearch.train.loop import batches, train

    model_spec, tokenizer, dataset, stage, collate = tiny_stage
    model = build_eagle(model_spec, tokenizer, seed=0)
    stream = batches(dataset, stage.batch_size, collate, seed=0)
    logged: list[tuple[int, float]] = []
    stats = train(model, stream, stage, on_log=lambda s, v: logged.append((s, v)), checkpoint_dir=checkpoint_dir,
                  stop_at=stop_at)
    return stats, model.state_dict(), logged


def test_rung_stops_on_the_full_schedule_and_the_continuation_equals_an_uninterrupted_run(tmp_path: Path,
                                                                                        tiny_stage) -> None:
    import torch

    from eaglesearch.train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint

    full, full_weights, full_log = _train(tiny_stage, None, None)
    folder = tmp_path / "trials" / "k" / "sft"
    rung, _, rung_log = _train(tiny_stage, folder, 3)  # checkpoint_every=0: the stop itself must be checkpointed
    assert rung.steps == 3 and rung.losses == full.losses[:3]  # the same steps: the schedule is the full one's
    assert rung_log[-1][0] == 2  # the rung's last step is logged even off the log_every grid
    saved = load_checkpoint(folder / CHECKPOINT_NAME)
    assert saved is not None and saved.step == 3
    # Warmup is 25% of the *full* 9 steps (2 steps), then cosine over 9: the LR at step 3 is not the end of a
    # 3-step schedule (which would have decayed to 0).
    assert saved.scheduler["last_epoch"] == 3 and saved.scheduler["_last_lr"][0] > 0.5e-3

    second, _, _ = _train(tiny_stage, folder, 6)  # a higher rung continues from the first
    assert second.resumed_from == 3 and second.losses == full.losses[:6]
    resumed, weights, logged = _train(tiny_stage, folder, None)  # the full trial continues from the rung
    assert resumed.resumed_from == 6 and resumed.steps == 9
    assert resumed.losses == full.losses and logged == full_log
    assert all(torch.equal(weights[k], full_weights[k]) for k in full_weights)

    with pytest.raises(CheckpointError, match="past this run's stop at step 4"):
        _train(tiny_stage, folder, 4)  # a rung cannot be evaluated from a later checkpoint
    with pytest.raises(ValueError, match="outside 1..9"):
        _train(tiny_stage, None, 10)


# ------------------------------------------------------------------------------------------------ end to end


TWO_STAGES = """
  stages:
    - {name: align, data: caption, template: plain, trainable: {experts: none, projector: true, lm: none},
       steps: 2, batch_size: 8, lr: 1.0e-3, log_every: 1}
    - {name: sft, steps: 8, batch_size: 8, lr: 5.0e-4, log_every: 1, checkpoint_every: 0}"""


def _space(name: str, candidates: str, halving: str) -> str:
    return (f"name: {name}\nrecipe: experiments/tiny_test.yaml\nstrategy:\n  kind: greedy\n"
            f"  base: [{{name: clip, resolution: 64}}]\n  candidates: [{candidates}]\n  max_rounds: 1\n{halving}"
            "resources: {cpus_per_trial: 1, max_concurrent_trials: 1, max_failures: 1}\n")


@pytest.mark.slow
def test_continued_trial_resumes_from_its_rung_checkpoint(tmp_path: Path) -> None:
    import pandas as pd

    from eaglesearch.tracking import TrackingStore
    from eaglesearch.train.checkpoint import CHECKPOINT_NAME
    from tests.e2e_helpers import cli, tiny_recipe

    recipe = tiny_recipe("tiny_test", train=TWO_STAGES, max_length=160)
    candidates = "convnext, sam, dinov2"

    def run(root: Path, body: str) -> pd.DataFrame:
        (root / "experiments").mkdir(parents=True)
        (root / "experiments" / "tiny_test.yaml").write_text(recipe)
        (root / "search_spaces").mkdir()
        (root / "search_spaces" / "s.yaml").write_text(body)
        proc = cli(root, "run", "search_spaces/s.yaml", "--executor", "inline", "--quiet")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        store = TrackingStore(f"sqlite:///{root}/mlflow.db")
        return store.trial_runs(store.latest_parent(body.split("\n")[0].removeprefix("name: ")))

    halving = run(tmp_path / "halving", _space("mf-halving", candidates, "  halving: {eta: 3, min_fraction: 0.25}\n"))
    rungs = halving[halving["role"] == "rung"]
    full = halving[halving["role"] == "candidate"]
    assert len(rungs) == 3 and len(full) == 1 and len(halving) == 5
    # Each rung ran the align stage and 2 of the 8 SFT steps (25%), on the 8-step schedule.
    assert list(rungs["stage/sft/steps"]) == [2.0] * 3 and list(rungs["train/steps_trained"]) == [4.0] * 3
    assert list(rungs["param.budget"]) == ["0.25"] * 3
    winner = full.iloc[0]
    # The continued trial restored align (done.pt) and SFT step 2 (its last checkpoint) from its rung, and trained 6 steps.
    assert winner["train/resumed_from_step"] == 2.0 and winner["stage/sft/steps"] == 8.0
    assert winner["train/steps_trained"] == 6.0
    best_rung = rungs.loc[rungs["objective"].idxmax()]
    assert winner["added"] == best_rung["added"]
    # The promoted candidate's scratch folder is gone (finished); the discontinued ones' were deleted when the
    # round was decided (halving.keep_rung_checkpoints keeps them).
    scratch = tmp_path / "halving" / ".eaglesearch" / "scratch"
    assert not list(scratch.rglob(CHECKPOINT_NAME))

    # The same candidate trained from scratch in a fresh project: same key, same numbers, all 10 steps trained.
    plain = run(tmp_path / "plain", _space("mf-plain", winner["added"], ""))
    again = plain[plain["role"] == "candidate"].iloc[0]
    assert again["key"] == winner["key"] and again["train/steps_trained"] == 10.0
    assert again["objective"] == winner["objective"]
    assert again["train/loss_final"] == winner["train/loss_final"]
