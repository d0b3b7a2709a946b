"""Data mixtures: named sources with ratios, weights, caps and repeats; seeded, reproducible draws; one clear message
per bad input (file, line, field); a stage names its mixture; the realised per-source counts are recorded."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from eaglesearch.app.plan import preflight_search as preflight
from eaglesearch.data import Sample
from eaglesearch.data.mixture import is_natural, realise, shares
from eaglesearch.model.validate import load_checked_search
from eaglesearch.spec import DataSpec, SpecError, TrialSpec
from eaglesearch.spec.sources import SourceSpec
from eaglesearch.trial.data import PreparedData, StageDatasets

SYN = {"format": "synthetic"}


def _specs(**shares_by_source) -> dict[str, SourceSpec]:
    return {n: SourceSpec(format="llava", path=f"{n}.json", **kw) for n, kw in shares_by_source.items()}


def test_shares_follow_ratios_weights_caps_and_repeats() -> None:
    natural = shares(_specs(a={}, b={}), {"a": 30, "b": 10})
    assert [(s.samples, s.share) for s in natural] == [(30, 0.75), (10, 0.25)]
    # A ratio is a fraction of the mixture; the rest is shared by size; the total stays the pools' sum.
    mixed = shares(_specs(a={"ratio": 0.5}, b={}, c={}), {"a": 10, "b": 30, "c": 10})
    assert [s.samples for s in mixed] == [25, 19, 6] and sum(s.samples for s in mixed) == 50
    # Every source with a ratio: normalised. A weight scales the natural share. A cap and repeats shape the pool.
    assert [s.samples for s in shares(_specs(a={"ratio": 0.2}, b={"ratio": 0.2}), {"a": 7, "b": 3})] == [5, 5]
    assert [s.samples for s in shares(_specs(a={"weight": 3}, b={}), {"a": 10, "b": 10})] == [15, 5]
    capped = shares(_specs(a={"max_samples": 4, "repeats": 2}, b={}), {"a": 100, "b": 2})
    assert [(s.pool, s.samples) for s in capped] == [(8, 8), (2, 2)]
    with pytest.raises(ValueError, match="source\\(s\\) b have no usable samples"):
        shares(_specs(a={}, b={"ratio": 0.5}), {"a": 10, "b": 0})


def test_draws_are_seeded_reproducible_and_independent_per_source() -> None:
    by_source = {"a": list(range(10)), "b": list(range(10, 40))}
    specs = _specs(a={"ratio": 0.5}, b={})
    first, plan = realise(specs, by_source, seed=3, mixture="train")
    assert first == realise(specs, by_source, seed=3, mixture="train")[0]  # a killed trial redraws the same list
    assert first != realise(specs, by_source, seed=4, mixture="train")[0]
    counts = Counter(i < 10 for i in first)
    assert counts[True] == 20 and counts[False] == 20 and [s.samples for s in plan] == [20, 20]
    assert Counter(i for i in first if i < 10) == dict.fromkeys(range(10), 2)  # two whole passes over a
    # Changing a's ratio leaves b's draw as it was while b's count is unchanged (each source is seeded alone).
    three = {**by_source, "c": list(range(40, 50))}
    low, high = (realise(_specs(a={"ratio": r}, b={"ratio": 0.3}, c={}), three, seed=3, mixture="train")[0]
                 for r in (0.2, 0.4))
    assert [i for i in low if 10 <= i < 40] == [i for i in high if 10 <= i < 40]
    assert len([i for i in low if 10 <= i < 40]) == 15
    capped = realise(_specs(a={"max_samples": 3}, b={}), by_source, seed=0, mixture="train")[0]
    assert len({i for i in capped if i < 10}) == 3 and len(capped) == 33
    natural = _specs(a={}, b={})
    assert is_natural(natural) and realise(natural, by_source, 0, "train")[0] == list(range(40))


@pytest.mark.parametrize(("train", "message"), [
    ({"a": {**SYN, "ratio": -0.1}}, "greater than or equal to 0"),
    ({"a": {**SYN, "ratio": 0}, "b": {**SYN, "ratio": 0}}, "every ratio is 0"),
    ({"a": {**SYN, "max_samples": 0}}, "max_samples 0 keeps nothing"),
    ({"a": {**SYN, "ratio": 0.8}, "b": {**SYN, "ratio": 0.7}, "c": SYN}, "add up to 1.5"),
    ({"a": {**SYN, "ratio": 0.5, "weight": 2}}, "not both"),
    ({"a b": SYN}, "must start with a letter"),
])
def test_bad_mixtures_are_one_message_each(train: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        DataSpec(train=train)
    assert err.value.error_count() == 1


def _project(tmp_path: Path, space: str, recipe_data: str = "") -> Path:
    (tmp_path / "experiments").mkdir(exist_ok=True)
    (tmp_path / "experiments" / "r.yaml").write_text(f"""name: r
scale: tiny_random
model: {{grid: 4, lm: {{kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}},
        tokenizer: {{vocab_size: 300}}}}
data:
  image_size: 64
  max_length: 96
  synthetic: {{tasks: [count, color], train_per_task: 8, eval_per_task: 4, image_size: 64}}
  train:
    count: {{format: synthetic, tasks: [count]}}
    color: {{format: synthetic, tasks: [color]}}
{recipe_data}train: {{steps: 2, batch_size: 4}}
""")
    path = tmp_path / "space.yaml"
    path.write_text(space)
    return path


GRID = "name: m\nrecipe: experiments/r.yaml\nstrategy: {kind: grid, factors: {experts: [[clip]], %s}}\n"


def test_a_ratio_factor_is_a_search_dimension_at_fixed_steps(tmp_path: Path) -> None:
    loaded = load_checked_search(_project(tmp_path, GRID % "data.train.count.ratio: [0.2, 0.8]"))
    trials = [loaded.factory.make(assignments={"experts": ["clip"], "data.train.count.ratio": r}) for r in (0.2, 0.8)]
    assert trials[0].key != trials[1].key  # part of the trial key
    assert {t.train.stages[0].steps for t in trials} == {2}  # the step budget is what the recipe says
    assert trials[1].data.mixture("sft")["count"].ratio == 0.8


@pytest.mark.parametrize(("factor", "field", "message"), [
    ("data.train.docvqa.ratio: [0.1]", "strategy.factors.data.train.docvqa.ratio", "has no source 'docvqa'"),
    ("data.train.count.ratio: [-1]", "strategy.factors.data.train.count.ratio", "greater than or equal to 0"),
])
def test_a_factor_naming_a_bad_source_value_points_at_the_factor(tmp_path: Path, factor: str, field: str,
                                                                 message: str) -> None:
    with pytest.raises(SpecError) as err:
        load_checked_search(_project(tmp_path, GRID % factor))
    (issue,) = err.value.issues
    assert issue.field == field and message in issue.message and issue.line == 3


def test_an_unknown_mixture_named_by_a_stage_is_refused() -> None:
    from eaglesearch.spec import ModelSpec
    from eaglesearch.spec.train import TrainSpec

    with pytest.raises(ValidationError, match="trains on mixture 'docs', which the data does not declare; mixtures: "
                                              "sft, caption, extra"):
        TrialSpec(model=ModelSpec(experts=[{"name": "clip", "preset": "tiny_random"}]),
                  data=DataSpec(mixtures={"extra": {"a": SYN}}),
                  train=TrainSpec.model_validate({"stages": [{"name": "sft", "data": "docs"}]}))


def test_preflight_names_each_source_problem_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ("  mixtures:\n    more:\n      gone: {format: llava, path: nowhere.json, image_folder: .}\n"
             "      nopath: {format: jsonl}\n      odd: {format: csv, path: a.csv}\n")
    loaded = load_checked_search(_project(tmp_path, GRID % "data.train.count.ratio: [0.5]", extra))
    with pytest.raises(SpecError) as err:
        preflight(loaded)
    found = {i.field: i for i in err.value.issues}
    assert set(found) == {"data.mixtures.more.gone.path", "data.mixtures.more.nopath.path",
                          "data.mixtures.more.odd.format"}
    assert "does not exist on this machine" in found["data.mixtures.more.gone.path"].message
    assert "needs a path" in found["data.mixtures.more.nopath.path"].message
    assert "unknown source format 'csv'" in found["data.mixtures.more.odd.format"].message
    assert all(i.file == tmp_path / "experiments" / "r.yaml" and i.line is not None for i in found.values())
    with pytest.raises(SpecError) as err:  # without path checks, what the spec must say is still checked
        preflight(loaded, check_paths_exist=False)
    assert {i.field for i in err.value.issues} == {"data.mixtures.more.nopath.path", "data.mixtures.more.odd.format"}


def test_the_single_file_form_is_a_one_source_mixture_with_its_old_key() -> None:
    legacy = DataSpec(source="llava", train={"json_path": "a.json", "image_folder": "im"},
                      eval={"b": {"path": "b.json"}})
    dumped = legacy.model_dump(mode="json")
    assert dumped["train"] == {"json_path": "a.json", "image_folder": "im"} and "mixtures" not in dumped
    (only,) = legacy.mixture("sft").values()
    assert (only.format, only.path, only.image_folder) == ("llava", "a.json", "im")
    assert DataSpec.model_validate(dumped) == legacy


def _sample(i: int, source: str) -> Sample:
    return Sample(id=f"{source}-{i}", image=None, turns=(("user", "q?"), ("assistant", "a")), source=source)


@pytest.fixture(scope="module")
def tokenizer():
    from eaglesearch.data import training_corpus
    from eaglesearch.model import load_tokenizer
    from eaglesearch.spec.model import TokenizerSpec

    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus([_sample(0, "x")]))


def test_stage_datasets_draw_the_mixture_and_record_counts_per_stage_and_source(tokenizer) -> None:
    from eaglesearch.spec import ModelSpec
    from eaglesearch.spec.train import TrainSpec

    data = DataSpec(train={"count": {**SYN, "tasks": ["count"], "ratio": 0.75}, "color": {**SYN, "tasks": ["color"]}},
                    synthetic={"tasks": ["count", "color"]}, max_length=64)
    trial = TrialSpec(model=ModelSpec(experts=[{"name": "clip", "preset": "tiny_random"}]), data=data,
                      train=TrainSpec.model_validate({"steps": 1, "batch_size": 2}), seed=5)
    samples = [_sample(i, "count") for i in range(6)] + [_sample(i, "color") for i in range(10)]
    prepared = PreparedData(train=samples, benchmarks=[], mixtures={"sft": {"count": samples[:6],
                                                                            "color": samples[6:]}})
    said: list[str] = []
    datasets = StageDatasets(trial, prepared, tokenizer, said.append)
    drawn = datasets(trial.train.stages[0], 0)
    assert len(drawn) == 16
    picked = Counter(drawn.dataset.samples[i].source for i in drawn.indices)
    assert picked == {"count": 12, "color": 4}
    metrics = datasets.metrics()
    assert metrics["data/sft/count/samples"] == 12 and metrics["data/sft/count/available"] == 6
    assert metrics["data/sft/color/samples"] == 4 and metrics["data/sft/color/skipped"] == 0
    assert any("mixture sft: count 12 (75%)" in m for m in said)
    again = StageDatasets(trial, prepared, tokenizer, lambda _m: None)(trial.train.stages[0], 0)
    assert again.indices == drawn.indices  # a restarted trial draws the same list (BatchStream resumes on it)


def test_stage_datasets_count_skips_per_source(tmp_path: Path) -> None:
    from eaglesearch.data.sources import SourceContext
    from eaglesearch.spec import ModelSpec
    from eaglesearch.trial.data import read_mixture

    good = [{"id": "g", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]
    (tmp_path / "a.json").write_text(json.dumps(good + [{"id": "bad"}]))
    gone = {"id": "x", "image": "gone.png", "conversations": good[0]["conversations"]}
    (tmp_path / "b.jsonl").write_text(json.dumps(good[0]) + "\n" + json.dumps(gone))
    data = DataSpec(source="llava", on_problem="skip", eval={"e": {"path": "e.json"}},
                    train={"a": {"format": "llava", "path": str(tmp_path / "a.json")},
                           "b": {"format": "jsonl", "path": str(tmp_path / "b.jsonl"), "image_folder": str(tmp_path)}})
    TrialSpec(model=ModelSpec(experts=[{"name": "clip", "preset": "tiny_random"}]), data=data)
    read, report = read_mixture(data, "sft", SourceContext(data=data, data_dir=tmp_path))
    assert {k: len(v) for k, v in read.items()} == {"a": 1, "b": 1}
    assert report.total == 4 and report.by_source == {"a": 1, "b": 1}
    assert report.skipped == {"malformed": 1, "missing_image": 1}


def test_plan_sizes_the_paper_mixture_from_declared_sizes(tmp_path: Path) -> None:
    from eaglesearch.spec import ModelSpec
    from eaglesearch.spec.load import load_recipe
    from eaglesearch.trial.mixture_plan import plan_mixtures

    recipe, _ = load_recipe(Path(__file__).resolve().parent.parent / "experiments" / "llava.yaml")
    trial = TrialSpec(model=ModelSpec(experts=[{"name": "clip", "preset": "tiny_random"}]), data=recipe.data,
                      train=recipe.train)
    plans = {p.stage: p for p in plan_mixtures([trial], tmp_path)}
    sft = plans["sft"]
    assert len(sft.sources) == 8 and all(s.sized_by == "declared" for s in sft.sources)
    assert sft.total == 933_000 and sft.steps == 933_000 // 128  # one epoch at global batch 128
    assert {s.name: s.share.samples for s in sft.sources}["docvqa"] == 39_000
    assert plans["align"].total is None and plans["align"].steps is None  # the caption json declares no size
    half = trial.model_copy(update={"data": trial.data.model_copy(update={"train": {
        **trial.data.train, "docvqa": trial.data.train["docvqa"].model_copy(update={"ratio": 0.2})}})})
    (docs,) = [s for s in plan_mixtures([half], tmp_path)[1].sources if s.name == "docvqa"]
    assert docs.share.samples == round(0.2 * 933_000)


def test_the_report_tables_samples_per_trial_stage_and_source() -> None:
    import pandas as pd

    from eaglesearch.report.data_mix import mixture_markdown, mixture_table

    runs = pd.DataFrame([{"label": "clip", "key": "k1", "objective": 0.5, "data/sft/count/samples": 240.0,
                          "data/sft/count/available": 300.0, "data/sft/count/skipped": 0.0,
                          "data/sft/ocr/samples": 1080.0, "data/skipped": 0.0},
                         {"label": "clip", "key": "k2", "objective": 0.6}])
    table = mixture_table(runs)
    assert table[["key", "stage", "source", "samples"]].values.tolist() == [
        ["k1", "sft", "count", 240], ["k1", "sft", "ocr", 1080]]
    assert table["available"].tolist()[0] == 300 and pd.isna(table["available"].tolist()[1])
    assert "| clip | k1 | sft | count | 240 | 300 | 0 |" in re.sub(" +", " ", mixture_markdown(table, "s"))
    assert mixture_table(runs[["label", "key"]]).empty


def test_an_optuna_space_can_search_a_source_ratio_and_cap(tmp_path: Path) -> None:
    space = ("name: o\nrecipe: experiments/r.yaml\nstrategy:\n  kind: optuna\n  n_trials: 2\n"
             "  experts: {sets: [[clip]]}\n"
             "  params:\n    data.train.count.ratio: {low: 0.1, high: 0.9}\n"
             "    data.train.color.max_samples: {choices: [2, 8]}\n")
    loaded = load_checked_search(_project(tmp_path, space))
    from eaglesearch.search import make_strategy

    proposal = make_strategy(loaded).ask()
    assert proposal is not None
    sources = proposal.trial.data.mixture("sft")
    assert 0.1 <= sources["count"].ratio <= 0.9 and sources["color"].max_samples in (2, 8)
